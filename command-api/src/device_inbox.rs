//! The device inbox: device messages that change domain state or need an answer, read from the
//! `DEVICE_IN` stream (durable consumer, acked only after the commands committed and the reply was
//! handed to JetStream), and device liveness derived from everything a device sends.
//!
//! - `update_topo` (status): the gateway and its sub-devices come online, topology and version
//!   changes are recorded, sub-devices that left go offline; `status_reply` always.
//! - events: `hms` alerts are recorded; any event with `need_reply` gets `events_reply`.
//! - requests: `airport_bind_status`, `airport_organization_get`, `airport_organization_bind`,
//!   `config`, `storage_config_get` get `requests_reply` with real data; other methods are kept
//!   (they stay in DEVICE_IN) and answered with an "unsupported" result so the device does not wait.
//! - state from TELEMETRY: `firmware_version` changes; `state_reply` when asked.
//!
//! Nothing a device sends is fatal: unparseable payloads, unknown methods, fields and enum values
//! are logged and acknowledged (the raw message stays in its stream).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use serde_json::{json, Value};
use shared::domain::device::{DeviceCommand, HmsEntry, Model};
use shared::event_store::{execute, metadata};
use shared::protocol::{self, as_i64, truthy, Envelope, Topic, TopicKind, H_MQTT_TOPIC};
use shared::Shutdown;
use tokio::sync::Mutex;

use crate::AppState;

/// Device liveness: when each serial number was last heard from.
#[derive(Clone, Default)]
pub struct LastSeen(Arc<Mutex<HashMap<String, Instant>>>);

impl LastSeen {
    pub async fn touch(&self, sn: &str) {
        self.0.lock().await.insert(sn.to_string(), Instant::now());
    }
}

