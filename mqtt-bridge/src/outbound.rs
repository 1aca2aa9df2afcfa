//! JetStream → MQTT: messages for devices, from DEVICE_OUT to the topic named in their
//! `Hangar-Mqtt-Topic` header, QoS 1.
//!
//! A JetStream message is acked only after the broker's PubAck for it, so a bridge that dies in
//! between leaves it to be redelivered (at least once, never lost). rumqttc reports packet ids
//! only as events (`Outgoing::Publish(pkid)`, then `PubAck(pkid)`), so the feeder task queues each
//! message's id before handing the publish to rumqttc, and the event-loop task pairs the ids with
//! packet ids in the order rumqttc sends them. When the connection drops, rumqttc would re-send
//! the unacked publishes itself; instead the bridge takes them out of its queue and gives the
//! messages back to JetStream (nak), so that pairing never has to guess, and redelivery stays
//! JetStream's job.
//!
//! This link uses its own connection (`<client id>-out`) with a clean session: it subscribes to
//! nothing, and its publishes never wait behind the inbound traffic.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt as _;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, Request};
use shared::metrics;
use shared::nats::Names;
use shared::{Config, Shutdown};
use tokio::sync::{mpsc, watch};

use crate::mqtt::{Backoff, BrokerUrl};
use crate::{topic, H_MQTT_TOPIC};

/// Messages taken from JetStream and not yet settled.
const WINDOW: usize = 256;
/// How long a shutdown waits for PubAcks of messages already published.
const DRAIN: Duration = Duration::from_secs(5);
/// A message that could not be delivered is offered again after this long.
const NAK_DELAY: Duration = Duration::from_secs(1);

/// What became of one message handed to rumqttc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The broker acked it.
    Delivered(u64),
    /// The connection dropped before the broker acked it.
    Failed(u64),
}

pub(crate) struct Outbound {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
}

impl Outbound {
    pub(crate) fn new(config: &Config, url: &BrokerUrl) -> Self {
        let credentials = (!config.mqtt_username.is_empty())
            .then_some((config.mqtt_username.as_str(), config.mqtt_password.as_str()));
        let mut options = crate::mqtt::options(
            url,
            &format!("{}-out", config.mqtt_client_id),
            Duration::from_secs(config.mqtt_keep_alive_secs),
            true,
            credentials,
        );
        // More packet ids than messages outstanding: rumqttc never has to hold a publish back.
        options.set_inflight(WINDOW as u16 * 2);
        // At most WINDOW publishes plus a disconnect are ever queued, so `publish` never waits.
        let (client, eventloop) = crate::mqtt::client(options, WINDOW * 2 + 16);
        Self { client, eventloop }
    }
}

/// Pairs message ids with rumqttc packet ids.
struct Correlator {
    ids: mpsc::UnboundedReceiver<u64>,
    /// Ids handed to rumqttc whose publish has not been sent yet, in hand-over order.
    unsent: VecDeque<u64>,
    /// Sent and waiting for the broker's PubAck.
    inflight: HashMap<u16, u64>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl Correlator {
    fn next_unsent(&mut self) -> Option<u64> {
        while let Ok(id) = self.ids.try_recv() {
            self.unsent.push_back(id);
        }
        self.unsent.pop_front()
    }

    fn observe(&mut self, event: &Event) {
        match event {
            // Fresh publishes are sent in the order they were handed over (rumqttc's request
            // queue is FIFO, and a publish held back by a packet-id collision is the next one).
            Event::Outgoing(Outgoing::Publish(pkid)) => match self.next_unsent() {
                Some(id) => {
                    self.inflight.insert(*pkid, id);
                }
                None => tracing::error!(pkid, "mqtt-bridge sent a publish it did not queue"),
            },
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(id) = self.inflight.remove(&ack.pkid) {
                    let _ = self.outcomes.send(Outcome::Delivered(id));
                }
            }
            _ => {}
        }
    }

    /// After a connection error: every publish rumqttc would re-send (in flight, held back, or
    /// still queued) is removed and its message given back to JetStream.
    fn connection_lost(&mut self, eventloop: &mut EventLoop) {
        // Events rumqttc produced before the error and has not returned yet.
        let buffered: Vec<Event> = eventloop.state.events.drain(..).collect();
        for event in &buffered {
            self.observe(event);
        }
        let mut unsent = usize::from(eventloop.state.collision.take().is_some());
        eventloop.pending.retain(|request| match request {
            Request::Publish(p) => {
                // Packet id 0: taken from the request queue, never sent. Others are in flight.
                if p.pkid == 0 {
                    unsent += 1;
                }
                false
            }
            _ => true,
        });
        for (_, id) in self.inflight.drain() {
            let _ = self.outcomes.send(Outcome::Failed(id));
        }
        for _ in 0..unsent {
            if let Some(id) = self.next_unsent() {
                let _ = self.outcomes.send(Outcome::Failed(id));
            }
        }
    }
}

