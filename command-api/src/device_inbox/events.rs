//! Events (`thing/product/{sn}/events`): HMS alerts, the progress of operations a command started
//! (remote debugging, fly-to, takeoff, return home), what docks say about their wayline jobs
//! ([`crate::wayline_job::from_dock`]), how far a dock got with the flight areas, and whatever
//! else a device reports. Every event
//! with `need_reply` is answered (in `mod.rs`), handled or not.

use serde_json::Value;
use shared::domain::device::{DeviceCommand, HmsEntry};
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
}
