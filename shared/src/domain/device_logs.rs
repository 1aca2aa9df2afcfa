//! A log upload from a dock (DeviceLogsController): the files of the dock and of its aircraft that
//! someone asked the dock to upload, and what the dock reported about it. Its id is the `bid` of
//! the `fileupload_start` command, which the web client knows as `logs_id` and the dock repeats in
//! its `fileupload_progress` events.
//!
//! Status, as DJI's web client reads it: 1 uploading, 2 done, 3 canceled, 4 failed.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const AGGREGATE_TYPE: &str = "device_logs";

pub const UPLOADING: i32 = 1;
pub const DONE: i32 = 2;
pub const CANCELED: i32 = 3;
pub const FAILED: i32 = 4;

/// The logs status a dock's `fileupload_progress` status means: `ok` done, `canceled` canceled,
/// `failed`, `rejected` and `timeout` failed, anything else (`file_pull`, `file_zip`,
/// `file_uploading`, `in_progress`, …) still uploading.
pub fn status_of(device_status: &str) -> i32 {
    match device_status {
        "ok" => DONE,
        "canceled" => CANCELED,
        "failed" | "rejected" | "timeout" => FAILED,
        _ => UPLOADING,
    }
}

/// One device's log file of an upload: which boots of the device it holds, and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogFile {
    pub file_id: String,
    pub device_sn: String,
    /// `"0"` the aircraft, `"3"` the dock.
    pub module: String,
    pub object_key: String,
    /// `[{boot_index, start_time, end_time, size}]` as the dock listed them.
    pub list: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRequest {
    pub workspace_id: String,
    /// The dock asked to upload.
    pub gateway_sn: String,
    pub username: String,
    pub logs_information: String,
    /// When what the logs should show happened (epoch ms), if the user said.
    pub happen_time: Option<i64>,
    pub files: Vec<LogFile>,
}

