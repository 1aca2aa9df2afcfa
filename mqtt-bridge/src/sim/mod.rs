//! A fleet of simulated DJI Dock 2 gateways, each with its M3D aircraft, speaking the Cloud API
//! over MQTT: topology on connecting, dock and aircraft OSD at a steady rate, an HMS event now and
//! then, and replies to `services` and `property/set`. Tests, demos and benchmarks use it in
//! place of hardware.
//!
//! Docks share MQTT connections (one per `docks_per_connection`, 100 by default) so that a
//! fleet of thousands does not open thousands of sockets, but every dock publishes and listens on
//! its own topics exactly as a real one would.
//!
//! Each aircraft flies a two-minute round every ten minutes (phase staggered per dock), so
//! telemetry changes the way a live dashboard expects: cover opens, the aircraft leaves the dock,
//! climbs, circles and comes back with less battery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter};
use serde_json::Value;
use shared::Shutdown;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::mqtt::{self, Backoff, BrokerUrl};

mod services;
mod telemetry;

use services::reply;
use telemetry::DockState;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Broker URL, `mqtt://host:port`.
    pub broker: String,
    /// Number of docks (each with one aircraft).
    pub docks: usize,
    /// OSD messages per second per device (dock and aircraft each).
    pub osd_hz: f64,
    /// Prefix of every serial number: `<prefix>DOCK0001`, `<prefix>UAV0001`, …
    pub sn_prefix: String,
    /// Docks per MQTT connection.
    pub docks_per_connection: usize,
    /// Mean time between HMS events of one dock; `None` sends none.
    pub hms_every: Option<Duration>,
    /// QoS of OSD messages (topology, events and replies always use QoS 1).
    pub osd_qos: QoS,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            broker: "mqtt://127.0.0.1:1883".into(),
            docks: 1,
            osd_hz: 1.0,
            sn_prefix: "SIM".into(),
            docks_per_connection: 100,
            hms_every: Some(Duration::from_secs(60)),
            osd_qos: QoS::AtLeastOnce,
        }
    }
}

/// Serial numbers of one simulated dock and its aircraft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDock {
    pub dock_sn: String,
    pub drone_sn: String,
}

impl SimDock {
    /// Dock `index` (from 1) of a fleet with this prefix.
    pub fn new(prefix: &str, index: usize) -> Self {
        Self { dock_sn: format!("{prefix}DOCK{index:04}"), drone_sn: format!("{prefix}UAV{index:04}") }
    }
}

/// Messages the fleet handed to the broker, and commands it received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// `update_topo` on `sys/product/<dock>/status`.
    pub topo: u64,
    /// OSD messages (dock and aircraft).
    pub osd: u64,
    /// HMS events.
    pub hms: u64,
    /// `services` and `property/set` received.
    pub commands: u64,
    /// `services_reply` and `property/set_reply` sent.
    pub replies: u64,
    /// `requests_reply` and `events_reply` received.
    pub acks_received: u64,
    /// Publishes that could not be queued (the connection's task had stopped).
    pub errors: u64,
}

impl SimStats {
    /// Everything published.
    pub fn sent(&self) -> u64 {
        self.topo + self.osd + self.hms + self.replies
    }
}

#[derive(Default)]
struct Counters {
    topo: AtomicU64,
    osd: AtomicU64,
    hms: AtomicU64,
    commands: AtomicU64,
    replies: AtomicU64,
    acks_received: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            topo: get(&self.topo),
            osd: get(&self.osd),
            hms: get(&self.hms),
            commands: get(&self.commands),
            replies: get(&self.replies),
            acks_received: get(&self.acks_received),
            errors: get(&self.errors),
        }
    }

    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running fleet. Dropping it stops every connection at once; [`Fleet::stop`] stops them
/// cleanly.
pub struct Fleet {
    docks: Vec<SimDock>,
    counters: Arc<Counters>,
    subscribed: Vec<watch::Receiver<bool>>,
    tasks: JoinSet<()>,
    stop: Shutdown,
}

