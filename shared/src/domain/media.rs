//! A media file that DJI Pilot 2 (or a dock) uploaded to object storage and reported through
//! `upload-callback`. The aggregate id is derived from workspace and fingerprint, so the same file
//! reported twice, or concurrently, is one file.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::derived_id;

pub const AGGREGATE_TYPE: &str = "media_file";

/// `file_id` of the file with this fingerprint in this workspace.
pub fn file_id(workspace_id: &str, fingerprint: &str) -> String {
    derived_id(&["media_file", workspace_id, fingerprint])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaUpload {
    pub file_id: String,
    pub workspace_id: String,
    pub name: String,
    pub path: String,
    pub object_key: String,
    pub fingerprint: String,
    pub tinny_fingerprint: String,
    /// 0 normal, 1 panorama; absent when the client did not say.
    pub sub_file_type: Option<i32>,
    pub is_original: bool,
    pub drone_sn: String,
    pub drone_model_key: String,
    pub payload_model_key: String,
    /// Wayline job the file was shot in (DJI's `file_group_id`), empty otherwise.
    pub file_group_id: String,
    /// Shooting metadata as the client sent it (positions, altitudes, created_time, …).
    pub metadata: Value,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MediaCommand {
    ReportUpload(MediaUpload),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MediaEvent {
    MediaFileUploaded(MediaUpload),
}
crate::domain_event!(MediaEvent, "1.0", { MediaFileUploaded });

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0} must not be empty.")]
    Missing(&'static str),
}

impl crate::error::DjiCode for MediaError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MediaFile {
    uploaded: bool,
    /// The workspace whose library holds the file (empty before its upload).
    #[serde(default)]
    workspace_id: String,
}

impl MediaFile {
    /// The workspace whose library holds the file, once uploaded.
    pub fn workspace_id(&self) -> Option<&str> {
        Some(self.workspace_id.as_str()).filter(|_| self.uploaded)
    }
}

impl Aggregate for MediaFile {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = MediaCommand;
    type Event = MediaEvent;
    type Error = MediaError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            MediaCommand::ReportUpload(upload) => {
                for (name, value) in
                    [("object_key", &upload.object_key), ("name", &upload.name), ("fingerprint", &upload.fingerprint)]
                {
                    if value.trim().is_empty() {
                        return Err(MediaError::Missing(name));
                    }
                }
                // A repeated callback (Pilot 2 retries after a lost answer) is the same file.
                if !self.uploaded {
                    sink.write(MediaEvent::MediaFileUploaded(upload), self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            MediaEvent::MediaFileUploaded(upload) => {
                self.uploaded = true;
                self.workspace_id = upload.workspace_id;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    pub fn upload(fingerprint: &str) -> MediaUpload {
        MediaUpload {
            file_id: file_id("w", fingerprint),
            workspace_id: "w".into(),
            name: "DJI_0001.JPG".into(),
            path: "".into(),
            object_key: "media/DJI_0001.JPG".into(),
            fingerprint: fingerprint.into(),
            tinny_fingerprint: "t".into(),
            sub_file_type: Some(0),
            is_original: true,
            drone_sn: "1AD3".into(),
            drone_model_key: "0-67-0".into(),
            payload_model_key: "1-52-0".into(),
            file_group_id: "".into(),
            metadata: serde_json::json!({}),
            username: "pilot".into(),
        }
    }

    #[test]
    fn first_report_records_the_file() {
        TestFramework::<MediaFile>::with(())
            .given_no_previous_events()
            .when(MediaCommand::ReportUpload(upload("f1")))
            .then_expect_events(vec![MediaEvent::MediaFileUploaded(upload("f1"))]);
    }

    #[test]
    fn repeated_report_changes_nothing() {
        TestFramework::<MediaFile>::with(())
            .given(vec![MediaEvent::MediaFileUploaded(upload("f1"))])
            .when(MediaCommand::ReportUpload(upload("f1")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn report_without_object_key_is_refused() {
        let mut u = upload("f1");
        u.object_key = " ".into();
        TestFramework::<MediaFile>::with(())
            .given_no_previous_events()
            .when(MediaCommand::ReportUpload(u))
            .then_expect_error_message("object_key must not be empty.");
    }

    #[test]
    fn file_id_depends_on_workspace_and_fingerprint() {
        assert_eq!(file_id("w", "a"), file_id("w", "a"));
        assert_ne!(file_id("w", "a"), file_id("v", "a"));
        assert_ne!(file_id("w", "a"), file_id("w", "b"));
    }
}
