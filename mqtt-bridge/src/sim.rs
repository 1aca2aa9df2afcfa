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

use std::f64::consts::TAU;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter};
use serde_json::{json, Value};
use shared::Shutdown;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::mqtt::{self, Backoff, BrokerUrl};

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

/// The device's answer to a command, as a real dock gives it: same `tid` and `bid`, result 0.
fn reply(topic: &str, payload: &[u8]) -> Option<(String, Value)> {
    let request: Value = serde_json::from_slice(payload).ok()?;
    let field = |k: &str| request.get(k).cloned().unwrap_or(Value::Null);
    if let Some(base) = topic.strip_suffix("/services") {
        let body = json!({
            "tid": field("tid"),
            "bid": field("bid"),
            "timestamp": now_ms(),
            "method": field("method"),
            "data": {"result": 0, "output": {"status": "ok"}},
        });
        return Some((format!("{base}/services_reply"), body));
    }
    if let Some(base) = topic.strip_suffix("/property/set") {
        let results: serde_json::Map<String, Value> = match request.get("data") {
            Some(Value::Object(data)) => data.keys().map(|k| (k.clone(), json!({"result": 0}))).collect(),
            _ => serde_json::Map::new(),
        };
        let body = json!({"tid": field("tid"), "bid": field("bid"), "timestamp": now_ms(), "data": results});
        return Some((format!("{base}/property/set_reply"), body));
    }
    None
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn tid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One dock and its aircraft, moving through a flight cycle.
struct DockState {
    ids: SimDock,
    lat: f64,
    lon: f64,
    phase: f64,
    /// `update_topo` is due (set on every connection).
    announce: bool,
    // what the last `advance` computed
    flying: bool,
    progress: f64,
    battery: f64,
    temperature: f64,
    humidity: f64,
    wind: f64,
}

const CYCLE_SECS: f64 = 600.0;
const FLIGHT_SECS: f64 = 120.0;
/// Aircraft model key (domain-type-subtype) of the M3D.
const M3D: &str = "0-91-0";

impl DockState {
    fn new(ids: SimDock, index: usize) -> Self {
        // Docks on a grid around Shenzhen, about 1 km apart.
        let (row, col) = ((index / 50) as f64, (index % 50) as f64);
        let mut rng = rand::thread_rng();
        Self {
            ids,
            lat: 22.54 + row * 0.009,
            lon: 113.93 + col * 0.0097,
            phase: rng.gen_range(0.0..CYCLE_SECS),
            announce: false,
            flying: false,
            progress: 0.0,
            battery: 100.0,
            temperature: rng.gen_range(18.0..30.0),
            humidity: rng.gen_range(40.0..80.0),
            wind: rng.gen_range(0.0..6.0),
        }
    }

    fn advance(&mut self, t: f64) {
        let in_cycle = (t + self.phase) % CYCLE_SECS;
        self.flying = in_cycle < FLIGHT_SECS;
        self.progress = if self.flying { in_cycle / FLIGHT_SECS } else { 0.0 };
        self.battery =
            if self.flying { 100.0 - 60.0 * self.progress } else { (40.0 + (in_cycle - FLIGHT_SECS) / 4.0).min(100.0) };
        let mut rng = rand::thread_rng();
        self.temperature = (self.temperature + rng.gen_range(-0.05..0.05)).clamp(-20.0, 50.0);
        self.humidity = (self.humidity + rng.gen_range(-0.2..0.2)).clamp(5.0, 100.0);
        self.wind = (self.wind + rng.gen_range(-0.1..0.1)).clamp(0.0, 15.0);
    }

    fn update_topo(&self) -> Value {
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "method": "update_topo",
            "data": {
                "domain": 3, "type": 2, "sub_type": 0,
                "device_secret": "simulated", "nonce": "simulated", "thing_version": "1.2.0",
                "sub_devices": [{
                    "sn": self.ids.drone_sn, "domain": 0, "type": 91, "sub_type": 0, "index": "A",
                    "device_secret": "simulated", "nonce": "simulated", "thing_version": "1.2.0",
                }],
            },
        })
    }

    /// Height above the dock, metres: climb to 80 m, hold, descend.
    fn altitude(&self) -> f64 {
        let p = self.progress;
        if !self.flying {
            0.0
        } else if p < 0.15 {
            80.0 * p / 0.15
        } else if p > 0.85 {
            80.0 * (1.0 - p) / 0.15
        } else {
            80.0
        }
    }

    fn dock_osd(&self) -> Value {
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "gateway": self.ids.dock_sn,
            "data": {
                "mode_code": if self.flying { 4 } else { 0 },
                "latitude": self.lat, "longitude": self.lon, "height": 42.5,
                "environment_temperature": round1(self.temperature),
                "temperature": round1(self.temperature + 4.0),
                "humidity": round1(self.humidity),
                "wind_speed": round1(self.wind),
                "rainfall": 0,
                "drone_in_dock": !self.flying,
                "cover_state": if self.flying { 1 } else { 0 },
                "putter_state": 0,
                "flighttask_step_code": if self.flying { 1 } else { 5 },
                "drone_charge_state": {"state": if self.flying { 0 } else { 1 }, "capacity_percent": self.battery.round() as i64},
                "network_state": {"type": 2, "quality": 5, "rate": 1250.0},
                "position_state": {"is_calibration": 1, "is_fixed": 2, "quality": 5, "gps_number": 26, "rtk_number": 30},
                "storage": {"total": 82_045_336, "used": 1_204_224},
                "emergency_stop_state": false,
                "alarm_state": false,
                "sub_device": {"device_sn": self.ids.drone_sn, "device_model_key": M3D, "device_online_status": 1, "device_paired": 1},
            },
        })
    }

    fn drone_osd(&self) -> Value {
        let angle = TAU * self.progress;
        let radius = if self.flying { 0.002 * (angle / 2.0).sin() } else { 0.0 };
        let height = self.altitude();
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "gateway": self.ids.dock_sn,
            "data": {
                "mode_code": if self.flying { 5 } else { 0 },
                "latitude": self.lat + radius * angle.cos(),
                "longitude": self.lon + radius * angle.sin(),
                "height": round1(42.5 + height),
                "elevation": round1(height),
                "attitude_head": round1((angle.to_degrees() + 90.0) % 360.0 - 180.0),
                "attitude_pitch": 0.0,
                "attitude_roll": 0.0,
                "horizontal_speed": if self.flying { 8.0 } else { 0.0 },
                "vertical_speed": 0.0,
                "wind_speed": round1(self.wind),
                "home_distance": round1(radius * 111_000.0),
                "gear": 1,
                "battery": {
                    "capacity_percent": self.battery.round() as i64,
                    "remain_flight_time": (self.battery * 24.0) as i64,
                    "return_home_power": 20,
                    "landing_power": 10,
                },
                "position_state": {"gps_number": 28, "is_fixed": 2, "quality": 5, "rtk_number": 32},
                "height_limit": 120,
                "rc_lost_action": 2,
                "rth_altitude": 100,
                "firmware_version": "10.01.0005",
            },
        })
    }

    fn hms(&self) -> Value {
        let mut rng = rand::thread_rng();
        let (code, device_type, module) = if rng.gen_bool(0.5) {
            ("0x16100083", M3D, 3) // aircraft: compass interference
        } else {
            ("0x1B010001", "3-2-0", 3) // dock: environment
        };
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "gateway": self.ids.dock_sn,
            "method": "hms", "need_reply": 1,
            "data": {"list": [{
                "level": rng.gen_range(0..=2), "module": module, "in_the_sky": i32::from(self.flying),
                "code": code, "device_type": device_type, "imminent": 0,
                "args": {"component_index": 0, "sensor_index": 0},
            }]},
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers() {
        assert_eq!(SimDock::new("X", 7), SimDock { dock_sn: "XDOCK0007".into(), drone_sn: "XUAV0007".into() });
    }

    #[test]
    fn services_get_an_ok_reply_with_tid_and_bid() {
        let (topic, body) = reply(
            "thing/product/XDOCK0001/services",
            br#"{"tid":"t1","bid":"b1","timestamp":1,"method":"cover_open","data":""}"#,
        )
        .unwrap();
        assert_eq!(topic, "thing/product/XDOCK0001/services_reply");
        assert_eq!(
            (body["tid"].as_str(), body["bid"].as_str(), body["method"].as_str()),
            (Some("t1"), Some("b1"), Some("cover_open"))
        );
        assert_eq!(body["data"], json!({"result": 0, "output": {"status": "ok"}}));
    }

    #[test]
    fn property_set_gets_a_result_per_property() {
        let (topic, body) =
            reply("thing/product/XDOCK0001/property/set", br#"{"tid":"t","bid":"b","data":{"height_limit":200}}"#)
                .unwrap();
        assert_eq!(topic, "thing/product/XDOCK0001/property/set_reply");
        assert_eq!(body["data"], json!({"height_limit": {"result": 0}}));
        assert!(reply("thing/product/X/services", b"not json").is_none());
        assert!(reply("thing/product/X/events_reply", b"{}").is_none());
    }

    #[test]
    fn telemetry_has_the_fields_dashboards_read() {
        let mut d = DockState::new(SimDock::new("X", 1), 0);
        d.phase = 0.0;
        d.advance(30.0);
        assert!(d.flying);
        let dock = d.dock_osd();
        for key in [
            "mode_code",
            "latitude",
            "longitude",
            "height",
            "environment_temperature",
            "humidity",
            "wind_speed",
            "rainfall",
            "drone_in_dock",
            "cover_state",
        ] {
            assert!(dock["data"].get(key).is_some(), "dock osd lacks {key}");
        }
        assert_eq!(dock["data"]["cover_state"], 1);
        let drone = d.drone_osd();
        for key in ["latitude", "longitude", "height", "elevation", "attitude_head", "horizontal_speed", "mode_code"] {
            assert!(drone["data"].get(key).is_some(), "drone osd lacks {key}");
        }
        assert!(drone["data"]["battery"]["capacity_percent"].as_i64().unwrap() < 100);
        assert_eq!(drone["gateway"], "XDOCK0001");
        let topo = d.update_topo();
        assert_eq!(topo["data"]["sub_devices"][0]["sn"], "XUAV0001");
        assert_eq!((topo["data"]["domain"].as_i64(), topo["data"]["type"].as_i64()), (Some(3), Some(2)));
        let hms = d.hms();
        assert_eq!((hms["method"].as_str(), hms["need_reply"].as_i64()), (Some("hms"), Some(1)));
        assert!(hms["data"]["list"][0]["args"].get("sensor_index").is_some());
        assert_ne!(d.dock_osd()["tid"], dock["tid"]);
    }
}
