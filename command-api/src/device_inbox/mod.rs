//! The device inbox: device messages that change domain state or need an answer, read from the
//! `DEVICE_IN` stream (durable consumer, acked only after the commands committed and the reply was
//! handed to JetStream), and device liveness derived from everything a device sends.
//!
//! One `(kind, method)` dispatch here ([`handle`]); each part parses its own wire types and takes
//! its decisions on the aggregates:
//! - [`topology`]: `update_topo` (status); `status_reply` always.
//! - [`events`]: HMS alerts and operation progress; any event with `need_reply` gets `events_reply`.
//! - [`requests`]: binding, `config`, `storage_config_get`; `requests_reply` always.
//! - [`replies`]: `services_reply` and `property/set_reply` to commands Hangar sent.
//! - [`state`] (from TELEMETRY): firmware version and control source; `state_reply` when asked.
//! - [`liveness`]: online and offline from silence, in one process at a time.
//!
//! Nothing a device sends is fatal: unparseable payloads, unknown methods, fields and enum values
//! are logged and acknowledged (the raw message stays in its stream).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod events;
mod liveness;
mod replies;
mod requests;
mod state;
mod topology;

pub use events::hms_key;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use serde_json::json;
use shared::domain::device::DeviceCommand;
use shared::event_store::{execute, metadata};
use shared::protocol::{self, Envelope, Topic, TopicKind, H_MQTT_TOPIC, H_RECEIVED_AT};
use shared::Shutdown;
use tokio::sync::Mutex;
use tracing::Instrument as _;

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
    tasks.spawn(liveness::run(s, seen, shutdown));
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
        let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let topic = header(H_MQTT_TOPIC).unwrap_or_default();
        let received_at_ms = header(H_RECEIVED_AT)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map_or_else(|| chrono::Utc::now().timestamp_millis(), |t| t.timestamp_millis());
        let span = shared::span!("device_inbox.handle", otel.kind = "consumer", mqtt.topic = topic.as_str());
        shared::telemetry::follow(&span, &shared::telemetry::NatsHeadersRef(m.headers.as_ref()));
        let ack = match handle(&s, &seen, &topic, &m.payload, received_at_ms).instrument(span).await {
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
pub async fn handle(
    s: &AppState,
    seen: &LastSeen,
    topic: &str,
    payload: &[u8],
    received_at_ms: i64,
) -> anyhow::Result<()> {
    let Some(t) = Topic::parse(topic) else {
        tracing::warn!(topic, "message on an unknown topic kept raw");
        return Ok(());
    };
    seen.touch(&t.sn).await;
    let Some(env) = Envelope::parse(payload) else {
        tracing::warn!(topic, bytes = payload.len(), "payload is not a JSON object; kept raw");
        return Ok(());
    };
    let ok = json!({"result": 0});
    match t.kind {
        TopicKind::Status => {
            if env.method == "update_topo" {
                topology::update_topo(s, seen, &t.sn, &env).await?;
            } else {
                tracing::warn!(method = env.method, "unknown status method kept raw");
            }
            let method = if env.method.is_empty() { "update_topo" } else { env.method.as_str() };
            let body = protocol::reply(&env.tid, &env.bid, Some(method), ok);
            send(s, &t.sn, &protocol::status_reply_topic(&t.sn), &env.tid, body).await?;
        }
        TopicKind::Events => {
            events::handle(s, &t.sn, &env).await?;
            if env.need_reply {
                let body = protocol::reply(&env.tid, &env.bid, Some(&env.method), ok);
                send(s, &t.sn, &protocol::thing_topic(&t.sn, "events_reply"), &env.tid, body).await?;
            }
        }
        TopicKind::Requests => {
            let data = requests::answer(s, &t.sn, &env).await?;
            let body = protocol::reply(&env.tid, &env.bid, Some(&env.method), data);
            send(s, &t.sn, &protocol::thing_topic(&t.sn, "requests_reply"), &env.tid, body).await?;
        }
        TopicKind::State => {
            state::state(s, &t.sn, &env).await?;
            if env.need_reply {
                let body = protocol::reply(&env.tid, &env.bid, None, ok);
                send(s, &t.sn, &protocol::thing_topic(&t.sn, "state_reply"), &env.tid, body).await?;
            }
        }
        TopicKind::ServicesReply | TopicKind::PropertySetReply => {
            replies::reply(s, &t.sn, &env, received_at_ms).await?;
        }
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
    let span = shared::span!("reply.publish", otel.kind = "producer", mqtt.topic = topic, tid);
    shared::telemetry::inject(&span, &mut shared::telemetry::NatsHeaders(&mut h));
    async {
        s.js.publish_with_headers(s.names.device_out_subject(gateway_sn, kind), h, body.into())
            .await?
            .await
            .context("DEVICE_OUT ack")
    }
    .instrument(span)
    .await?;
    Ok(())
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