impl Fleet {
    /// Starts the fleet; connections are made in the background (see [`Fleet::ready`]).
    pub async fn start(config: FleetConfig) -> anyhow::Result<Self> {
        let url = BrokerUrl::parse(&config.broker)?;
        anyhow::ensure!(config.osd_hz > 0.0 && config.osd_hz.is_finite(), "osd_hz must be positive");
        let per_connection = config.docks_per_connection.max(1);
        let docks: Vec<SimDock> = (1..=config.docks).map(|i| SimDock::new(&config.sn_prefix, i)).collect();
        let counters = Arc::new(Counters::default());
        let stop = Shutdown::new();
        let mut tasks = JoinSet::new();
        let mut subscribed = Vec::new();
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        for (k, group) in docks.chunks(per_connection).enumerate() {
            let client_id = format!("{}sim{k}-{}", config.sn_prefix, &run_id[..8]);
            let mut options = mqtt::options(&url, &client_id, Duration::from_secs(30), true, None);
            options.set_inflight(200);
            let (client, eventloop) = AsyncClient::new(options, 1024);
            let (commands_tx, commands_rx) = mpsc::unbounded_channel();
            let (connected_tx, connected_rx) = watch::channel(0u64);
            let (subscribed_tx, subscribed_rx) = watch::channel(false);
            subscribed.push(subscribed_rx);
            let filters: Vec<String> = group
                .iter()
                .flat_map(|d| {
                    ["services", "requests_reply", "property/set", "events_reply"]
                        .map(|t| format!("thing/product/{}/{t}", d.dock_sn))
                })
                .collect();
            tasks.spawn(connection_loop(
                eventloop,
                client.clone(),
                filters,
                commands_tx,
                connected_tx,
                subscribed_tx,
                counters.clone(),
                stop.clone(),
            ));
            let first_index = k * per_connection;
            let states = group.iter().enumerate().map(|(i, d)| DockState::new(d.clone(), first_index + i)).collect();
            tasks.spawn(drive(
                config.clone(),
                client,
                states,
                commands_rx,
                connected_rx,
                counters.clone(),
                stop.clone(),
            ));
        }
        Ok(Self { docks, counters, subscribed, tasks, stop })
    }

    /// The simulated docks, in serial-number order.
    pub fn docks(&self) -> &[SimDock] {
        &self.docks
    }

