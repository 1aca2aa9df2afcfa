//! A workspace (DJI's "organization"): the unit of isolation for users, devices and data. Docks bind
//! to it with its `bind_code`.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub const AGGREGATE_TYPE: &str = "workspace";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewWorkspace {
    pub workspace_id: String,
    pub workspace_name: String,
    pub workspace_desc: String,
    pub platform_name: String,
    pub bind_code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkspaceCommand {
    CreateWorkspace(NewWorkspace),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkspaceEvent {
    WorkspaceCreated(NewWorkspace),
}
crate::domain_event!(WorkspaceEvent, "1.0", { WorkspaceCreated });

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("The workspace already exists.")]
    AlreadyExists,
}

impl crate::error::DjiCode for WorkspaceError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Workspace {
    created: bool,
}

impl Aggregate for Workspace {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = WorkspaceCommand;
    type Event = WorkspaceEvent;
    type Error = WorkspaceError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            WorkspaceCommand::CreateWorkspace(new) => {
                if self.created {
                    return Err(WorkspaceError::AlreadyExists);
                }
                sink.write(WorkspaceEvent::WorkspaceCreated(new), self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WorkspaceEvent::WorkspaceCreated(_) => self.created = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn new() -> NewWorkspace {
        NewWorkspace {
            workspace_id: "w".into(),
            workspace_name: "n".into(),
            workspace_desc: "".into(),
            platform_name: "".into(),
            bind_code: "qwe".into(),
        }
    }

    #[test]
    fn created_once() {
        TestFramework::<Workspace>::with(())
            .given(vec![WorkspaceEvent::WorkspaceCreated(new())])
            .when(WorkspaceCommand::CreateWorkspace(new()))
            .then_expect_error_message("The workspace already exists.");
    }
}