/// How far one device's file got, from a `fileupload_progress` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileProgress {
    pub device_sn: String,
    /// `"0"` or `"3"`.
    pub module: String,
    /// Percent, over every step of the upload.
    pub progress: i64,
    pub result: i64,
    pub upload_rate: f64,
    /// The device's own word (`file_pull`, `file_uploading`, `ok`, …).
    pub status: String,
    /// Once uploaded: the object's key, MD5 and size as the dock reports them.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceLogsCommand {
    /// Recorded before the dock is asked, so that no progress it reports finds nothing to report on.
    Request(Box<UploadRequest>),
    /// The dock refused `fileupload_start` (or never answered).
    Refused {
        result: i64,
    },
    /// A `fileupload_progress` event; the same `tid` again is kept once.
    Report {
        tid: String,
        device_status: String,
        files: Vec<FileProgress>,
    },
    Delete {
        workspace_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceLogsEvent {
    LogsUploadRequested(Box<UploadRequest>),
    LogsUploadRefused { result: i64 },
    LogsProgressReported { tid: String, status: i32, device_status: String, files: Vec<FileProgress> },
    LogsDeleted,
}
crate::domain_event!(DeviceLogsEvent, "1.0", { LogsUploadRequested, LogsUploadRefused, LogsProgressReported, LogsDeleted });

#[derive(Debug, thiserror::Error)]
pub enum DeviceLogsError {
    #[error("The log upload already exists.")]
    Exists,
    #[error("The log upload does not exist.")]
    NotFound,
}

impl crate::error::DjiCode for DeviceLogsError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeviceLogs {
    request: Option<UploadRequest>,
    status: i32,
    deleted: bool,
    tids: Vec<String>,
    /// The dock reported the upload done, canceled or failed. (A refusal is not final: a dock
    /// whose reply was lost may still upload and say so.)
    finished: bool,
}

impl DeviceLogs {
    /// The workspace of an upload that exists (and was not deleted).
    pub fn workspace_id(&self) -> Option<&str> {
        self.request.as_ref().filter(|_| !self.deleted).map(|r| r.workspace_id.as_str())
    }
    pub fn status(&self) -> i32 {
        self.status
    }
}

impl Aggregate for DeviceLogs {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = DeviceLogsCommand;
    type Event = DeviceLogsEvent;
    type Error = DeviceLogsError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            DeviceLogsCommand::Request(request) => {
                if self.request.is_some() {
                    return Err(DeviceLogsError::Exists);
                }
                sink.write(DeviceLogsEvent::LogsUploadRequested(request), self).await;
            }
            DeviceLogsCommand::Refused { result } => {
                if self.request.is_none() {
                    return Err(DeviceLogsError::NotFound);
                }
                // progress already reported says more than a lost reply
                if self.status == UPLOADING && self.tids.is_empty() {
                    sink.write(DeviceLogsEvent::LogsUploadRefused { result }, self).await;
                }
            }
            DeviceLogsCommand::Report { tid, device_status, files } => {
                // a dock's report of an upload nobody here asked for (or since deleted) is dropped
                if self.request.is_none() || self.deleted {
                    return Err(DeviceLogsError::NotFound);
                }
                // the same report again, or one overtaken by the dock's final word (reports may
                // arrive out of order): nothing new
                if (!tid.is_empty() && self.tids.contains(&tid)) || self.finished {
                    return Ok(());
                }
                let status = status_of(&device_status);
                sink.write(DeviceLogsEvent::LogsProgressReported { tid, status, device_status, files }, self).await;
            }
            DeviceLogsCommand::Delete { workspace_id } => {
                if self.workspace_id() != Some(workspace_id.as_str()) {
                    return Err(DeviceLogsError::NotFound);
                }
                sink.write(DeviceLogsEvent::LogsDeleted, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DeviceLogsEvent::LogsUploadRequested(request) => {
                self.request = Some(*request);
                self.status = UPLOADING;
            }
            DeviceLogsEvent::LogsUploadRefused { .. } => self.status = FAILED,
            DeviceLogsEvent::LogsProgressReported { tid, status, .. } => {
                if !tid.is_empty() {
                    self.tids.push(tid);
                }
                self.status = status;
                self.finished = status != UPLOADING;
            }
            DeviceLogsEvent::LogsDeleted => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn request() -> UploadRequest {
        UploadRequest {
            workspace_id: "w".into(),
            gateway_sn: "DOCK".into(),
            username: "adminPC".into(),
            logs_information: "landing failed".into(),
            happen_time: Some(1),
            files: vec![LogFile {
                file_id: "f".into(),
                device_sn: "DOCK".into(),
                module: "3".into(),
                object_key: "w/logs/f.tar".into(),
                list: vec![],
            }],
        }
    }

    fn requested() -> DeviceLogsEvent {
        DeviceLogsEvent::LogsUploadRequested(Box::new(request()))
    }

    #[test]
    fn device_words_map_to_the_web_clients_status() {
        assert_eq!(
            ["file_pull", "file_uploading", "ok", "canceled", "timeout", "rejected", "failed"].map(status_of),
            [UPLOADING, UPLOADING, DONE, CANCELED, FAILED, FAILED, FAILED]
        );
    }

    #[test]
    fn reports_are_kept_once_and_only_for_an_upload_that_exists() {
        let report =
            |tid: &str| DeviceLogsCommand::Report { tid: tid.into(), device_status: "ok".into(), files: vec![] };
        TestFramework::<DeviceLogs>::with(())
            .given_no_previous_events()
            .when(report("t"))
            .then_expect_error_message("The log upload does not exist.");
        TestFramework::<DeviceLogs>::with(()).given(vec![requested()]).when(report("t")).then_expect_events(vec![
            DeviceLogsEvent::LogsProgressReported {
                tid: "t".into(),
                status: DONE,
                device_status: "ok".into(),
                files: vec![],
            },
        ]);
        let done = DeviceLogsEvent::LogsProgressReported {
            tid: "t".into(),
            status: DONE,
            device_status: "ok".into(),
            files: vec![],
        };
        TestFramework::<DeviceLogs>::with(())
            .given(vec![requested(), done.clone()])
            .when(report("t"))
            .then_expect_events(vec![]);
        // a report overtaken by the final one changes nothing
        let pulling = DeviceLogsCommand::Report { tid: "p".into(), device_status: "file_pull".into(), files: vec![] };
        TestFramework::<DeviceLogs>::with(())
            .given(vec![requested(), done.clone()])
            .when(pulling)
            .then_expect_events(vec![]);
        // a refusal after the dock reported progress changes nothing
        TestFramework::<DeviceLogs>::with(())
            .given(vec![requested(), done])
            .when(DeviceLogsCommand::Refused { result: 1 })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_upload_is_deleted_in_its_own_workspace_only() {
        TestFramework::<DeviceLogs>::with(())
            .given(vec![requested()])
            .when(DeviceLogsCommand::Delete { workspace_id: "other".into() })
            .then_expect_error_message("The log upload does not exist.");
        TestFramework::<DeviceLogs>::with(())
            .given(vec![requested()])
            .when(DeviceLogsCommand::Delete { workspace_id: "w".into() })
            .then_expect_events(vec![DeviceLogsEvent::LogsDeleted]);
        TestFramework::<DeviceLogs>::with(())
            .given(vec![requested()])
            .when(DeviceLogsCommand::Request(Box::new(request())))
            .then_expect_error_message("The log upload already exists.");
    }
}
