//! MQTT → JetStream: every message a device publishes is kept as it arrived.
//!
//! Two tasks share the work so that the rumqttc event loop is never blocked by JetStream: the
//! event-loop task only reads the connection and hands each publish to a bounded channel; the
//! worker publishes to JetStream (pipelined, in arrival order) and acks the MQTT packet only after
//! JetStream acked it, in the order the packets arrived, as MQTT 3.1.1 (§4.6) asks. When
//! JetStream is slow the channel fills, the event loop stops reading, and the broker holds the
//! rest in the bridge's persistent session: back-pressure, never a drop. (If JetStream stays away
//! longer than the keep-alive allows, the broker closes the connection; the bridge reconnects and
//! the broker redelivers what was not acked.)
//!
//! An MQTT ack belongs to the connection the publish came on. After a reconnect the broker
//! redelivers every unacked publish, so acks still owed for the old connection are skipped (a
//! connection generation, changed under the same lock the acker holds) and the redelivered copy
//! is deduplicated by JetStream through `Nats-Msg-Id` = `<topic>/<tid>`. A message without a
//! `tid` (odd payloads, devices that leave it out) is identified by its content instead,
//! `<topic>/sha256:<digest>`: the same bytes on the same topic within the duplicate window are
//! one message.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::FuturesOrdered;
use futures::StreamExt as _;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use shared::metrics;
use shared::nats::Names;
use shared::{Config, Shutdown};
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::mqtt::Backoff;
use crate::topic::{self, Kind};
use crate::{H_ANOMALY, H_CHUNK, H_MQTT_TOPIC, H_RECEIVED_AT};

/// Publishes handed from the event loop to the worker and not yet taken: more than a broker can
/// have unacknowledged with one client (65,535 packet ids), so the event loop never waits for the
/// worker. It must not: while it waits it reads nothing, not even the broker's PINGRESP, and the
/// connection is dropped for a missed keep-alive (measured: at 10,000 docks the bridge fell
/// behind, lost its connection every few seconds and had every unacked message redelivered).
/// What holds the broker back when JetStream is slow is the acks it does not get: it sends at most
/// `max_inflight_messages` unacknowledged publishes and queues the rest in the bridge's session.
pub(crate) const CHANNEL: usize = u16::MAX as usize + 1;
/// JetStream publishes awaiting their ack at once: more than the broker keeps in flight to one
/// client (`max_inflight_messages` 1,000 in `mosquitto.conf`), so that JetStream's ack latency
/// never caps the rate (256 at 20 ms per ack was 12,800 msg/s).
const WINDOW: usize = 2048;
/// How long a shutdown waits for JetStream acks of messages already in hand.
const DRAIN: Duration = Duration::from_secs(10);
/// Room left for headers under the server's `max_payload` when deciding to split a message.
const HEADER_ROOM: usize = 8 * 1024;

/// One publish from the broker, with the connection it came on.
pub(crate) struct Received {
    publish: Publish,
    generation: u64,
    received_at: DateTime<Utc>,
}

/// Why a message did not take the normal route (recorded in the `Hangar-Anomaly` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anomaly {
    /// Not JSON at all (or not UTF-8).
    InvalidJson,
    /// JSON, but not an object: DJI's envelope is always one.
    NotAnObject,
    /// Larger than one NATS message can carry: split into chunks.
    TooLarge,
    /// A topic the bridge does not know (extra subscription, new firmware).
    UnknownTopic,
}

impl Anomaly {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Anomaly::InvalidJson => "invalid_json",
            Anomaly::NotAnObject => "not_an_object",
            Anomaly::TooLarge => "too_large",
            Anomaly::UnknownTopic => "unknown_topic",
        }
    }
}

