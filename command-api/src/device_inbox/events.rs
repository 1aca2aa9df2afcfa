//! Events (`thing/product/{sn}/events`): HMS alerts, the progress of operations a command started
//! (remote debugging, fly-to, takeoff, return home), what docks say about their wayline jobs
//! ([`crate::wayline_job::from_dock`]), how far a dock got with the flight areas, and whatever
//! else a device reports; log uploads' progress (`fileupload_progress`, [`logs_progress`]). Every event
//! with `need_reply` is answered (in `mod.rs`), handled or not.

use cqrs_es::AggregateError;
use serde_json::Value;
use shared::domain::device::{DeviceCommand, HmsEntry};
use shared::domain::device_logs::{DeviceLogsCommand, FileProgress};
use shared::domain::device_progress::{self, DeviceProgressCommand, Report};
use shared::event_store::{execute, metadata};
use shared::protocol::services::{FLIGHT_NOTIFICATIONS, REMOTE_DEBUG_PROGRESS, UPGRADE_PROGRESS};
use shared::protocol::{as_i64, truthy, Envelope};

use super::exec;
use crate::AppState;

pub async fn handle(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    let method = env.method.as_str();
    use crate::wayline_job::from_dock;
    match method {
        "hms" => return hms(s, sn, env).await,
        "flighttask_progress" => return from_dock::progress(s, sn, env).await,
        "flighttask_ready" => return from_dock::ready(s, sn, env).await,
        "file_upload_callback" => return from_dock::media_uploaded(s, sn, env).await,
        "highest_priority_upload_flighttask_media" => return from_dock::prioritized(s, sn, env).await,
        "fileupload_progress" => return logs_progress(s, sn, env).await,
        "flight_areas_sync_progress" => {
            let status = env.data.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string();
            let reason = env.data.get("reason").and_then(as_i64).unwrap_or(0);
            let file = env.data.get("file").cloned().unwrap_or(Value::Null);
            return exec(s, sn, DeviceCommand::ReportFlightAreaSync { status, reason, file }).await;
        }
        _ => {}
    }
    if REMOTE_DEBUG_PROGRESS.contains(&method)
        || FLIGHT_NOTIFICATIONS.contains(&method)
        || UPGRADE_PROGRESS.contains(&method)
    {
        let gateway_sn = env.gateway_or(sn);
        let report = Report {
            sn: sn.to_string(),
            gateway_sn,
            method: method.to_string(),
            tid: env.tid.clone(),
            bid: env.bid.clone(),
            data: env.data.clone(),
        };
        let id = device_progress::id(sn, method, &env.bid);
        execute(&s.device_progress, &id, DeviceProgressCommand::Report(report), metadata("", "", "mqtt"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// A dock's `fileupload_progress` (`bid` = the upload's `logs_id`): each file's percent over all its
/// steps, `((current_step - 1) * 100 + progress) / total_step`, recorded on the upload. A report
/// of an upload Hangar does not know (another server's, or one deleted) is answered and dropped.
async fn logs_progress(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    let output = env.data.get("output").unwrap_or(&Value::Null);
    let device_status = output.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
    let list = output.pointer("/ext/files").and_then(Value::as_array).cloned().unwrap_or_default();
    let files = list.iter().map(file_progress).collect();
    let logs = shared::event_store::load(&s.device_logs, &env.bid).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(workspace_id) = logs.workspace_id().map(str::to_owned) else {
        tracing::info!(sn, bid = env.bid, "fileupload_progress of an upload not recorded here");
        return Ok(());
    };
    let command = DeviceLogsCommand::Report { tid: env.tid.clone(), device_status, files };
    let mut meta = metadata("", &workspace_id, "mqtt");
    meta.insert("gateway_sn".into(), env.gateway_or(sn));
    match execute(&s.device_logs, &env.bid, command, meta).await {
        Ok(()) | Err(AggregateError::UserError(_)) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

fn file_progress(f: &Value) -> FileProgress {
    let p = f.get("progress").unwrap_or(&Value::Null);
    let int = |v: Option<&Value>| v.and_then(as_i64).unwrap_or(0);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let total = int(p.get("total_step")).max(1);
    let step = int(p.get("current_step")).clamp(1, total);
    let percent = int(p.get("progress")).clamp(0, 100);
    FileProgress {
        device_sn: text(f.get("device_sn")),
        module: match f.get("module") {
            Some(Value::Number(n)) => n.to_string(),
            v => text(v),
        },
        progress: ((step - 1) * 100 + percent) / total,
        result: int(p.get("result")),
        upload_rate: p.get("upload_rate").and_then(Value::as_f64).unwrap_or(0.0),
        status: text(p.get("status")),
        key: text(f.get("key")),
        fingerprint: text(f.get("fingerprint")),
        size: int(f.get("size")),
    }
}

/// DJI's HMS key: `dock_tip_<code>` for docks, `fpv_tip_<code>[_in_the_sky]` for aircraft.
pub fn hms_key(entry: &Value, from_dock: bool) -> String {
    let code = match entry.get("code") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(v) => as_i64(v).map(|n| format!("0x{n:08x}")).unwrap_or_default(),
        None => String::new(),
    };
    if from_dock {
        format!("dock_tip_{code}")
    } else if entry.get("in_the_sky").is_some_and(truthy) {
        format!("fpv_tip_{code}_in_the_sky")
    } else {
        format!("fpv_tip_{code}")
    }
}

pub async fn hms(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    let list = env.data.get("list").and_then(Value::as_array).cloned().unwrap_or_default();
    let entries: Vec<HmsEntry> = list
        .iter()
        .enumerate()
        .map(|(i, e)| {
            // device_type "3-x-y" marks a dock alert; otherwise one of the aircraft's
            let from_dock = e.get("device_type").and_then(Value::as_str).unwrap_or_default().starts_with("3-");
            HmsEntry {
                hms_id: shared::domain::derived_id(&["hms", sn, &env.tid, &env.bid, &i.to_string()]),
                tid: env.tid.clone(),
                bid: env.bid.clone(),
                level: e.get("level").and_then(as_i64).unwrap_or(0),
                module: e.get("module").and_then(as_i64).unwrap_or(3),
                key: hms_key(e, from_dock),
                raw: e.clone(),
            }
        })
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    exec(s, sn, DeviceCommand::ReportHms { entries }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hms_keys_follow_dji() {
        use serde_json::json;
        assert_eq!(hms_key(&json!({"code": "0x1B030019"}), true), "dock_tip_0x1b030019");
        assert_eq!(hms_key(&json!({"code": "0x16100083", "in_the_sky": 1}), false), "fpv_tip_0x16100083_in_the_sky");
        assert_eq!(hms_key(&json!({"code": 369098883}), false), "fpv_tip_0x16000083");
    }

    #[test]
    fn a_log_files_percent_counts_every_step() {
        use serde_json::json;
        let f = json!({"module": "3", "device_sn": "D", "size": 10, "key": "k", "fingerprint": "m",
            "progress": {"current_step": 2, "total_step": 2, "progress": 50, "upload_rate": 1.5, "status": "file_uploading", "result": 0}});
        let p = file_progress(&f);
        assert_eq!((p.progress, p.module.as_str(), p.status.as_str(), p.size), (75, "3", "file_uploading", 10));
        assert_eq!(p.upload_rate, 1.5);
        // a number for the module, steps out of range, nothing at all
        let p = file_progress(&json!({"module": 0, "progress": {"current_step": 9, "total_step": 0, "progress": 100}}));
        assert_eq!((p.progress, p.module.as_str()), (100, "0"));
        assert_eq!(file_progress(&json!({})).progress, 0);
    }
}
