//! A group of media files shot in one wayline job, as reported by DJI Pilot 2's
//! `group-upload-callback` once the group's upload finished. Every report is kept: Pilot 2 reports
//! a group again when more files of it were uploaded later.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub const AGGREGATE_TYPE: &str = "file_group";

/// Aggregate id of a group in a workspace.
pub fn group_id(workspace_id: &str, file_group_id: &str) -> String {
    format!("{workspace_id}:{file_group_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FileGroupCommand {
    ReportGroupUpload { workspace_id: String, file_group_id: String, file_count: i64, file_uploaded_count: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FileGroupEvent {
    GroupUploadReported { workspace_id: String, file_group_id: String, file_count: i64, file_uploaded_count: i64 },
}
crate::domain_event!(FileGroupEvent, "1.0", { GroupUploadReported });

#[derive(Debug, thiserror::Error)]
pub enum FileGroupError {
    #[error("file_group_id must not be empty.")]
    MissingGroup,
    #[error("file_uploaded_count ({uploaded}) must be between 0 and file_count ({count}).")]
    BadCounts { count: i64, uploaded: i64 },
}

impl crate::error::DjiCode for FileGroupError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FileGroup {
    reports: u64,
    /// The workspace of the group's job (empty before its first report).
    #[serde(default)]
    workspace_id: String,
}

impl FileGroup {
    /// The workspace of the group, once reported.
    pub fn workspace_id(&self) -> Option<&str> {
        Some(self.workspace_id.as_str()).filter(|_| self.reports > 0)
    }
}

impl Aggregate for FileGroup {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = FileGroupCommand;
    type Event = FileGroupEvent;
    type Error = FileGroupError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            FileGroupCommand::ReportGroupUpload { workspace_id, file_group_id, file_count, file_uploaded_count } => {
                if file_group_id.trim().is_empty() {
                    return Err(FileGroupError::MissingGroup);
                }
                if file_count < 0 || !(0..=file_count).contains(&file_uploaded_count) {
                    return Err(FileGroupError::BadCounts { count: file_count, uploaded: file_uploaded_count });
                }
                let event = FileGroupEvent::GroupUploadReported {
                    workspace_id,
                    file_group_id,
                    file_count,
                    file_uploaded_count,
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            FileGroupEvent::GroupUploadReported { workspace_id, .. } => {
                self.reports += 1;
                self.workspace_id = workspace_id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn report(count: i64, uploaded: i64) -> FileGroupCommand {
        FileGroupCommand::ReportGroupUpload {
            workspace_id: "w".into(),
            file_group_id: "g".into(),
            file_count: count,
            file_uploaded_count: uploaded,
        }
    }

    fn reported(count: i64, uploaded: i64) -> FileGroupEvent {
        FileGroupEvent::GroupUploadReported {
            workspace_id: "w".into(),
            file_group_id: "g".into(),
            file_count: count,
            file_uploaded_count: uploaded,
        }
    }

    #[test]
    fn every_report_is_recorded() {
        TestFramework::<FileGroup>::with(())
            .given(vec![reported(3, 1)])
            .when(report(3, 3))
            .then_expect_events(vec![reported(3, 3)]);
    }

    #[test]
    fn more_uploaded_than_in_the_group_is_refused() {
        TestFramework::<FileGroup>::with(())
            .given_no_previous_events()
            .when(report(2, 3))
            .then_expect_error_message("file_uploaded_count (3) must be between 0 and file_count (2).");
    }
}