/// One JetStream message to publish.
#[derive(Debug, Clone)]
pub(crate) struct JsMessage {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// What the bridge makes of one MQTT message.
#[derive(Debug)]
pub(crate) struct Translated {
    pub kind: Kind,
    pub tid: Option<String>,
    pub method: Option<String>,
    pub anomaly: Option<Anomaly>,
    /// One message, or the chunks of a message too large for one.
    pub messages: Vec<JsMessage>,
}

/// Only the envelope fields the bridge needs; serde skips the rest without building it.
#[derive(Deserialize)]
struct Envelope {
    tid: Option<serde_json::Value>,
    method: Option<serde_json::Value>,
}

/// NATS header values cannot hold CR or LF (a device could put them in a `tid`, MQTT allows them
/// in topics); control characters are percent-encoded so that a header can never be split.
fn header_value(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Decides subject, headers and body for one MQTT message. Never fails and never drops: what
/// cannot be understood is kept raw on DEVICE_IN with an anomaly header.
pub(crate) fn translate(
    names: &Names,
    topic: &str,
    payload: &Bytes,
    received_at: DateTime<Utc>,
    max_body: usize,
) -> Translated {
    let device = topic::parse(topic);
    // A derived struct also accepts a JSON array (fields by position): look at the first byte.
    let is_object = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let (tid, method, mut anomaly) = match serde_json::from_slice::<Envelope>(payload) {
        Ok(_) if !is_object => (None, None, Some(Anomaly::NotAnObject)),
        Ok(env) => {
            let text = |v: Option<serde_json::Value>| match v {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            };
            (text(env.tid), text(env.method), None)
        }
        Err(e) if e.classify() == serde_json::error::Category::Data => (None, None, Some(Anomaly::NotAnObject)),
        Err(_) => (None, None, Some(Anomaly::InvalidJson)),
    };
    if device.kind == Kind::Unknown {
        anomaly = Some(Anomaly::UnknownTopic);
    }
    let max_body = max_body.max(1);
    if payload.len() > max_body {
        anomaly = Some(Anomaly::TooLarge);
    }

    // Telemetry consumers expect well-formed JSON; anything odd goes to DEVICE_IN, which is kept
    // a week for whoever needs to look at it.
    let subject = if device.kind.is_telemetry() && anomaly.is_none() {
        names.telemetry_subject(device.sn, device.kind.as_str())
    } else {
        names.device_in_subject(device.sn, device.kind.as_str())
    };

    let mut base = HeaderMap::new();
    base.insert(H_MQTT_TOPIC, header_value(topic));
    base.insert(H_RECEIVED_AT, received_at.to_rfc3339_opts(SecondsFormat::Micros, true));
    if let Some(a) = anomaly {
        base.insert(H_ANOMALY, a.as_str());
    }
    let msg_id = Some(match tid.as_deref() {
        Some(tid) => header_value(&format!("{topic}/{tid}")),
        None => {
            let digest = Sha256::digest(payload);
            header_value(&format!("{topic}/sha256:{}", hex::encode(&digest[..16])))
        }
    });

    let messages = if payload.len() <= max_body {
        let mut headers = base;
        if let Some(id) = &msg_id {
            headers.insert(NATS_MESSAGE_ID, id.as_str());
        }
        vec![JsMessage { subject, headers, payload: payload.clone() }]
    } else {
        let count = payload.len().div_ceil(max_body);
        (0..count)
            .map(|i| {
                let mut headers = base.clone();
                headers.insert(H_CHUNK, format!("{}/{count}", i + 1));
                if let Some(id) = &msg_id {
                    headers.insert(NATS_MESSAGE_ID, format!("{id}/{}", i + 1));
                }
                let range = i * max_body..((i + 1) * max_body).min(payload.len());
                JsMessage { subject: subject.clone(), headers, payload: payload.slice(range) }
            })
            .collect()
    };
    Translated { kind: device.kind, tid, method, anomaly, messages }
}

/// Acks MQTT publishes on behalf of the worker, but only on the connection they came on.
#[derive(Clone)]
pub(crate) struct Acker {
    client: AsyncClient,
    generation: Arc<Mutex<u64>>,
}

impl Acker {
    pub(crate) fn new(client: AsyncClient, generation: Arc<Mutex<u64>>) -> Self {
        Self { client, generation }
    }

    fn ack(&self, r: &Received) {
        let generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        if *generation != r.generation {
            // The connection is gone; the broker redelivers this publish on the new one.
            return;
        }
        // The request channel holds more than the 65,535 publishes a broker can have unacked, so
        // it is never full; `try_ack` keeps the lock free of awaits.
        if let Err(e) = self.client.try_ack(&r.publish) {
            tracing::warn!(topic = %r.publish.topic, error = %e, "could not queue the MQTT ack; the broker will redeliver");
        }
    }
}

/// The inbound half: its client, event loop and the state both tasks share.
pub(crate) struct Inbound {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    pub generation: Arc<Mutex<u64>>,
}

impl Inbound {
    /// The connection of one session slot, under `client_id` (see [`crate::slots`]).
    pub(crate) fn new(config: &Config, url: &crate::mqtt::BrokerUrl, client_id: &str) -> Self {
        let credentials = (!config.mqtt_username.is_empty())
            .then_some((config.mqtt_username.as_str(), config.mqtt_password.as_str()));
        let mut options =
            crate::mqtt::options(url, client_id, Duration::from_secs(config.mqtt_keep_alive_secs), false, credentials);
        options.set_manual_acks(true);
        let (client, eventloop) = crate::mqtt::client(options, usize::from(u16::MAX) + CHANNEL);
        Self { client, eventloop, generation: Arc::new(Mutex::new(0)) }
    }
}

/// Reads the broker connection, re-subscribing on every ConnAck and reconnecting with backoff
/// until shutdown; then lets the worker finish the messages in hand and disconnects cleanly.
#[tracing::instrument(name = "bridge_inbound", skip_all, fields(client_id = %eventloop.mqtt_options.client_id()))]
pub(crate) async fn mqtt_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    generation: Arc<Mutex<u64>>,
    tx: mpsc::Sender<Received>,
    filters: Vec<String>,
    subscribed: watch::Sender<bool>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let connected = metrics::gauge("hangar_bridge_connected", &[("link", "inbound")]);
    let mut tx = Some(tx);
    let mut backoff = Backoff::default();
    let mut connections = 0u64;
    let mut deadline = None;
    loop {
        let event = match deadline {
            None => tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Publishes not yet handed over stay unacked: the broker redelivers them.
                    tx = None;
                    deadline = Some(tokio::time::Instant::now() + DRAIN);
                    continue;
                }
                event = eventloop.poll() => event,
            },
            Some(d) => match tokio::time::timeout_at(d, eventloop.poll()).await {
                Ok(event) => event,
                Err(_) => {
                    tracing::warn!("mqtt-bridge: inbound drain timed out");
                    break;
                }
            },
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connections += 1;
                connected.store(1, Ordering::Relaxed);
                backoff.reset();
                if connections > 1 && !ack.session_present {
                    tracing::warn!("the broker lost mqtt-bridge's session: messages sent while it was away are gone");
                }
                tracing::info!(session_present = ack.session_present, "mqtt-bridge connected to the broker");
                if deadline.is_none() {
                    // Subscriptions survive in a persistent session, but not a broker restart without
                    // persistence: subscribing again is harmless and always right.
                    let subs = filters.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    client.try_subscribe_many(subs)?;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (filter, code) in filters.iter().zip(&ack.return_codes) {
                    if *code == SubscribeReasonCode::Failure {
                        tracing::error!(%filter, "the broker refused a subscription of mqtt-bridge");
                    }
                }
                subscribed.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some(sender) = &tx else { continue };
                let received = Received {
                    publish,
                    generation: *generation.lock().unwrap_or_else(|e| e.into_inner()),
                    received_at: Utc::now(),
                };
                tokio::select! {
                    sent = sender.send(received) => {
                        if sent.is_err() {
                            anyhow::bail!("mqtt-bridge inbound worker stopped");
                        }
                    }
                    _ = shutdown.cancelled() => {
                        tx = None;
                        deadline = Some(tokio::time::Instant::now() + DRAIN);
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                connected.store(0, Ordering::Relaxed);
                subscribed.send_replace(false);
                {
                    // Acks still queued for the lost connection must not reach the next one: bump
                    // the generation and purge the request queue under the acker's lock.
                    let mut g = generation.lock().unwrap_or_else(|e| e.into_inner());
                    *g += 1;
                    eventloop.clean();
                }
                if deadline.is_some() {
                    break;
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "mqtt-bridge lost the broker");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    connected.store(0, Ordering::Relaxed);
    subscribed.send_replace(false);
    Ok(())
}

type Pending = Pin<Box<dyn Future<Output = (Item, Result<(), async_nats::Error>)> + Send>>;

/// A received publish and what it became.
struct Item {
    received: Received,
    translated: Translated,
    /// The message's trace (while traces are exported): it ends once the MQTT ack is queued.
    _span: tracing::Span,
}

/// Publishes to JetStream in arrival order, keeps up to `WINDOW` acks outstanding, and acks MQTT
/// in arrival order once JetStream has the message.
#[tracing::instrument(name = "bridge_inbound_worker", skip_all, fields(prefix = %config.nats_prefix))]
pub(crate) async fn worker(
    js: jetstream::Context,
    names: Names,
    config: Config,
    mut rx: mpsc::Receiver<Received>,
    acker: Acker,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let errors = metrics::counter("hangar_bridge_jetstream_errors_total", &[]);
    let mut forwarded: HashMap<Kind, Arc<AtomicU64>> = HashMap::new();
    let mut inflight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut limit = BodyLimit::default();
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            biased;
            Some((item, result)) = inflight.next(), if !inflight.is_empty() => {
                let delivered = match result {
                    Ok(()) => true,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(topic = %item.received.publish.topic, error = %e, "JetStream did not take a device message; retrying");
                        retry(&js, &names, &config, &item, &shutdown).await
                    }
                };
                if delivered {
                    acker.ack(&item.received);
                    let kind = item.translated.kind;
                    forwarded
                        .entry(kind)
                        .or_insert_with(|| metrics::counter("hangar_bridge_inbound_total", &[("kind", kind.as_str())]))
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            received = rx.recv(), if open && inflight.len() < WINDOW => match received {
                Some(received) => inflight.push_back(send(&js, &names, received, limit.get(&js)).await),
                None => open = false,
            },
        }
    }
    // Everything in hand is settled: let the event loop flush the acks and say goodbye.
    let _ = acker.client.try_disconnect();
    Ok(())
}

/// The largest body one NATS message may carry on this server, leaving room for headers.
fn max_body(js: &jetstream::Context) -> usize {
    let server = js.client().server_info().max_payload;
    // Before the first connection the server has not said; NATS's default is 1 MiB.
    let max_payload = if server == 0 { 1024 * 1024 } else { server };
    max_payload.saturating_sub(HEADER_ROOM).max(1024)
}

/// [`max_body`], looked up again once a second: the server's info is copied whole on every look-up,
/// and it changes only with a reconnection to another server.
#[derive(Default)]
struct BodyLimit {
    value: usize,
    at: Option<std::time::Instant>,
}

impl BodyLimit {
    fn get(&mut self, js: &jetstream::Context) -> usize {
        if self.at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            self.value = max_body(js);
            self.at = Some(std::time::Instant::now());
        }
        self.value
    }
}

/// Starts the JetStream publish of one message, so that JetStream order is arrival order, and
/// returns the future of its acks.
async fn send(js: &jetstream::Context, names: &Names, received: Received, max_body: usize) -> Pending {
    let mut translated =
        translate(names, &received.publish.topic, &received.publish.payload, received.received_at, max_body);
    log_oddities(&received.publish, &translated);
    let (span, publish_span) = trace(&received.publish, &mut translated);
    let mut acks = Vec::with_capacity(translated.messages.len());
    let mut failed = None;
    for m in &translated.messages {
        match js.publish_with_headers(m.subject.clone(), m.headers.clone(), m.payload.clone()).await {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let item = Item { received, translated, _span: span };
    Box::pin(
        async move {
            if let Some(e) = failed {
                return (item, Err(e.into()));
            }
            for ack in acks {
                if let Err(e) = ack.await {
                    return (item, Err(e.into()));
                }
            }
            (item, Ok(()))
        }
        .instrument(publish_span),
    )
}

/// While traces are exported, a device message starts a trace (MQTT carries no trace context):
/// `mqtt.receive` until its MQTT ack, and its child `jetstream.publish` until JetStream's ack,
/// whose context the messages carry on to whoever reads them. OSD, many messages a second per
/// device and read by nobody but WebSocket clients, is not traced.
fn trace(publish: &Publish, translated: &mut Translated) -> (tracing::Span, tracing::Span) {
    if !shared::telemetry::enabled() || translated.kind == Kind::Osd {
        return (tracing::Span::none(), tracing::Span::none());
    }
    let receive = shared::span!(
        "mqtt.receive",
        otel.kind = "consumer",
        mqtt.topic = publish.topic.as_str(),
        kind = translated.kind.as_str(),
        method = translated.method.as_deref(),
        tid = translated.tid.as_deref(),
    );
    let publish = receive.in_scope(|| {
        shared::span!(
            "jetstream.publish",
            otel.kind = "producer",
            messaging.destination.name = translated.messages.first().map(|m| m.subject.as_str()),
        )
    });
    for m in &mut translated.messages {
        shared::telemetry::inject(&publish, &mut shared::telemetry::NatsHeaders(&mut m.headers));
    }
    (receive, publish)
}

/// Publishes one message again until JetStream has it, re-creating the streams in case they were
/// deleted. Gives up only at shutdown: the publish then stays unacked and the broker redelivers
/// it to the next bridge.
async fn retry(js: &jetstream::Context, names: &Names, config: &Config, item: &Item, shutdown: &Shutdown) -> bool {
    let errors = metrics::counter("hangar_bridge_jetstream_errors_total", &[]);
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
        if let Err(e) = shared::nats::ensure_streams(js, names, config).await {
            tracing::debug!(error = ?e, "streams not reachable yet");
        }
        match publish_all(js, &item.translated.messages).await {
            Ok(()) => return true,
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %item.received.publish.topic, error = %e, "JetStream still does not take a device message; retrying");
            }
        }
    }
}

async fn publish_all(js: &jetstream::Context, messages: &[JsMessage]) -> Result<(), async_nats::Error> {
    for m in messages {
        js.publish_with_headers(m.subject.clone(), m.headers.clone(), m.payload.clone()).await?.await?;
    }
    Ok(())
}

/// Odd messages are kept, but someone should know: new firmware shows up here first.
fn log_oddities(publish: &Publish, t: &Translated) {
    if let Some(anomaly) = t.anomaly {
        tracing::warn!(
            topic = %publish.topic,
            bytes = publish.payload.len(),
            anomaly = anomaly.as_str(),
            chunks = t.messages.len(),
            "unusual device message kept raw in DEVICE_IN"
        );
    } else if let Some(method) = t.method.as_deref().filter(|m| !t.kind.knows_method(m)) {
        tracing::warn!(topic = %publish.topic, method, tid = ?t.tid, "device method unknown to Hangar; kept raw");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z").unwrap().with_timezone(&Utc)
    }

    fn header(m: &JsMessage, name: &str) -> Option<String> {
        match name {
            "Nats-Msg-Id" => m.headers.get(NATS_MESSAGE_ID),
            _ => m.headers.get(name),
        }
        .map(|v| v.as_str().to_string())
    }

    #[test]
    fn osd_goes_to_telemetry_with_headers_and_dedup_id() {
        let names = Names::new("t1");
        let body = Bytes::from_static(br#"{"tid":"a-1","bid":"b","timestamp":1,"data":{"mode_code":0}}"#);
        let t = translate(&names, "thing/product/DOCK1/osd", &body, at(), 1 << 20);
        assert_eq!((t.kind, t.anomaly, t.tid.as_deref()), (Kind::Osd, None, Some("a-1")));
        let [m] = t.messages.as_slice() else { panic!("one message") };
        assert_eq!(m.subject, "t1.tm.DOCK1.osd");
        assert_eq!(m.payload, body);
        assert_eq!(header(m, H_MQTT_TOPIC).as_deref(), Some("thing/product/DOCK1/osd"));
        assert_eq!(header(m, H_RECEIVED_AT).as_deref(), Some("2026-11-26T10:00:00.123456Z"));
        assert_eq!(header(m, "Nats-Msg-Id").as_deref(), Some("thing/product/DOCK1/osd/a-1"));
        assert_eq!(header(m, H_ANOMALY), None);
    }

    #[test]
    fn events_and_replies_go_to_device_in() {
        let names = Names::new("");
        let body = Bytes::from_static(br#"{"tid":"x","method":"hms","data":{}}"#);
        let t = translate(&names, "thing/product/DOCK1/events", &body, at(), 1 << 20);
        assert_eq!(t.messages[0].subject, "dev.in.DOCK1.events");
        assert_eq!(t.method.as_deref(), Some("hms"));
        let t = translate(&names, "thing/product/DOCK1/property/set_reply", &body, at(), 1 << 20);
        assert_eq!(t.messages[0].subject, "dev.in.DOCK1.property_set_reply");
        let t = translate(&names, "sys/product/DOCK1/status", &body, at(), 1 << 20);
        assert_eq!(t.messages[0].subject, "dev.in.DOCK1.status");
    }

    #[test]
    fn odd_payloads_are_kept_raw_in_device_in() {
        let names = Names::new("");
        for (body, anomaly) in [
            (&b"not json{"[..], Anomaly::InvalidJson),
            (&[0xff, 0xfe, 0x00][..], Anomaly::InvalidJson),
            (&b""[..], Anomaly::InvalidJson),
            (&b"[1,2]"[..], Anomaly::NotAnObject),
            (&b"\"tid\""[..], Anomaly::NotAnObject),
        ] {
            let body = Bytes::copy_from_slice(body);
            let t = translate(&names, "thing/product/D/osd", &body, at(), 1 << 20);
            assert_eq!(t.anomaly, Some(anomaly), "{body:?}");
            assert_eq!(t.messages[0].subject, "dev.in.D.osd");
            assert_eq!(t.messages[0].payload, body);
            assert_eq!(header(&t.messages[0], H_ANOMALY).as_deref(), Some(anomaly.as_str()));
            // no tid: identified by topic and content, so a redelivered copy is dropped by JetStream
            let id = header(&t.messages[0], "Nats-Msg-Id").expect("a dedup id");
            assert!(id.starts_with("thing/product/D/osd/sha256:"), "{id}");
            let again = translate(&names, "thing/product/D/osd", &body, at(), 1 << 20);
            assert_eq!(header(&again.messages[0], "Nats-Msg-Id").as_deref(), Some(id.as_str()));
            let elsewhere = translate(&names, "thing/product/E/osd", &body, at(), 1 << 20);
            assert_ne!(header(&elsewhere.messages[0], "Nats-Msg-Id").as_deref(), Some(id.as_str()));
        }
    }

    #[test]
    fn tid_must_be_a_string_to_deduplicate_by_it() {
        let names = Names::new("");
        let body = Bytes::from_static(br#"{"tid":42,"data":{}}"#);
        let t = translate(&names, "thing/product/D/state", &body, at(), 1 << 20);
        assert_eq!((t.anomaly, t.tid), (None, None));
        assert_eq!(t.messages[0].subject, "tm.D.state");
        let id = header(&t.messages[0], "Nats-Msg-Id").expect("a dedup id");
        assert!(id.starts_with("thing/product/D/state/sha256:"), "by content, not by the number: {id}");
    }

    #[test]
    fn unknown_topics_are_kept() {
        let names = Names::new("");
        let body = Bytes::from_static(br#"{"tid":"t"}"#);
        let t = translate(&names, "thing/product/D/drc/up", &body, at(), 1 << 20);
        assert_eq!(t.anomaly, Some(Anomaly::UnknownTopic));
        assert_eq!(t.messages[0].subject, "dev.in.D.unknown");
        let t = translate(&names, "weird", &body, at(), 1 << 20);
        assert_eq!(t.messages[0].subject, "dev.in._.unknown");
    }

    #[test]
    fn too_large_messages_are_split_not_dropped() {
        let names = Names::new("");
        let mut raw = br#"{"tid":"big","data":""#.to_vec();
        raw.extend(std::iter::repeat_n(b'x', 2500));
        raw.extend(br#""}"#);
        let body = Bytes::from(raw);
        let t = translate(&names, "thing/product/D/osd", &body, at(), 1000);
        assert_eq!(t.anomaly, Some(Anomaly::TooLarge));
        assert_eq!(t.messages.len(), 3);
        let joined: Vec<u8> = t.messages.iter().flat_map(|m| m.payload.to_vec()).collect();
        assert_eq!(joined, body.to_vec());
        assert_eq!(header(&t.messages[2], H_CHUNK).as_deref(), Some("3/3"));
        assert_eq!(header(&t.messages[0], "Nats-Msg-Id").as_deref(), Some("thing/product/D/osd/big/1"));
        assert!(t.messages.iter().all(|m| m.subject == "dev.in.D.osd"));
    }

    #[test]
    fn header_values_cannot_be_split() {
        assert_eq!(header_value("plain/topic"), "plain/topic");
        assert_eq!(header_value("a\r\nb"), "a%0D%0Ab");
        let names = Names::new("");
        let body = Bytes::from_static(b"{\"tid\":\"x\\r\\nNats-Msg-Id: y\"}");
        let t = translate(&names, "thing/product/D/events", &body, at(), 1 << 20);
        let id = header(&t.messages[0], "Nats-Msg-Id").unwrap();
        assert!(!id.contains('\n') && !id.contains('\r'), "{id}");
    }
}
