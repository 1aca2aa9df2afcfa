//! What the WebSocket pushes, and from where:
//! - telemetry, live from the TELEMETRY subjects: `dock_osd` (docks), `device_osd` (aircraft),
//!   `gateway_osd` (remote controllers), each to the workspace the device is bound to;
//! - custom flight areas added, changed and deleted (`flight_areas_update`), from `flight_area`
//!   events, and how far a dock got with them (`flight_areas_sync_progress`, a `device` event);
//! - how far a dock got with a log upload (`fileupload_progress`), from `device_logs` events;
//! - map elements drawn, changed and deleted (`map_element_create`, `map_element_update`,
//!   `map_element_delete`), from `map_element` events;
//! - device facts, live from the ES subjects of `device` events: `device_online` (and on binding),
//!   `device_offline` (and on unbinding), `device_hms`, `control_source_change`;
//! - what devices report about operations under way, from `device_progress` events: the
//!   remote-debug progress (`biz_code` = method: `cover_open`, `device_reboot`, …),
//!   `fly_to_point_progress`, `takeoff_to_point_progress`, `return_home_info`,
//!   `device_exit_homing_notify`, and of DRC: `drc_status_notify` (when it reports a failure) and
//!   `joystick_invalid_notify`.
//!
//! These are core NATS subscriptions: a push missed while query-api restarts is not replayed (the
//! clients re-read the API on reconnect); what was recorded is never lost, only not re-pushed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use shared::domain::device::DeviceEvent;
use shared::domain::device_logs::{self, DeviceLogsEvent};
use shared::domain::device_progress::{self, DeviceProgressEvent, Report};
use shared::domain::flight_area::{self, FlightAreaEvent};
use shared::domain::map_element::{self, MapElementEvent};
use shared::es::StoredEvent;
use shared::protocol::{Topic, TopicKind, H_MQTT_TOPIC};
use shared::Shutdown;
use tokio::sync::RwLock;

use crate::devices::{hms_dto, topology, DeviceRow};
use crate::flight_area::{Area, AreaRow, AREA_SELECT};
use crate::map_element::{Element, ElementResource, ElementRow, ELEMENT_SELECT};
use crate::ws::Audience;
use crate::AppState;

/// Where each device's messages go: serial number → (workspace, domain), each as of the time of
/// the device's event it was learnt from. A refresh whose rows were read before a binding was
/// projected must not undo what that binding's event already said: an entry is only replaced by
/// news at least as recent.
#[derive(Clone, Default)]
struct Directory(Arc<RwLock<HashMap<String, Entry>>>);

#[derive(Clone)]
struct Entry {
    workspace_id: String,
    domain: i32,
    at: DateTime<Utc>,
}

impl Directory {
    async fn refresh(&self, s: &AppState, since: Option<DateTime<Utc>>) -> sqlx::Result<()> {
        let rows: Vec<(String, String, i32, DateTime<Utc>)> = sqlx::query_as(
            "SELECT device_sn, workspace_id, domain, update_time FROM rm_devices \
             WHERE $1::timestamptz IS NULL OR update_time >= $1",
        )
        .bind(since)
        .fetch_all(&s.pool)
        .await?;
        let mut map = self.0.write().await;
        for (sn, workspace_id, domain, at) in rows {
            Self::learn(&mut map, sn, Entry { workspace_id, domain, at });
        }
        Ok(())
    }

    fn learn(map: &mut HashMap<String, Entry>, sn: String, news: Entry) {
        match map.get(&sn) {
            Some(known) if known.at > news.at => {}
            _ => {
                map.insert(sn, news);
            }
        }
    }

    /// What a device's event (recorded `at`) just said of it, ahead of the next refresh.
    async fn set(&self, sn: &str, workspace_id: &str, domain: i32, at: DateTime<Utc>) {
        let news = Entry { workspace_id: workspace_id.to_string(), domain, at };
        Self::learn(&mut *self.0.write().await, sn.to_string(), news);
    }

    /// A device unbound (recorded `at`): its telemetry goes nowhere from now on.
    async fn unbind(&self, sn: &str, at: DateTime<Utc>) {
        let mut map = self.0.write().await;
        let domain = map.get(sn).map_or(-1, |e| e.domain);
        Self::learn(&mut map, sn.to_string(), Entry { workspace_id: String::new(), domain, at });
    }

    async fn get(&self, sn: &str) -> Option<(String, i32)> {
        self.0.read().await.get(sn).filter(|e| !e.workspace_id.is_empty()).map(|e| (e.workspace_id.clone(), e.domain))
    }
}