/// Drives the outbound connection: reconnects with backoff, reports PubAcks and losses.
#[tracing::instrument(name = "bridge_outbound", skip_all, fields(client_id = %eventloop.mqtt_options.client_id()))]
pub(crate) async fn mqtt_loop(
    mut eventloop: EventLoop,
    ids: mpsc::UnboundedReceiver<u64>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    link: watch::Sender<bool>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let connected = metrics::gauge("hangar_bridge_connected", &[("link", "outbound")]);
    let mut correlator = Correlator { ids, unsent: VecDeque::new(), inflight: HashMap::new(), outcomes };
    let mut backoff = Backoff::default();
    let mut deadline = None;
    loop {
        let event = match deadline {
            None => tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // The feeder settles what is in flight and then asks for a disconnect.
                    deadline = Some(tokio::time::Instant::now() + DRAIN + Duration::from_secs(2));
                    continue;
                }
                event = eventloop.poll() => event,
            },
            Some(d) => match tokio::time::timeout_at(d, eventloop.poll()).await {
                Ok(event) => event,
                Err(_) => break,
            },
        };
        match event {
            Ok(event) => {
                if let Event::Incoming(Packet::ConnAck(_)) = event {
                    connected.store(1, Ordering::Relaxed);
                    backoff.reset();
                    link.send_replace(true);
                    tracing::info!("mqtt-bridge outbound link connected");
                }
                if let Event::Outgoing(Outgoing::Disconnect) = event {
                    break;
                }
                correlator.observe(&event);
            }
            Err(e) => {
                connected.store(0, Ordering::Relaxed);
                link.send_replace(false);
                correlator.connection_lost(&mut eventloop);
                if deadline.is_some() {
                    break;
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "mqtt-bridge outbound link lost the broker");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    connected.store(0, Ordering::Relaxed);
    link.send_replace(false);
    Ok(())
}

/// The DEVICE_OUT consumer. Its `ack_wait` is the slot lease time: a message taken by a replica
/// that died is handed to another one as soon as that replica's slots are, so a device waits on
/// a dead bridge no longer for its commands than for the answers to its own messages. Messages a
/// live replica is still sending tell JetStream so (see [`keep_alive`]) well before that.
fn consumer_config(names: &Names, ack_wait: Duration) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names.consumer("mqtt_bridge_out")),
        description: Some("mqtt-bridge: publishes device messages to the broker".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        deliver_policy: consumer::DeliverPolicy::All,
        filter_subject: names.device_out_filter(None),
        max_ack_pending: WINDOW as i64,
        ..Default::default()
    }
}

async fn open(js: &jetstream::Context, names: &Names, ack_wait: Duration) -> anyhow::Result<consumer::pull::Stream> {
    let stream = js.get_stream(names.device_out_stream()).await.context("DEVICE_OUT stream")?;
    let config = consumer_config(names, ack_wait);
    let mut consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(&names.consumer("mqtt_bridge_out"), config.clone())
        .await
        .context("mqtt-bridge outbound consumer")?;
    if consumer.cached_info().config.ack_wait != ack_wait {
        // Made under another lease time (or by an older version): bring it to this one's.
        consumer = stream.create_consumer(config).await.context("changing the outbound consumer's ack_wait")?;
    }
    consumer
        .stream()
        .max_messages_per_batch(WINDOW)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .context("pulling from DEVICE_OUT")
}

