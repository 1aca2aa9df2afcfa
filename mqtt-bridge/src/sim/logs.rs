//! Log files of a simulated dock and its aircraft (DeviceLogsController): `fileupload_list` lists a
//! few boots of each, `fileupload_start` uploads one archive per device to the object key the
//! cloud chose, with the credentials it sent, reporting `fileupload_progress` (pull, upload, done)
//! with the command's `bid`; `fileupload_update` with `cancel` stops an upload under way and
//! reports it `canceled`.
//!
//! The payloads are pure functions; [`upload`] talks to the network, off the driver's loop.

use std::time::Duration;

use md5::Digest as _;
use object_store::path::Path;
use object_store::{ObjectStore as _, PutPayload};
use serde_json::{json, Value};

use super::media::{s3, StorageConfig};
use super::{Message, Publisher, SimDock};

/// Boots of each device listed by `fileupload_list`.
const BOOTS: i64 = 3;

/// The `fileupload_list` reply's data for the modules asked (`"0"` aircraft, `"3"` dock): `files`
/// directly under `data`, as docks answer it. Each device lists its last [`BOOTS`] boots, an hour
/// apart, ending `now_ms`.
pub(super) fn list_reply(ids: &SimDock, asked: &Value, now_ms: i64) -> Value {
    let modules: Vec<String> = asked
        .get("module_list")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|m| m.as_str().map(str::to_owned).or_else(|| Some(m.to_string()))).collect())
        .unwrap_or_default();
    let files: Vec<Value> = ["3", "0"]
        .iter()
        .filter(|m| modules.iter().any(|x| x == *m))
        .map(|m| {
            let (sn, base) = if *m == "3" { (&ids.dock_sn, 100) } else { (&ids.drone_sn, 200) };
            let list: Vec<Value> = (0..BOOTS)
                .map(|i| {
                    let end = now_ms - (BOOTS - 1 - i) * 3_600_000;
                    json!({"boot_index": base + i, "start_time": end - 1_800_000, "end_time": end,
                        "size": 1024 * (i + 1)})
                })
                .collect();
            json!({"device_sn": sn, "module": m, "result": 0, "list": list})
        })
        .collect();
    json!({"result": 0, "files": files})
}

/// One device's archive to upload.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LogFile {
    pub(super) device_sn: String,
    pub(super) module: String,
    pub(super) object_key: String,
    pub(super) boots: Vec<i64>,
}

/// What a `fileupload_start` asks, or why it cannot be done.
#[derive(Debug, Clone)]
pub(super) struct LogUpload {
    pub(super) dock_sn: String,
    pub(super) logs_id: String,
    pub(super) storage: StorageConfig,
    pub(super) files: Vec<LogFile>,
}

impl LogUpload {
    pub(super) fn parse(dock_sn: &str, bid: &str, data: &Value) -> Result<Self, String> {
        let storage = StorageConfig::parse(data)?;
        let files: Vec<LogFile> = data
            .pointer("/params/files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|f| LogFile {
                device_sn: f.get("device_sn").and_then(Value::as_str).unwrap_or_default().to_string(),
                module: f.get("module").and_then(Value::as_str).unwrap_or_default().to_string(),
                object_key: f.get("object_key").and_then(Value::as_str).unwrap_or_default().to_string(),
                boots: f
                    .get("list")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.get("boot_index").and_then(Value::as_i64))
                    .collect(),
            })
            .collect();
        if files.is_empty() || files.iter().any(|f| f.object_key.is_empty()) {
            return Err("fileupload_start named no file or no object key".into());
        }
        Ok(Self { dock_sn: dock_sn.to_string(), logs_id: bid.to_string(), storage, files })
    }
}

/// A file's state in a progress event.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FileState {
    pub(super) step: i64,
    pub(super) percent: i64,
    pub(super) status: &'static str,
    pub(super) result: i64,
    /// MD5 and size once uploaded.
    pub(super) uploaded: Option<(String, usize)>,
}

impl FileState {
    fn new() -> Self {
        Self { step: 1, percent: 0, status: "file_pull", result: 0, uploaded: None }
    }
}

/// `fileupload_progress` data: the upload's status and each file's (two steps: pull, upload).
pub(super) fn progress_data(status: &str, files: &[LogFile], states: &[FileState]) -> Value {
    let list: Vec<Value> = files
        .iter()
        .zip(states)
        .map(|(f, s)| {
            let (fingerprint, size) = s.uploaded.clone().unwrap_or_default();
            json!({
                "module": f.module, "device_sn": f.device_sn, "key": f.object_key,
                "fingerprint": fingerprint, "size": size,
                "progress": {"current_step": s.step, "total_step": 2, "progress": s.percent,
                    "finish_time": 0, "upload_rate": if s.status == "file_uploading" { 512.0 } else { 0.0 },
                    "status": s.status, "result": s.result},
            })
        })
        .collect();
    let result = states.iter().map(|s| s.result).find(|r| *r != 0).unwrap_or(0);
    json!({"result": result, "output": {"status": status, "ext": {"files": list}}})
}