pub async fn run(s: AppState, shutdown: Shutdown) -> anyhow::Result<()> {
    let dir = Directory::default();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(keep_directory(s.clone(), dir.clone(), shutdown.clone()));
    tasks.spawn(telemetry(s.clone(), dir.clone(), shutdown.clone()));
    tasks.spawn(device_events(s.clone(), dir.clone(), shutdown.clone()));
    tasks.spawn(progress_events(s.clone(), dir, shutdown.clone()));
    tasks.spawn(workspace_events(s.clone(), shutdown.clone(), map_element::AGGREGATE_TYPE, push_map_event));
    tasks.spawn(workspace_events(s.clone(), shutdown.clone(), flight_area::AGGREGATE_TYPE, push_flight_area_event));
    tasks.spawn(workspace_events(s, shutdown, device_logs::AGGREGATE_TYPE, push_logs_event));
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Every this often the whole directory is read again. A row's `update_time` is the time of its
/// event, not of its projection: a projection running behind writes rows "in the past", which the
/// quarter-second look-ups of recent rows can miss. Binding and unbinding also reach the directory
/// at once from the device events (see [`push_event`]), so this is the net under those.
const FULL_REFRESH: Duration = Duration::from_secs(5);

async fn keep_directory(s: AppState, dir: Directory, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut last: Option<DateTime<Utc>> = None;
    let mut full_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let full = full_at.elapsed() >= FULL_REFRESH;
        // overlap a second: rows committed late with an earlier update_time are still picked up
        let now = Utc::now();
        let since = if full { None } else { last.map(|t| t - chrono::Duration::seconds(1)) };
        match dir.refresh(&s, since).await {
            Ok(()) => {
                last = Some(now);
                if full {
                    full_at = tokio::time::Instant::now();
                }
            }
            Err(e) => tracing::warn!(error = %e, "device directory not refreshed"),
        }
    }
    Ok(())
}

/// Moves every top-level `"<type>-<sub_type>-<position>"` object of an aircraft OSD into a list
/// under `payload` (what DJI's web client reads).
fn collect_payloads(mut host: Map<String, Value>) -> Map<String, Value> {
    let keys: Vec<String> = host
        .iter()
        .filter(|(k, v)| v.is_object() && k.split('-').count() == 3 && k.split('-').all(|p| p.parse::<u32>().is_ok()))
        .map(|(k, _)| k.clone())
        .collect();
    if keys.is_empty() {
        return host;
    }
    let mut list = Vec::new();
    for k in keys {
        if let Some(Value::Object(mut p)) = host.remove(&k) {
            p.insert("payload_index".into(), Value::String(k));
            list.push(Value::Object(p));
        }
    }
    host.insert("payload".into(), Value::Array(list));
    host
}

async fn telemetry(s: AppState, dir: Directory, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut sub = s.nats.subscribe(s.names.telemetry_kind_filter("osd")).await?;
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => anyhow::bail!("telemetry subscription ended") },
        };
        let Some(t) = m.headers.as_ref().and_then(|h| h.get(H_MQTT_TOPIC)).and_then(|t| Topic::parse(t.as_str()))
        else {
            continue;
        };
        if t.kind != TopicKind::Osd {
            continue;
        }
        let Some((workspace_id, domain)) = dir.get(&t.sn).await else { continue };
        let Some((biz, audience, data)) = osd_push(domain, &t.sn, &m.payload) else { continue };
        s.hub.publish_json(&workspace_id, audience, biz, &data);
        let lat = m.headers.as_ref().and_then(|h| h.get(shared::protocol::H_RECEIVED_AT));
        if let Some(at) = lat.and_then(|v| DateTime::parse_from_rfc3339(v.as_str()).ok()) {
            let age = (Utc::now() - at.with_timezone(&Utc)).to_std().unwrap_or_default();
            shared::metrics::summary("hangar_ws_osd_delay_seconds", &[]).observe(age);
        }
    }
}