    /// Waits until every connection is up and subscribed to its docks' command topics.
    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let all = async {
            for s in &self.subscribed {
                let mut s = s.clone();
                s.wait_for(|up| *up).await.context("simulator connection stopped")?;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(timeout, all).await.context("simulated docks did not connect in time")?
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.counters.snapshot()
    }

    /// Stops publishing, disconnects every connection and returns the final counters.
    pub async fn stop(mut self) -> SimStats {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.counters.snapshot()
    }
}

/// Polls one connection: subscribes on every ConnAck, passes commands to the driver, reconnects
/// with backoff. Never waits on anything but the network, so it never stalls the connection.
#[allow(clippy::too_many_arguments)]
async fn connection_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    commands: mpsc::UnboundedSender<(String, bytes::Bytes)>,
    connected: watch::Sender<u64>,
    subscribed: watch::Sender<bool>,
    counters: Arc<Counters>,
    stop: Shutdown,
) {
    let mut backoff = Backoff::default();
    let mut deadline = None;
    loop {
        let event = match deadline {
            None => tokio::select! {
                _ = stop.cancelled() => {
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3));
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
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                // A SUBSCRIBE per 100 filters keeps packets small for any broker.
                for chunk in filters.chunks(100) {
                    let subs =
                        chunk.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)).collect::<Vec<_>>();
                    if client.try_subscribe_many(subs).is_err() {
                        Counters::add(&counters.errors);
                    }
                }
                connected.send_modify(|n| *n += 1);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                subscribed.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic.ends_with("/services") || p.topic.ends_with("/property/set") {
                    Counters::add(&counters.commands);
                    let _ = commands.send((p.topic, p.payload));
                } else {
                    Counters::add(&counters.acks_received);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                subscribed.send_replace(false);
                if deadline.is_some() {
                    break;
                }
                let delay = backoff.next_delay();
                tracing::debug!(error = %e, "simulated docks lost the broker");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    subscribed.send_replace(false);
}

/// Publishes the docks' traffic and answers their commands.
async fn drive(
    config: FleetConfig,
    client: AsyncClient,
    mut docks: Vec<DockState>,
    mut commands: mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
    mut connected: watch::Receiver<u64>,
    counters: Arc<Counters>,
    stop: Shutdown,
) {
    // Spread the docks' OSD evenly over each period instead of bursting them all at once.
    let period = 1.0 / config.osd_hz;
    let tick = Duration::from_secs_f64((period / docks.len().max(1) as f64).max(0.002));
    let per_tick = tick.as_secs_f64() / period * docks.len() as f64;
    let hms_probability = config.hms_every.map_or(0.0, |every| (period / every.as_secs_f64().max(1e-3)).min(1.0));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due = 0.0f64;
    let mut cursor = 0usize;
    let started = Instant::now();
    let publish = |topic: String, qos: QoS, body: Value, counter: &AtomicU64| {
        let client = client.clone();
        let payload = body.to_string();
        Counters::add(counter);
        async move { client.publish(topic, qos, false, payload).await.is_ok() }
    };

    loop {
        let online = *connected.borrow() > 0;
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            changed = connected.changed() => {
                if changed.is_err() {
                    break;
                }
                // A dock announces its topology on every (re)connection, just before its next OSD:
                // spread like the OSD, not a burst of thousands at once that a broker's queue
                // limit for the bridge would cut.
                for d in &mut docks {
                    d.announce = true;
                }
            }
            Some((topic, payload)) = commands.recv() => {
                if let Some((reply_topic, body)) = reply(&topic, &payload) {
                    if !publish(reply_topic, QoS::AtLeastOnce, body, &counters.replies).await {
                        Counters::add(&counters.errors);
                    }
                }
            }
            _ = ticker.tick(), if online => {
                due += per_tick;
                let t = started.elapsed().as_secs_f64();
                while due >= 1.0 {
                    due -= 1.0;
                    let count = docks.len();
                    let d = &mut docks[cursor];
                    cursor = (cursor + 1) % count;
                    d.advance(t);
                    if std::mem::take(&mut d.announce)
                        && !publish(format!("sys/product/{}/status", d.ids.dock_sn), QoS::AtLeastOnce, d.update_topo(), &counters.topo).await
                    {
                        Counters::add(&counters.errors);
                    }
                    let dock_sn = d.ids.dock_sn.clone();
                    let drone_sn = d.ids.drone_sn.clone();
                    let ok = publish(format!("thing/product/{dock_sn}/osd"), config.osd_qos, d.dock_osd(), &counters.osd).await
                        & publish(format!("thing/product/{drone_sn}/osd"), config.osd_qos, d.drone_osd(), &counters.osd).await;
                    if !ok {
                        Counters::add(&counters.errors);
                    }
                    if hms_probability > 0.0 && rand::thread_rng().gen_bool(hms_probability) {
                        let body = d.hms();
                        if !publish(format!("thing/product/{dock_sn}/events"), QoS::AtLeastOnce, body, &counters.hms).await {
                            Counters::add(&counters.errors);
                        }
                    }
                }
            }
        }
    }
    let _ = client.disconnect().await;
}
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn tid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers() {
        assert_eq!(SimDock::new("X", 7), SimDock { dock_sn: "XDOCK0007".into(), drone_sn: "XUAV0007".into() });
    }
}