/// Takes messages from DEVICE_OUT while the link is up, hands them to rumqttc and settles them
/// with JetStream as their outcomes come back.
#[tracing::instrument(name = "bridge_outbound_feeder", skip_all, fields(stream = %names.device_out_stream()))]
#[allow(clippy::too_many_arguments)]
pub(crate) async fn feeder(
    js: jetstream::Context,
    names: Names,
    ack_wait: Duration,
    client: AsyncClient,
    ids: mpsc::UnboundedSender<u64>,
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    mut link: watch::Receiver<bool>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let errors = metrics::counter("hangar_bridge_jetstream_errors_total", &[]);
    let mut outstanding: HashMap<u64, InFlight> = HashMap::new();
    let mut next_id = 0u64;
    let mut backoff = Backoff::default();
    // Outstanding messages say they are in progress once half their ack_wait has passed.
    let progress_after = ack_wait / 2;
    let mut progress = tokio::time::interval(ack_wait / 4);
    'consume: while !shutdown.is_cancelled() {
        let mut messages = match open(&js, &names, ack_wait).await {
            Ok(m) => m,
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(error = ?e, retry_in_ms = delay.as_millis() as u64, "mqtt-bridge cannot read DEVICE_OUT");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        loop {
            let up = *link.borrow_and_update();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'consume,
                Some(outcome) = outcomes.recv() => settle(&mut outstanding, outcome).await,
                changed = link.changed() => {
                    if changed.is_err() {
                        break 'consume; // the event-loop task is gone
                    }
                }
                _ = progress.tick() => keep_alive(&outstanding, progress_after).await,
                next = messages.next(), if outstanding.len() < WINDOW => match next {
                    Some(Ok(msg)) => {
                        backoff.reset();
                        if !up {
                            // Hand it straight back: left in the pull buffer during a long outage
                            // it would pass its ack_wait and be delivered (and published) twice.
                            let _ = msg.ack_with(AckKind::Nak(Some(NAK_DELAY))).await;
                            continue;
                        }
                        let Some(topic) = destination(&msg) else {
                            if let Err(e) = msg.ack_with(AckKind::Term).await {
                                errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(error = %e, "could not terminate an outbound message");
                            }
                            continue;
                        };
                        let id = next_id;
                        next_id += 1;
                        let span = publish_span(&msg, &topic);
                        // The id goes first: the event-loop task must find it when rumqttc sends.
                        ids.send(id).context("mqtt-bridge outbound event loop stopped")?;
                        client
                            .publish_bytes(topic, QoS::AtLeastOnce, false, msg.payload.clone())
                            .await
                            .context("mqtt-bridge outbound event loop stopped")?;
                        outstanding.insert(id, InFlight { msg, since: Instant::now(), _span: span });
                    }
                    Some(Err(e)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "DEVICE_OUT consumer interrupted; reopening");
                        tokio::select! {
                            _ = shutdown.cancelled() => break 'consume,
                            _ = tokio::time::sleep(delay) => continue 'consume,
                        }
                    }
                    None => continue 'consume,
                },
            }
        }
    }

    // Settle what the broker acks in time; the rest goes back to JetStream for the next bridge.
    let deadline = tokio::time::Instant::now() + DRAIN;
    while !outstanding.is_empty() {
        tokio::select! {
            outcome = outcomes.recv() => match outcome {
                Some(outcome) => settle(&mut outstanding, outcome).await,
                None => break, // the connection is gone: nothing more will be acked
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    for (_, InFlight { msg, .. }) in outstanding.drain() {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
    }
    let _ = client.try_disconnect();
    Ok(())
}

/// The MQTT topic of an outbound message, or `None` (logged) when it has none or an unusable one,
/// or when it expired: a command whose caller stopped waiting is never delivered late.
fn destination(msg: &jetstream::Message) -> Option<String> {
    let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
    let expires_at = header(shared::protocol::H_EXPIRES_AT).and_then(|v| v.parse::<i64>().ok());
    if let Some(at) = expires_at.filter(|at| *at <= chrono::Utc::now().timestamp_millis()) {
        tracing::warn!(subject = %msg.subject, expires_at = at, "outbound message expired before it could be sent; dropped");
        metrics::counter("hangar_bridge_expired_total", &[]).fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let topic = header(H_MQTT_TOPIC);
    match topic {
        Some(t) if topic::publishable(&t) => Some(t),
        Some(t) => {
            tracing::warn!(subject = %msg.subject, topic = %t, "outbound message for an unusable MQTT topic; terminated");
            None
        }
        None => {
            tracing::warn!(subject = %msg.subject, "outbound message without {H_MQTT_TOPIC}; terminated");
            None
        }
    }
}

/// The span of an MQTT publish (while traces are exported), continuing the trace the message
/// carries from whoever published it to DEVICE_OUT; none for a message that carries no trace.
fn publish_span(msg: &jetstream::Message, topic: &str) -> tracing::Span {
    if !shared::telemetry::enabled()
        || msg.headers.as_ref().and_then(|h| h.get(shared::telemetry::TRACEPARENT)).is_none()
    {
        return tracing::Span::none();
    }
    let span = shared::span!("mqtt.publish", otel.kind = "producer", mqtt.topic = topic);
    shared::telemetry::follow(&span, &shared::telemetry::NatsHeadersRef(msg.headers.as_ref()));
    span
}

/// A message handed to rumqttc, waiting for the broker's PubAck.
struct InFlight {
    msg: jetstream::Message,
    since: Instant,
    /// Its `mqtt.publish` span (while traces are exported), continuing the trace the message
    /// carries; it ends when the message is settled.
    _span: tracing::Span,
}

/// Messages the broker acked, by kind (the last token of the DEVICE_OUT subject: `services`,
/// `status_reply`, …).
static OUTBOUND: std::sync::LazyLock<metrics::CounterFamily> =
    std::sync::LazyLock::new(|| metrics::CounterFamily::new("hangar_bridge_outbound_total", "kind"));

async fn settle(outstanding: &mut HashMap<u64, InFlight>, outcome: Outcome) {
    let (id, delivered) = match outcome {
        Outcome::Delivered(id) => (id, true),
        Outcome::Failed(id) => (id, false),
    };
    let Some(InFlight { msg, .. }) = outstanding.remove(&id) else { return };
    let result = if delivered {
        let kind = msg.subject.rsplit('.').next().unwrap_or_default();
        OUTBOUND.get(kind).fetch_add(1, Ordering::Relaxed);
        msg.ack().await
    } else {
        tracing::debug!(subject = %msg.subject, "outbound message not acked by the broker; JetStream will offer it again");
        msg.ack_with(AckKind::Nak(Some(NAK_DELAY))).await
    };
    if let Err(e) = result {
        // JetStream redelivers it after ack_wait: the device may get it twice, never zero times.
        metrics::counter("hangar_bridge_jetstream_errors_total", &[]).fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "could not settle an outbound message with JetStream");
    }
}

/// Tells JetStream that messages handed to the broker longer than `after` ago are still being
/// worked on, so that a slow broker does not make JetStream hand them out a second time.
async fn keep_alive(outstanding: &HashMap<u64, InFlight>, after: Duration) {
    for InFlight { msg, since, .. } in outstanding.values() {
        if since.elapsed() >= after {
            let _ = msg.ack_with(AckKind::Progress).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{MqttOptions, PubAck, Publish};

    fn correlator() -> (Correlator, mpsc::UnboundedSender<u64>, mpsc::UnboundedReceiver<Outcome>) {
        let (ids_tx, ids) = mpsc::unbounded_channel();
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        (Correlator { ids, unsent: VecDeque::new(), inflight: HashMap::new(), outcomes }, ids_tx, outcomes_rx)
    }

    #[test]
    fn pubacks_settle_the_message_sent_under_their_packet_id() {
        let (mut c, ids, mut out) = correlator();
        for id in [10, 11, 12] {
            ids.send(id).unwrap();
        }
        c.observe(&Event::Outgoing(Outgoing::Publish(1)));
        c.observe(&Event::Outgoing(Outgoing::Publish(2)));
        c.observe(&Event::Incoming(Packet::PubAck(PubAck::new(2))));
        c.observe(&Event::Incoming(Packet::PubAck(PubAck::new(1))));
        assert_eq!(out.try_recv().unwrap(), Outcome::Delivered(11));
        assert_eq!(out.try_recv().unwrap(), Outcome::Delivered(10));
        assert!(out.try_recv().is_err());
        assert_eq!(c.next_unsent(), Some(12));
    }

    #[test]
    fn a_lost_connection_fails_everything_rumqttc_would_resend() {
        let (mut c, ids, mut out) = correlator();
        for id in [1, 2, 3, 4] {
            ids.send(id).unwrap();
        }
        let mut eventloop = EventLoop::new(MqttOptions::new("t", "127.0.0.1", 1), 10);
        c.observe(&Event::Outgoing(Outgoing::Publish(1))); // id 1 in flight
                                                           // id 2 was sent just before the error; its event is still buffered in rumqttc
        eventloop.state.events.push_back(Event::Outgoing(Outgoing::Publish(2)));
        let mut sent = Publish::new("a", QoS::AtLeastOnce, "x");
        sent.pkid = 2;
        eventloop.pending.push_back(Request::Publish(sent));
        // id 3 was still queued (packet id 0); id 4 was handed over after the queue was drained
        eventloop.pending.push_back(Request::Publish(Publish::new("a", QoS::AtLeastOnce, "y")));
        eventloop.pending.push_back(Request::PingReq(rumqttc::PingReq));

        c.connection_lost(&mut eventloop);
        let mut failed: Vec<Outcome> = std::iter::from_fn(|| out.try_recv().ok()).collect();
        failed.sort_by_key(|o| match o {
            Outcome::Failed(id) | Outcome::Delivered(id) => *id,
        });
        assert_eq!(failed, vec![Outcome::Failed(1), Outcome::Failed(2), Outcome::Failed(3)]);
        assert_eq!(eventloop.pending.len(), 1, "only the ping stays");
        assert!(c.inflight.is_empty());
        // id 4 is sent on the next connection and paired correctly
        c.observe(&Event::Outgoing(Outgoing::Publish(1)));
        c.observe(&Event::Incoming(Packet::PubAck(PubAck::new(1))));
        assert_eq!(out.try_recv().unwrap(), Outcome::Delivered(4));
    }
}