/// What the WebSocket carries of one OSD message: its `biz_code`, audience and `data`
/// (`{sn, host}`) as JSON text; `None` when it is not an OSD message.
///
/// A dock's or a remote controller's `data` goes out as the device wrote it, never parsed into a
/// tree and written again, unless it holds a `null` (which the WebSocket never carries); an
/// aircraft's is reshaped (its payloads collected under `payload`).
fn osd_push(domain: i32, sn: &str, payload: &[u8]) -> Option<(&'static str, Audience, String)> {
    #[derive(serde::Deserialize)]
    struct Osd<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    if domain == 2 || domain == 3 {
        let biz = if domain == 3 { "dock_osd" } else { "gateway_osd" };
        let raw = serde_json::from_slice::<Osd>(payload).ok()?.data.get();
        if !raw.starts_with('{') {
            return None;
        }
        if !raw.contains("null") {
            let sn = serde_json::to_string(sn).ok()?;
            return Some((biz, Audience::Web, format!("{{\"sn\":{sn},\"host\":{raw}}}")));
        }
    }
    let Ok(Value::Object(mut msg)) = serde_json::from_slice::<Value>(payload) else { return None };
    let Some(Value::Object(data)) = msg.remove("data") else { return None };
    let (biz, audience, host) = match domain {
        3 => ("dock_osd", Audience::Web, data),
        2 => ("gateway_osd", Audience::Web, data),
        _ => ("device_osd", Audience::All, collect_payloads(data)),
    };
    Some((biz, audience, shared::error::strip_nulls(json!({"sn": sn, "host": host})).to_string()))
}

/// Pushes what the events of one aggregate type say to the workspace that recorded them (the
/// commands' metadata): each event decoded as `E` and handed to `push` on a task of its own, since
/// a push may wait for the projection.
async fn workspace_events<E, F, Fut>(
    s: AppState,
    shutdown: Shutdown,
    aggregate_type: &'static str,
    push: F,
) -> anyhow::Result<()>
where
    E: serde::de::DeserializeOwned + Send + 'static,
    F: Fn(AppState, String, StoredEvent, E) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut sub = s.nats.subscribe(s.names.es_filter(Some(aggregate_type), None)).await?;
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => anyhow::bail!("{aggregate_type} subscription ended") },
        };
        let Ok(e) = StoredEvent::from_message(m.headers.as_ref(), &m.payload) else { continue };
        let Ok(event) = serde_json::from_value::<E>(e.payload.clone()) else { continue };
        let Some(ws) = e.metadata.get("workspace_id").and_then(Value::as_str).map(str::to_owned) else { continue };
        let id = e.aggregate_id.clone();
        let pushing = push(s.clone(), ws, e, event);
        tokio::spawn(async move {
            if let Err(err) = pushing.await {
                tracing::warn!(aggregate_type, id, error = %err, "event not pushed");
            }
        });
    }
}

/// `fileupload_progress`, as the web client's log list reads it: `{bid: logs_id, sn: dock, output:
/// {logs_id, status, files: [{device_sn, device_model_domain, progress, result, upload_rate,
/// status}]}}`, statuses in the dock's words.
async fn push_logs_event(s: AppState, ws: String, e: StoredEvent, event: DeviceLogsEvent) -> anyhow::Result<()> {
    let DeviceLogsEvent::LogsProgressReported { device_status, files, .. } = event else { return Ok(()) };
    let sn = e.metadata.get("gateway_sn").and_then(Value::as_str).unwrap_or_default().to_string();
    let files: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({"device_sn": f.device_sn, "device_model_domain": f.module, "progress": f.progress,
                "result": f.result, "upload_rate": f.upload_rate, "status": f.status})
        })
        .collect();
    let result = files.iter().filter_map(|f| f["result"].as_i64()).find(|r| *r != 0).unwrap_or(0);
    let data = json!({
        "bid": e.aggregate_id,
        "sn": sn,
        "result": result,
        "output": {"logs_id": e.aggregate_id, "status": device_status, "files": files},
    });
    s.hub.publish(&ws, Audience::Web, "fileupload_progress", data);
    Ok(())
}

