//! A wayline file (a DJI WPML `.kmz` route) of a workspace: imported from the web client, uploaded
//! by DJI Pilot 2 (upload callback) or generated. Its id is derived from the workspace and the name
//! ([`id`]), so two files of one name in one workspace are the same aggregate and the second is
//! refused on the aggregate itself, never on a read model that may lag.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub const AGGREGATE_TYPE: &str = "wayline_file";

/// The id of the wayline named `name` in `workspace_id` (a uuid).
pub fn id(workspace_id: &str, name: &str) -> String {
    super::derived_id(&["wayline", workspace_id, name])
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewWaylineFile {
    pub workspace_id: String,
    pub name: String,
    pub object_key: String,
    /// MD5 (hex) of the `.kmz`, as DJI's `sign`.
    pub sign: String,
    pub drone_model_key: String,
    pub payload_model_keys: Vec<String>,
    pub template_types: Vec<i32>,
    /// Who registered it (the token's user name).
    pub user_name: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WaylineFileCommand {
    Register(NewWaylineFile),
    Favorite { workspace_id: String },
    Unfavorite { workspace_id: String },
    Delete { workspace_id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WaylineFileEvent {
    WaylineFileRegistered(NewWaylineFile),
    WaylineFileFavorited,
    WaylineFileUnfavorited,
    WaylineFileDeleted { object_key: String },
}
crate::domain_event!(WaylineFileEvent, "1.0", {
    WaylineFileRegistered, WaylineFileFavorited, WaylineFileUnfavorited, WaylineFileDeleted
});

#[derive(Debug, thiserror::Error)]
pub enum WaylineFileError {
    #[error("A wayline file with this name already exists.")]
    DuplicateName,
    #[error("The wayline file does not exist.")]
    NotFound,
}

impl crate::error::DjiCode for WaylineFileError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WaylineFile {
    file: Option<NewWaylineFile>,
    favorited: bool,
}

impl WaylineFile {
    /// The file as registered, while it exists.
    pub fn file(&self) -> Option<&NewWaylineFile> {
        self.file.as_ref()
    }

    fn in_workspace(&self, workspace_id: &str) -> Result<&NewWaylineFile, WaylineFileError> {
        self.file.as_ref().filter(|f| f.workspace_id == workspace_id).ok_or(WaylineFileError::NotFound)
    }
}

impl Aggregate for WaylineFile {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = WaylineFileCommand;
    type Event = WaylineFileEvent;
    type Error = WaylineFileError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            WaylineFileCommand::Register(new) => {
                if self.file.is_some() {
                    return Err(WaylineFileError::DuplicateName);
                }
                sink.write(WaylineFileEvent::WaylineFileRegistered(new), self).await;
            }
            WaylineFileCommand::Favorite { workspace_id } => {
                self.in_workspace(&workspace_id)?;
                if !self.favorited {
                    sink.write(WaylineFileEvent::WaylineFileFavorited, self).await;
                }
            }
            WaylineFileCommand::Unfavorite { workspace_id } => {
                self.in_workspace(&workspace_id)?;
                if self.favorited {
                    sink.write(WaylineFileEvent::WaylineFileUnfavorited, self).await;
                }
            }
            WaylineFileCommand::Delete { workspace_id } => {
                // DJI: deleting a file that does not exist succeeds
                if let Ok(f) = self.in_workspace(&workspace_id) {
                    let object_key = f.object_key.clone();
                    sink.write(WaylineFileEvent::WaylineFileDeleted { object_key }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WaylineFileEvent::WaylineFileRegistered(new) => {
                self.file = Some(new);
                self.favorited = false;
            }
            WaylineFileEvent::WaylineFileFavorited => self.favorited = true,
            WaylineFileEvent::WaylineFileUnfavorited => self.favorited = false,
            WaylineFileEvent::WaylineFileDeleted { .. } => {
                self.file = None;
                self.favorited = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn new() -> NewWaylineFile {
        NewWaylineFile {
            workspace_id: "w".into(),
            name: "Roof".into(),
            object_key: "media/w/wayline/Roof.kmz".into(),
            sign: "abc".into(),
            drone_model_key: "0-91-0".into(),
            payload_model_keys: vec!["1-80-0".into()],
            template_types: vec![0],
            user_name: "adminPC".into(),
            size: 10,
        }
    }

    #[test]
    fn a_second_file_of_the_same_name_is_refused_until_the_first_is_deleted() {
        TestFramework::<WaylineFile>::with(())
            .given(vec![WaylineFileEvent::WaylineFileRegistered(new())])
            .when(WaylineFileCommand::Register(new()))
            .then_expect_error_message("A wayline file with this name already exists.");
        TestFramework::<WaylineFile>::with(())
            .given(vec![
                WaylineFileEvent::WaylineFileRegistered(new()),
                WaylineFileEvent::WaylineFileDeleted { object_key: new().object_key },
            ])
            .when(WaylineFileCommand::Register(new()))
            .then_expect_events(vec![WaylineFileEvent::WaylineFileRegistered(new())]);
    }

    #[test]
    fn favorites_change_once_and_only_in_the_files_workspace() {
        TestFramework::<WaylineFile>::with(())
            .given(vec![WaylineFileEvent::WaylineFileRegistered(new()), WaylineFileEvent::WaylineFileFavorited])
            .when(WaylineFileCommand::Favorite { workspace_id: "w".into() })
            .then_expect_events(vec![]);
        TestFramework::<WaylineFile>::with(())
            .given(vec![WaylineFileEvent::WaylineFileRegistered(new())])
            .when(WaylineFileCommand::Favorite { workspace_id: "other".into() })
            .then_expect_error_message("The wayline file does not exist.");
    }

    #[test]
    fn deleting_what_does_not_exist_succeeds_with_nothing_recorded() {
        TestFramework::<WaylineFile>::with(())
            .given_no_previous_events()
            .when(WaylineFileCommand::Delete { workspace_id: "w".into() })
            .then_expect_events(vec![]);
    }
}