pub async fn run(s: AppState, shutdown: Shutdown) -> anyhow::Result<()> {
    let seen = LastSeen::default();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(consume_loop(s.clone(), seen.clone(), shutdown.clone(), Inbox::Device));
    tasks.spawn(consume_loop(s.clone(), seen.clone(), shutdown.clone(), Inbox::Telemetry));
    tasks.spawn(liveness(s, seen, shutdown));
    while let Some(r) = tasks.join_next().await {
        r.context("device inbox task panicked")??;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Inbox {
    Device,
    Telemetry,
}

async fn consume_loop(s: AppState, seen: LastSeen, shutdown: Shutdown, which: Inbox) -> anyhow::Result<()> {
    while !shutdown.is_cancelled() {
        if let Err(e) = consume(&s, &seen, &shutdown, which).await {
            tracing::warn!(error = ?e, "device inbox interrupted; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    Ok(())
}

async fn consume(s: &AppState, seen: &LastSeen, shutdown: &Shutdown, which: Inbox) -> anyhow::Result<()> {
    let (stream_name, durable, filter) = match which {
        Inbox::Device => (s.names.device_in_stream(), "device_inbox", s.names.device_in_filter(None)),
        // only state: osd is far too frequent to pass through a durable consumer here; liveness
        // from osd is taken from a plain subscription below
        Inbox::Telemetry => (s.names.telemetry_stream(), "device_state", s.names.telemetry_kind_filter("state")),
    };
    let stream = s.js.get_stream(&stream_name).await.with_context(|| format!("stream {stream_name}"))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &s.names.consumer(durable),
            consumer::pull::Config {
                durable_name: Some(s.names.consumer(durable)),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                filter_subject: filter,
                max_ack_pending: 1000,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    let mut osd = match which {
        Inbox::Telemetry => Some(s.js.client().subscribe(s.names.telemetry_kind_filter("osd")).await?),
        Inbox::Device => None,
    };
    // Messages of one device are handled in order, different devices at once: a fleet that
    // reconnects together (a broker restart) is not answered one device after the other.
    let mut lanes = Vec::with_capacity(LANES);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..LANES {
        let (tx, rx) = tokio::sync::mpsc::channel::<jetstream::Message>(LANE_QUEUE);
        lanes.push(tx);
        workers.spawn(lane(s.clone(), seen.clone(), rx));
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Let the lanes finish what they hold (each message is acked after its commands),
                // within a bound; whatever is left is redelivered to the next process.
                drop(lanes);
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while workers.join_next().await.is_some() {}
                })
                .await;
                return Ok(());
            }
            m = async { match osd.as_mut() { Some(sub) => sub.next().await, None => std::future::pending().await } } => {
                let topic = m.as_ref().and_then(|m| m.headers.as_ref()).and_then(|h| h.get(H_MQTT_TOPIC));
                if let Some(t) = topic.and_then(|t| Topic::parse(t.as_str())) {
                    seen.touch(&t.sn).await;
                }
            }
            m = messages.next() => {
                let Some(m) = m else { anyhow::bail!("device inbox consumer ended") };
                let m = m.map_err(|e| anyhow::anyhow!(e))?;
                let sn = m.subject.split('.').rev().nth(1).unwrap_or_default();
                let lane = &lanes[(hash(sn) % LANES as u64) as usize];
                lane.send(m).await.map_err(|_| anyhow::anyhow!("a device inbox lane stopped"))?;
            }
            Some(done) = workers.join_next() => {
                done?;
                anyhow::bail!("a device inbox lane stopped");
            }
        }
    }
}

/// Lanes of the device inbox, and how many messages may wait in each.
const LANES: usize = 16;
const LANE_QUEUE: usize = 64;

fn hash(sn: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sn.hash(&mut h);
    h.finish()
}

/// Handles one lane's messages in order; acks each once handled, or hands it back for later.
async fn lane(s: AppState, seen: LastSeen, mut rx: tokio::sync::mpsc::Receiver<jetstream::Message>) {
    while let Some(m) = rx.recv().await {
        let topic =
            m.headers.as_ref().and_then(|h| h.get(H_MQTT_TOPIC)).map(|v| v.as_str().to_string()).unwrap_or_default();
        let ack = match handle(&s, &seen, &topic, &m.payload).await {
            Ok(()) => m.ack().await,
            Err(e) => {
                // the database or JetStream is unavailable: try this message again soon
                tracing::warn!(topic, error = ?e, "device message not handled yet");
                m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
            }
        };
        if let Err(e) = ack {
            // JetStream redelivers it after the ack wait, as after a crash
            tracing::warn!(topic, error = %e, "device message not acknowledged");
        }
    }
}

/// Handles one device message. `Err` means "try again" (infrastructure); anything the device got
/// wrong is logged and answered, never an error.
#[tracing::instrument(level = "debug", skip_all, fields(topic))]
pub async fn handle(s: &AppState, seen: &LastSeen, topic: &str, payload: &[u8]) -> anyhow::Result<()> {
    let Some(t) = Topic::parse(topic) else {
        tracing::warn!(topic, "message on an unknown topic kept raw");
        return Ok(());
    };
    seen.touch(&t.sn).await;
    let Some(env) = Envelope::parse(payload) else {
        tracing::warn!(topic, bytes = payload.len(), "payload is not a JSON object; kept raw");
        return Ok(());
    };
    match t.kind {
        TopicKind::Status if env.method == "update_topo" => {
            update_topo(s, seen, &t.sn, &env).await?;
            let body = protocol::reply(&env.tid, &env.bid, Some("update_topo"), json!({"result": 0}));
            send(s, &t.sn, &protocol::status_reply_topic(&t.sn), &env.tid, body).await?;
        }
        TopicKind::Status => {
            tracing::warn!(method = env.method, "unknown status method kept raw");
            let body = protocol::reply(&env.tid, &env.bid, Some(&env.method), json!({"result": 0}));
            send(s, &t.sn, &protocol::status_reply_topic(&t.sn), &env.tid, body).await?;
        }
        TopicKind::Events => {
            if env.method == "hms" {
                hms(s, &t.sn, &env).await?;
            }
            if env.need_reply {
                let body = protocol::reply(&env.tid, &env.bid, Some(&env.method), json!({"result": 0}));
                send(s, &t.sn, &protocol::thing_topic(&t.sn, "events_reply"), &env.tid, body).await?;
            }
        }
        TopicKind::Requests => {
            let data = requests(s, &t.sn, &env).await?;
            let body = protocol::reply(&env.tid, &env.bid, Some(&env.method), data);
            send(s, &t.sn, &protocol::thing_topic(&t.sn, "requests_reply"), &env.tid, body).await?;
        }
        TopicKind::State => {
            if let Some(v) = env.data.get("firmware_version").and_then(Value::as_str) {
                let cmd = DeviceCommand::ReportFirmware { firmware_version: v.to_string() };
                execute(&s.devices, &t.sn, cmd, metadata("", "", "mqtt")).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            if env.need_reply {
                let body = protocol::reply(&env.tid, &env.bid, None, json!({"result": 0}));
                send(s, &t.sn, &protocol::thing_topic(&t.sn, "state_reply"), &env.tid, body).await?;
            }
        }
        // answers to commands are awaited by the HTTP request that sent the command
        TopicKind::ServicesReply | TopicKind::PropertySetReply => {}
        _ => tracing::debug!(topic, "not for the inbox"),
    }
    Ok(())
}

/// Publishes a down-message through DEVICE_OUT; the id makes a repeated answer to the same
/// message (after a redelivery) one message.
pub async fn send(s: &AppState, gateway_sn: &str, topic: &str, tid: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let kind = topic.rsplit('/').next().unwrap_or("services");
    let mut h = async_nats::HeaderMap::new();
    h.insert(H_MQTT_TOPIC, topic);
    if !tid.is_empty() {
        h.insert("Nats-Msg-Id", format!("{topic}/{tid}").as_str());
    }
    s.js.publish_with_headers(s.names.device_out_subject(gateway_sn, kind), h, body.into())
        .await?
        .await
        .context("DEVICE_OUT ack")?;
    Ok(())
}

fn model_of(v: &Value) -> Model {
    Model {
        domain: v.get("domain").and_then(as_i64).unwrap_or(-1),
        kind: v.get("type").and_then(as_i64).unwrap_or(-1),
        sub_type: v.get("sub_type").and_then(as_i64).unwrap_or(-1),
    }
}

async fn exec(s: &AppState, sn: &str, cmd: DeviceCommand) -> anyhow::Result<()> {
    match execute(&s.devices, sn, cmd, metadata("", "", "mqtt")).await {
        Ok(()) => Ok(()),
        Err(cqrs_es::AggregateError::UserError(e)) => {
            tracing::warn!(sn, error = %e, "device command refused");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

async fn update_topo(s: &AppState, seen: &LastSeen, gw: &str, env: &Envelope) -> anyhow::Result<()> {
    let d = &env.data;
    let thing_version = d.get("thing_version").and_then(Value::as_str).unwrap_or_default().to_string();
    exec(
        s,
        gw,
        DeviceCommand::ReportOnline { model: model_of(d), thing_version, parent_sn: None, control_source: None },
    )
    .await?;
    let subs: Vec<&Value> =
        d.get("sub_devices").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let mut sns = Vec::new();
    for sub in subs {
        let Some(sn) = sub.get("sn").and_then(Value::as_str).filter(|s| !s.is_empty()) else { continue };
        seen.touch(sn).await;
        let cmd = DeviceCommand::ReportOnline {
            model: model_of(sub),
            thing_version: sub.get("thing_version").and_then(Value::as_str).unwrap_or_default().to_string(),
            parent_sn: Some(gw.to_string()),
            control_source: sub.get("index").and_then(Value::as_str).map(str::to_owned),
        };
        exec(s, sn, cmd).await?;
        sns.push(sn.to_string());
    }
    exec(s, gw, DeviceCommand::ReportTopology { sub_devices: sns.clone() }).await?;
    // sub-devices that left the gateway's topology are offline
    let gone: Vec<String> = sqlx::query_scalar(
        "SELECT device_sn FROM rm_devices WHERE parent_sn = $1 AND online AND NOT (device_sn = ANY($2))",
    )
    .bind(gw)
    .bind(&sns)
    .fetch_all(&s.pool)
    .await?;
    for sn in gone {
        exec(s, &sn, DeviceCommand::ReportOffline { reason: "left the gateway's topology".into() }).await?;
    }
    // a dock's aircraft belongs to the dock's workspace
    let gw_ws: Option<(String, String, i32)> =
        sqlx::query_as("SELECT workspace_id, user_id, domain FROM rm_devices WHERE device_sn = $1 AND bound")
            .bind(gw)
            .fetch_optional(&s.pool)
            .await?;
    if let Some((workspace_id, user_id, 3)) = gw_ws {
        for sn in &sns {
            let cmd = DeviceCommand::Bind {
                workspace_id: workspace_id.clone(),
                user_id: user_id.clone(),
                nickname: None,
                model: None,
            };
            exec(s, sn, cmd).await?;
        }
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

async fn hms(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
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

/// The `data` of a `requests_reply`.
async fn requests(s: &AppState, gw: &str, env: &Envelope) -> anyhow::Result<Value> {
    let d = &env.data;
    Ok(match env.method.as_str() {
        "airport_bind_status" => {
            let mut out = Vec::new();
            for dev in d.get("devices").and_then(Value::as_array).cloned().unwrap_or_default() {
                let Some(sn) = dev.get("sn").and_then(Value::as_str) else { continue };
                let row: Option<(String, String, bool, Option<String>)> = sqlx::query_as(
                    "SELECT d.workspace_id, d.nickname, d.bound, w.workspace_name FROM rm_devices d \
                     LEFT JOIN rm_workspaces w ON w.workspace_id = d.workspace_id WHERE d.device_sn = $1",
                )
                .bind(sn)
                .fetch_optional(&s.pool)
                .await?;
                out.push(match row {
                    Some((ws, nickname, true, name)) => json!({"sn": sn, "is_device_bind_organization": true,
                        "organization_id": ws, "organization_name": name.unwrap_or_default(), "device_callsign": nickname}),
                    _ => json!({"sn": sn, "is_device_bind_organization": false}),
                });
            }
            json!({"result": 0, "output": {"bind_status": out}})
        }
        "airport_organization_get" => {
            let code = d.get("device_binding_code").and_then(Value::as_str).unwrap_or_default();
            if code.is_empty() {
                return Ok(json!({"result": 200001, "output": {}}));
            }
            let name: Option<String> =
                sqlx::query_scalar("SELECT workspace_name FROM rm_workspaces WHERE bind_code = $1")
                    .bind(code)
                    .fetch_optional(&s.pool)
                    .await?;
            match name {
                Some(n) => json!({"result": 0, "output": {"organization_name": n}}),
                None => json!({"result": 210230, "output": {}}),
            }
        }
        "airport_organization_bind" => {
            let mut errs = Vec::new();
            for b in d.get("bind_devices").and_then(Value::as_array).cloned().unwrap_or_default() {
                let sn = b.get("sn").and_then(Value::as_str).unwrap_or_default().to_string();
                let code = b.get("device_binding_code").and_then(Value::as_str).unwrap_or_default();
                let org = b.get("organization_id").and_then(Value::as_str).unwrap_or_default();
                let ws: Option<String> =
                    sqlx::query_scalar("SELECT workspace_id FROM rm_workspaces WHERE bind_code = $1 OR workspace_id = $2 ORDER BY (bind_code = $1) DESC LIMIT 1")
                        .bind(code)
                        .bind(org)
                        .fetch_optional(&s.pool)
                        .await?;
                let model = b.get("device_model_key").and_then(Value::as_str).and_then(parse_model_key);
                let ok = match (ws, sn.is_empty()) {
                    (Some(workspace_id), false) => {
                        let nickname = b
                            .get("device_callsign")
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                            .map(str::to_owned);
                        let cmd = DeviceCommand::Bind { workspace_id, user_id: String::new(), nickname, model };
                        execute(&s.devices, &sn, cmd, metadata("", "", "mqtt")).await.is_ok()
                    }
                    _ => false,
                };
                errs.push(json!({"sn": sn, "err_code": if ok { 0 } else { 210231 }}));
            }
            json!({"result": 0, "output": {"err_infos": errs}})
        }
        "config" => {
            if d.get("config_scope").and_then(Value::as_str).is_some_and(|sc| sc != "product") {
                return Ok(json!({"result": 200001, "output": "illegal argument"}));
            }
            let c = &s.config;
            json!({"ntp_server_host": c.ntp_server_host, "app_id": c.app_id, "app_key": c.app_key, "app_license": c.app_license})
        }
        "storage_config_get" => crate::storage::for_device(s, gw).await?,
        other => {
            tracing::warn!(gateway = gw, method = other, "request method not served; answered as unsupported");
            json!({"result": 210003, "output": {}})
        }
    })
}

fn parse_model_key(k: &str) -> Option<Model> {
    let mut it = k.split('-').map(|p| p.trim().parse::<i64>());
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(domain)), Some(Ok(kind)), Some(Ok(sub_type))) => Some(Model { domain, kind, sub_type }),
        _ => None,
    }
}

#[derive(sqlx::FromRow)]
struct KnownDevice {
    device_sn: String,
    online: bool,
    domain: i32,
    r#type: i32,
    sub_type: i32,
    thing_version: String,
    parent_sn: String,
    control_source: String,
}

/// Marks devices offline after `device_offline_secs` of silence, and back online when a known
/// device speaks again without announcing itself.
async fn liveness(s: AppState, seen: LastSeen, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(s.config.device_offline_secs);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let rows: Vec<KnownDevice> = match sqlx::query_as(
            "SELECT device_sn, online, domain, type, sub_type, thing_version, parent_sn, control_source FROM rm_devices \
             WHERE domain >= 0",
        )
        .fetch_all(&s.pool)
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "liveness check skipped");
                continue;
            }
        };
        let last = seen.0.lock().await.clone();
        for d in rows {
            let (sn, online) = (d.device_sn, d.online);
            let heard = last.get(&sn).copied();
            // after a restart every device gets a full timeout before it is called silent
            let silent = heard.map_or(started.elapsed() > timeout, |t| t.elapsed() > timeout);
            let cmd = if online && silent {
                DeviceCommand::ReportOffline { reason: format!("silent for {} s", timeout.as_secs()) }
            } else if !online && !silent && heard.is_some() {
                let model = Model { domain: d.domain.into(), kind: d.r#type.into(), sub_type: d.sub_type.into() };
                DeviceCommand::ReportOnline {
                    model,
                    thing_version: d.thing_version,
                    parent_sn: Some(d.parent_sn).filter(|p| !p.is_empty()),
                    control_source: Some(d.control_source).filter(|c| !c.is_empty()),
                }
            } else {
                continue;
            };
            if let Err(e) = exec(&s, &sn, cmd).await {
                tracing::warn!(sn, error = %e, "liveness command failed");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hms_keys_follow_dji() {
        assert_eq!(hms_key(&json!({"code": "0x1B030019"}), true), "dock_tip_0x1b030019");
        assert_eq!(hms_key(&json!({"code": "0x16100083", "in_the_sky": 1}), false), "fpv_tip_0x16100083_in_the_sky");
        assert_eq!(hms_key(&json!({"code": 369098883}), false), "fpv_tip_0x16000083");
    }

    #[test]
    fn model_keys() {
        assert_eq!(parse_model_key("3-2-0"), Some(Model { domain: 3, kind: 2, sub_type: 0 }));
        assert_eq!(parse_model_key("M350"), None);
    }
}