/// `map_element_create` and `map_element_update` carry the element as the list shows it, with its
/// group; `map_element_delete` its group and id.
async fn push_map_event(s: AppState, ws: String, e: StoredEvent, event: MapElementEvent) -> anyhow::Result<()> {
    let id = e.aggregate_id.clone();
    match event {
        MapElementEvent::MapElementCreated(new) => {
            let at = e.recorded_at.timestamp_millis();
            let element = Element {
                id,
                name: new.name,
                create_time: at,
                update_time: at,
                resource: ElementResource {
                    element_type: new.element_type,
                    user_name: new.user_name,
                    content: new.content,
                },
            };
            let mut data = serde_json::to_value(element)?;
            data["group_id"] = json!(new.group_id);
            s.hub.publish(&ws, Audience::All, "map_element_create", data);
        }
        MapElementEvent::MapElementUpdated { .. } => {
            // the rest of the element (its group, type, author) is the projection's: wait for the
            // row this very event wrote
            for _ in 0..40 {
                let row: Option<ElementRow> =
                    sqlx::query_as(&format!("{ELEMENT_SELECT} WHERE element_id = $1 AND update_time >= $2"))
                        .bind(&id)
                        .bind(e.recorded_at)
                        .fetch_optional(&s.pool)
                        .await?;
                if let Some(r) = row {
                    let group_id = r.group_id.clone();
                    let mut data = serde_json::to_value(Element::from(r))?;
                    data["group_id"] = json!(group_id);
                    s.hub.publish(&ws, Audience::All, "map_element_update", data);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        MapElementEvent::MapElementDeleted { group_id } => {
            s.hub.publish(&ws, Audience::All, "map_element_delete", json!({"group_id": group_id, "id": id}));
        }
    }
    Ok(())
}

/// `flight_areas_update`: the area as the list shows it with its `operation` (`add`, `update`),
/// or only the operation and `area_id` for `delete`.
async fn push_flight_area_event(s: AppState, ws: String, e: StoredEvent, event: FlightAreaEvent) -> anyhow::Result<()> {
    let id = e.aggregate_id.clone();
    let (operation, area) = match event {
        FlightAreaEvent::FlightAreaCreated(a) => {
            let at = e.recorded_at.timestamp_millis();
            let area = Area {
                area_id: id,
                name: a.name,
                area_type: a.area_type,
                content: a.content,
                status: true,
                username: a.username,
                create_time: at,
                update_time: at,
            };
            ("add", serde_json::to_value(area)?)
        }
        FlightAreaEvent::FlightAreaUpdated { .. } => {
            // the whole area is the projection's: wait for the row this very event wrote
            let mut row = None;
            for _ in 0..40 {
                row = sqlx::query_as::<_, AreaRow>(&format!("{AREA_SELECT} WHERE area_id = $1 AND update_time >= $2"))
                    .bind(&id)
                    .bind(e.recorded_at)
                    .fetch_optional(&s.pool)
                    .await?;
                if row.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let Some(r) = row else { return Ok(()) };
            ("update", serde_json::to_value(Area::from(r))?)
        }
        FlightAreaEvent::FlightAreaDeleted => ("delete", json!({"area_id": id})),
    };
    let mut data = area;
    data["operation"] = json!(operation);
    s.hub.publish(&ws, Audience::All, "flight_areas_update", data);
    Ok(())
}

async fn device_row(s: &AppState, sn: &str) -> sqlx::Result<Option<DeviceRow>> {
    sqlx::query_as(&format!("{} WHERE d.device_sn = $1", crate::devices::DEVICE_SELECT))
        .bind(sn)
        .fetch_optional(&s.pool)
        .await
}

async fn device_events(s: AppState, dir: Directory, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut sub = s.nats.subscribe(s.names.es_filter(Some(shared::domain::device::AGGREGATE_TYPE), None)).await?;
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => anyhow::bail!("device event subscription ended") },
        };
        let Ok(e) = StoredEvent::from_message(m.headers.as_ref(), &m.payload) else { continue };
        let Ok(event) = serde_json::from_value::<DeviceEvent>(e.payload.clone()) else { continue };
        // pushes that wait for the projection run on their own, so that a thousand docks coming
        // online at once do not queue up behind each other (or overflow the subscription)
        let (s, dir, sn, at) = (s.clone(), dir.clone(), e.aggregate_id.clone(), e.recorded_at);
        tokio::spawn(async move {
            if let Err(err) = push_event(&s, &dir, &sn, at, event).await {
                tracing::warn!(sn, error = %err, "device event not pushed");
            }
        });
    }
}

async fn push_event(
    s: &AppState,
    dir: &Directory,
    sn: &str,
    at: DateTime<Utc>,
    event: DeviceEvent,
) -> anyhow::Result<()> {
    match event {
        DeviceEvent::DeviceOnline { parent_sn, .. } => {
            // the projection may not have written the row yet; give it a moment
            let mut row = None;
            for _ in 0..20 {
                row = device_row(s, sn).await?.filter(|r| r.online);
                if row.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let Some(r) = row else { return Ok(()) };
            let ws = if r.workspace_id.is_empty() {
                match &parent_sn {
                    Some(p) => dir.get(p).await.map(|(w, _)| w).unwrap_or_default(),
                    None => String::new(),
                }
            } else {
                r.workspace_id.clone()
            };
            if !ws.is_empty() {
                let mut t = topology(&r);
                t["gateway_sn"] = json!(parent_sn.unwrap_or_else(|| r.device_sn.clone()));
                s.hub.publish(&ws, Audience::All, "device_online", t);
            }
        }
        DeviceEvent::DeviceBound { workspace_id, .. } => {
            let row = device_row(s, sn).await?;
            if let Some(r) = &row {
                // its telemetry goes to the new workspace from now on, however far behind the
                // projection wrote the row
                dir.set(sn, &workspace_id, r.domain, at).await;
            }
            if let Some(r) = row.filter(|r| r.online) {
                s.hub.publish(&workspace_id, Audience::All, "device_online", topology(&r));
            }
        }
        DeviceEvent::DeviceOffline { .. } => {
            if let Some((ws, _)) = dir.get(sn).await {
                s.hub.publish(&ws, Audience::All, "device_offline", json!({"sn": sn, "online_status": false}));
            }
        }
        DeviceEvent::DeviceUnbound { workspace_id } => {
            dir.unbind(sn, at).await;
            s.hub.publish(&workspace_id, Audience::All, "device_offline", json!({"sn": sn, "online_status": false}));
        }
        DeviceEvent::FlightControlChanged { control_source } => {
            if let Some((ws, _)) = dir.get(sn).await {
                let data = json!({"sn": sn, "type": 1, "control_source": control_source});
                s.hub.publish(&ws, Audience::Web, "control_source_change", data);
            }
        }
        DeviceEvent::PayloadControlChanged { payloads } => {
            if let Some((ws, _)) = dir.get(sn).await {
                for p in payloads {
                    let data = json!({"sn": p.sn, "type": 2, "control_source": p.control_source, "payload_index": p.payload_index});
                    s.hub.publish(&ws, Audience::Web, "control_source_change", data);
                }
            }
        }
        DeviceEvent::HmsRaised { entries } => {
            let ids: Vec<String> = entries.iter().map(|h| h.hms_id.clone()).collect();
            let mut rows = Vec::new();
            for _ in 0..20 {
                rows = crate::devices::hms_rows(s, "h.hms_id = ANY($1)", &ids).await?;
                if rows.len() == ids.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(ws) = rows.first().map(|r| r.workspace_id().to_string()).filter(|w| !w.is_empty()) {
                let host: Vec<Value> = rows.iter().map(hms_dto).collect();
                s.hub.publish(&ws, Audience::Web, "device_hms", json!({"sn": sn, "host": host}));
            }
        }
        DeviceEvent::FlightAreaSyncReported { status, reason, .. } => {
            if let Some((ws, _)) = dir.get(sn).await {
                let message = crate::flight_area::sync_message(&status, reason);
                let data = json!({"sn": sn, "result": reason, "status": status, "message": message});
                s.hub.publish(&ws, Audience::All, "flight_areas_sync_progress", data);
            }
        }
        _ => {}
    }
    Ok(())
}

async fn progress_events(s: AppState, dir: Directory, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut sub = s.nats.subscribe(s.names.es_filter(Some(device_progress::AGGREGATE_TYPE), None)).await?;
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => anyhow::bail!("progress subscription ended") },
        };
        let Ok(e) = StoredEvent::from_message(m.headers.as_ref(), &m.payload) else { continue };
        let Ok(DeviceProgressEvent::ProgressReported(r)) = serde_json::from_value(e.payload) else { continue };
        // a DRC link's state is news to the web client only when something went wrong
        if r.method == "drc_status_notify" && r.data.get("result").and_then(shared::protocol::as_i64).unwrap_or(0) == 0
        {
            continue;
        }
        let Some((ws, _)) = dir.get(&r.gateway_sn).await.or(dir.get(&r.sn).await) else { continue };
        s.hub.publish(&ws, Audience::Web, &r.method, progress_push(&r));
    }
}