/// The archive of one device's chosen boots: a small text file, not a real tar.
pub(super) fn archive(f: &LogFile) -> Vec<u8> {
    let mut out = String::new();
    for boot in &f.boots {
        out.push_str(&format!("Hangar dock simulator: {} (module {}) boot {boot}\n", f.device_sn, f.module));
        out.push_str(&"log line\n".repeat(64));
    }
    out.into_bytes()
}

/// Uploads each file, reporting progress every `interval`; ends with `ok`, or `failed` when a file
/// could not be stored. Aborting the task (a cancel) ends it between two reports.
pub(super) async fn upload(job: LogUpload, out: Publisher, interval: Duration) {
    let LogUpload { dock_sn, logs_id, storage, files } = job;
    let mut states: Vec<FileState> = files.iter().map(|_| FileState::new()).collect();
    let report = |status: &str, states: &[FileState]| {
        Message::event(Duration::ZERO, &dock_sn, &logs_id, "fileupload_progress", progress_data(status, &files, states))
    };
    out.send(report("file_pull", &states)).await;
    let store = s3(&storage);
    for i in 0..files.len() {
        tokio::time::sleep(interval).await;
        states[i] = FileState { step: 2, percent: 50, status: "file_uploading", ..FileState::new() };
        out.send(report("file_uploading", &states)).await;
        let bytes = archive(&files[i]);
        let put = match &store {
            Ok(store) => store
                .put(&Path::from(files[i].object_key.as_str()), PutPayload::from(bytes.clone()))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        states[i] = match put {
            Ok(_) => {
                let md5 = hex::encode(md5::Md5::digest(&bytes));
                FileState { step: 2, percent: 100, status: "ok", result: 0, uploaded: Some((md5, bytes.len())) }
            }
            Err(e) => {
                tracing::warn!(error = %e, logs_id, key = files[i].object_key, "simulated dock could not upload a log file");
                FileState { step: 2, percent: 0, status: "failed", result: UPLOAD_FAILED, uploaded: None }
            }
        };
    }
    tokio::time::sleep(interval).await;
    let status = if states.iter().all(|s| s.status == "ok") { "ok" } else { "failed" };
    out.send(report(status, &states)).await;
}

/// The progress a dock reports when an upload is cancelled: every file not finished canceled.
pub(super) fn canceled(job: &LogUpload) -> Message {
    let states: Vec<FileState> =
        job.files.iter().map(|_| FileState { status: "canceled", ..FileState::new() }).collect();
    Message::event(
        Duration::ZERO,
        &job.dock_sn,
        &job.logs_id,
        "fileupload_progress",
        progress_data("canceled", &job.files, &states),
    )
}

/// `result` of a file the simulated dock could not store.
pub(super) const UPLOAD_FAILED: i64 = 324_030;

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> SimDock {
        SimDock::new("T", 1)
    }

    #[test]
    fn the_list_names_the_modules_asked_with_their_boots() {
        let reply = list_reply(&ids(), &json!({"module_list": ["0", "3"]}), 10_000_000);
        let files = reply["files"].as_array().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!((files[0]["module"].as_str(), files[0]["device_sn"].as_str()), (Some("3"), Some("TDOCK0001")));
        assert_eq!(files[1]["device_sn"], "TUAV0001");
        let boots = files[0]["list"].as_array().unwrap();
        assert_eq!(boots.len(), 3);
        assert_eq!(boots[2]["end_time"], 10_000_000);
        assert!(boots.iter().all(|b| b["start_time"].as_i64() < b["end_time"].as_i64()));
        let only_dock = list_reply(&ids(), &json!({"module_list": ["3"]}), 1);
        assert_eq!(only_dock["files"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_start_is_read_and_progress_says_each_file() {
        let data = json!({
            "bucket": "b", "credentials": {"access_key_id": "a", "access_key_secret": "s"}, "endpoint": "http://x",
            "params": {"files": [{"device_sn": "D", "module": "3", "object_key": "w/logs/1.tar", "list": [{"boot_index": 7}]}]},
        });
        let job = LogUpload::parse("D", "L", &data).unwrap();
        assert_eq!(job.files[0].boots, vec![7]);
        assert!(LogUpload::parse("D", "L", &json!({"bucket": "b"})).is_err());
        let done = FileState { step: 2, percent: 100, status: "ok", result: 0, uploaded: Some(("m".into(), 3)) };
        let p = progress_data("ok", &job.files, &[done]);
        assert_eq!(p["output"]["status"], "ok");
        let f = &p["output"]["ext"]["files"][0];
        assert_eq!(
            (f["key"].as_str(), f["fingerprint"].as_str(), f["size"].as_i64()),
            (Some("w/logs/1.tar"), Some("m"), Some(3))
        );
        assert_eq!(f["progress"]["current_step"], 2);
        assert!(String::from_utf8(archive(&job.files[0])).unwrap().contains("boot 7"));
    }
}