/// What the web client reads for each reported method (reference §22.4).
fn progress_push(r: &Report) -> Value {
    let d = &r.data;
    match r.method.as_str() {
        "fly_to_point_progress" | "takeoff_to_point_progress" => {
            let mut out = match d {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            out.insert("sn".into(), json!(r.gateway_sn));
            out.insert("result".into(), d.get("result").cloned().unwrap_or(json!(0)));
            out.insert("message".into(), d.get("status").cloned().unwrap_or(json!("")));
            Value::Object(out)
        }
        "return_home_info" | "device_exit_homing_notify" => json!({"sn": r.sn, "host": d}),
        "drc_status_notify" => {
            let result = d.get("result").and_then(shared::protocol::as_i64).unwrap_or(0);
            json!({"sn": r.gateway_sn, "result": result, "message": shared::protocol::codes::device_error_text(result)})
        }
        // the reason the aircraft stopped taking the sticks: 0 RC lost, 1 low-battery return home,
        // 2 low-battery landing, 3 near a no-fly zone, 4 the RC took authority
        "joystick_invalid_notify" => {
            let reason = d.get("reason").and_then(shared::protocol::as_i64).unwrap_or(0);
            let message = match reason {
                0 => "The remote controller's link was lost.",
                1 => "Low battery: the aircraft is returning home.",
                2 => "Low battery: the aircraft is landing.",
                3 => "The aircraft is near a no-fly zone.",
                4 => "The remote controller took the flight authority.",
                _ => "The aircraft no longer takes the virtual sticks.",
            };
            json!({"sn": r.gateway_sn, "result": reason, "message": message})
        }
        // remote debugging: `{bid, sn, result, output}`
        _ => json!({
            "bid": r.bid,
            "sn": r.gateway_sn,
            "result": d.get("result").cloned().unwrap_or(json!(0)),
            "output": d.get("output").cloned().unwrap_or(json!({})),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_docks_osd_goes_out_as_it_came_and_with_nulls_the_long_way() {
        let raw = br#"{"tid":"t","bid":"b","timestamp":1,"data":{"mode_code":1, "cover_state":0,"sub":{"a":[1,2]}}}"#;
        let (biz, audience, data) = osd_push(3, "DOCK\"1", raw).unwrap();
        assert_eq!((biz, audience), ("dock_osd", Audience::Web));
        assert_eq!(data, r#"{"sn":"DOCK\"1","host":{"mode_code":1, "cover_state":0,"sub":{"a":[1,2]}}}"#);
        let (biz, _, _) = osd_push(2, "RC1", raw).unwrap();
        assert_eq!(biz, "gateway_osd");

        let with_null = br#"{"data":{"mode_code":1,"gone":null,"list":[null,2]}}"#;
        let (_, _, data) = osd_push(3, "DOCK1", with_null).unwrap();
        assert_eq!(parse(&data), json!({"sn": "DOCK1", "host": {"mode_code": 1, "list": ["", 2]}}));

        assert!(osd_push(3, "DOCK1", br#"{"data":[1]}"#).is_none());
        assert!(osd_push(3, "DOCK1", b"not json").is_none());
    }

    #[test]
    fn an_aircrafts_payloads_are_collected_under_payload() {
        let raw = br#"{"data":{"height":10,"39-0-7":{"zoom":2}}}"#;
        let (biz, audience, data) = osd_push(0, "UAV1", raw).unwrap();
        assert_eq!((biz, audience), ("device_osd", Audience::All));
        assert_eq!(
            parse(&data),
            json!({"sn": "UAV1", "host": {"height": 10, "payload": [{"zoom": 2, "payload_index": "39-0-7"}]}})
        );
    }

    #[test]
    fn a_stale_refresh_never_undoes_a_newer_binding() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let entry = |ws: &str, at| Entry { workspace_id: ws.into(), domain: 3, at };
        let mut map = HashMap::new();
        Directory::learn(&mut map, "D".into(), entry("", t(10)));
        // the binding's event, then a refresh whose row was read before the binding was projected
        Directory::learn(&mut map, "D".into(), entry("w", t(20)));
        Directory::learn(&mut map, "D".into(), entry("", t(10)));
        assert_eq!(map["D"].workspace_id, "w");
        // a later unbinding does replace it
        Directory::learn(&mut map, "D".into(), entry("", t(30)));
        assert_eq!(map["D"].workspace_id, "");
    }

    #[test]
    fn payload_indexes_are_collected() {
        let host = json!({"latitude": 1, "39-0-7": {"gimbal_pitch": 2}, "52-0-0": {"zoom_factor": 3}, "1-2": {"x": 1}});
        let Value::Object(h) = host else { unreachable!() };
        let out = collect_payloads(h);
        let list = out["payload"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.iter().any(|p| p["payload_index"] == "39-0-7" && p["gimbal_pitch"] == 2));
        assert!(out.contains_key("1-2") && out.contains_key("latitude"));
    }
}
