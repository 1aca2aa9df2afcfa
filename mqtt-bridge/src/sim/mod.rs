//! A fleet of simulated DJI Dock 2 gateways, each with its M3D aircraft, speaking the Cloud API
//! over MQTT: topology on connecting, dock and aircraft OSD at a steady rate, an HMS event now and
//! then, scripted replies to `services` and `property/set` followed by the progress events a real
//! dock sends, and, when given a binding code, the binding flow. Tests, demos and benchmarks use
//! it in place of hardware.
//!
//! Docks share MQTT connections (one per `docks_per_connection`, 100 by default) so that a
//! fleet of thousands does not open thousands of sockets, but every dock publishes and listens on
//! its own topics exactly as a real one would.
//!
//! Each aircraft flies a two-minute round every ten minutes (phase staggered per dock), so
//! telemetry changes the way a live dashboard expects: cover opens, the aircraft leaves the dock,
//! climbs, circles and comes back with less battery. [`FleetConfig::cycle_flights`] turns the
//! rounds off; a flight task's flight shows in the OSD either way.
//!
//! - this module: [`FleetConfig`], [`Fleet`], the connection loop and the driver that publishes.
//! - `telemetry`: a dock's state, its topology, OSD and HMS.
//! - `services`: [`Answer`]s to commands, progress events and state changes that follow them.
//! - `binding`: the `airport_bind_status` → `airport_organization_get` → `airport_organization_bind` flow.
//! - `flighttask`: flight tasks (wayline jobs): prepare, execute and its progress, pause, recovery,
//!   undo, conditional tasks' `flighttask_ready`, the wayline file's download and fingerprint.
//! - `media`: a flight's photos: `storage_config_get`, the S3 upload, `file_upload_callback`.
//!
//! A flight task runs like on a dock: `flighttask_prepare` (the dock downloads `file.url` and
//! checks its MD5 against `file.fingerprint`), `flighttask_execute`, then one
//! `flighttask_progress` per `progress_interval` (`bid` = flight id) up to `ok`, after which the
//! dock asks `storage_config_get` and uploads [`FleetConfig::media_per_flight`] photos, each
//! reported with `file_upload_callback`. Refusals use the codes [`TASK_NOT_PREPARED`],
//! [`OTHER_TASK_RUNNING`], [`NOTHING_TO_PAUSE`], [`NOTHING_TO_RECOVER`]; a flight whose file
//! cannot be used ends `failed` with [`WAYLINE_UNUSABLE`]. [`Fleet::flights`] says what happened
//! to each flight, and [`Fleet::set_flight_outcome`] / [`Fleet::queue_flight_outcome`] script how
//! flights end.
//!
//! Tests script answers per method ([`FleetConfig::answers`], [`Fleet::set_answer`]) and read what
//! each dock received ([`Fleet::received`]):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use mqtt_bridge::sim::{Answer, Fleet, FleetConfig};
//!
//! let fleet = Fleet::start(FleetConfig {
//!     sn_prefix: "T1A2B3C4".into(),
//!     answers: [("cover_open".to_string(), Answer::error(514301))].into(),
//!     ..Default::default()
//! })
//! .await?;
//! fleet.ready(Duration::from_secs(10)).await?;
//! fleet.set_answer("return_home", Answer::silent());
//! fleet.set_answer("drone_open", Answer::delayed(Duration::from_secs(2)));
//! // … the cloud side sends commands …
//! let covers = fleet.received().iter().filter(|c| c.method == "cover_open").count();
//! # let _ = covers;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing as MqttOutgoing, Packet, QoS, SubscribeFilter};
use serde_json::{json, Value};
use shared::protocol::{self, as_i64, Envelope, Topic, TopicKind};
use shared::Shutdown;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::mqtt::{self, Backoff, BrokerUrl};

mod binding;
mod drc;
mod flighttask;
mod logs;
mod media;
mod services;
mod telemetry;

use binding::Binding;
use flighttask::{End, FlightSettings, TaskCommand};
pub use flighttask::{
    FlightOutcome, PreparedTask, ReadyConditions, ResourceGet, NOTHING_TO_PAUSE, NOTHING_TO_RECOVER,
    OTHER_TASK_RUNNING, TASK_NOT_PREPARED, WAYLINE_UNUSABLE,
};
use media::{StorageConfig, UploadJob};
pub use services::{Answer, PROPERTY_SET};
use services::{Answers, CommandTopic};
use telemetry::DockState;

/// Received commands kept for [`Fleet::received`]: enough for any test, bounded for long runs.
const RECEIVED_KEPT: usize = 100_000;
/// How often docks look for binding requests that timed out or are due again.
const BINDING_CHECK: Duration = Duration::from_millis(250);
/// Flight records kept for [`Fleet::flights`].
const FLIGHTS_KEPT: usize = 10_000;
/// Longest wait for a wayline file's download.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Scripted answers. A `services` command is looked up by its method (`"cover_open"`); a
    /// `property/set` by the name of a property it sets (`"height_limit"`), then by
    /// [`PROPERTY_SET`] (`"property/set"`). Anything not listed gets `default_answer`.
    pub answers: HashMap<String, Answer>,
    /// Answer to methods without an entry in `answers` (default: result 0 at once).
    pub default_answer: Answer,
    /// Time between a command's progress events, a flight task's `flighttask_progress` included
    /// (default 200 ms).
    pub progress_interval: Duration,
    /// A workspace's binding code: each dock then runs the binding flow after every connection
    /// (§5.1–5.3). `None` (the default) never asks.
    pub binding_code: Option<String>,
    /// How long a dock waits for a `requests_reply` of the binding flow, and waits after a
    /// failed step before starting the flow again (default 10 s).
    pub binding_retry: Duration,
    /// In-progress `flighttask_progress` events of a flight before its terminal one, one per
    /// `progress_interval` (default 4: percent 0, 25, 50, 75, then 100).
    pub flight_steps: u32,
    /// Photos a flight takes; the `ok` progress says so in `ext.media_count` and the dock uploads
    /// them (default 2).
    pub media_per_flight: u32,
    /// How flights end unless [`Fleet::queue_flight_outcome`] said otherwise (default `Ok`).
    pub flight_outcome: FlightOutcome,
    /// When a dock asks `flighttask_resource_get` before flying (default: only when the prepared
    /// task had no `file.url`).
    pub resource_get: ResourceGet,
    /// How long a dock waits for the `requests_reply` of `flighttask_resource_get` (then the
    /// flight fails) and `storage_config_get` (then its photos are not uploaded); default 10 s.
    pub request_timeout: Duration,
    /// Whether each aircraft flies the automatic two-minute round every ten minutes (default
    /// true). Without it a dock is idle (mode 0, aircraft in the dock, battery full) except while
    /// a flight task flies.
    pub cycle_flights: bool,
    /// Whether a dock announces its topology (`update_topo`) after every connection (default
    /// true). Benchmarks that registered the docks with an earlier fleet turn it off, so that
    /// what they measure is OSD alone.
    pub announce_topology: bool,
    /// Adds `data.sim_sent_us`, the time the message was built (microseconds since 1970), to
    /// every OSD message, so that whoever receives it can tell its end-to-end delay (default
    /// false).
    pub osd_send_time: bool,
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
            answers: HashMap::new(),
            default_answer: Answer::default(),
            progress_interval: Duration::from_millis(200),
            binding_code: None,
            binding_retry: Duration::from_secs(10),
            flight_steps: 4,
            media_per_flight: 2,
            flight_outcome: FlightOutcome::Ok,
            resource_get: ResourceGet::WhenNoUrl,
            request_timeout: Duration::from_secs(10),
            cycle_flights: true,
            announce_topology: true,
            osd_send_time: false,
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

/// A `services` or `property/set` message as a dock received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedCommand {
    pub dock_sn: String,
    /// The full MQTT topic.
    pub topic: String,
    /// Empty when the command had none (or not a string).
    pub tid: String,
    /// Empty when the command had none (or not a string).
    pub bid: String,
    /// The envelope's `method`; `"property/set"` for a property set (which carries none).
    pub method: String,
    pub data: Value,
    /// When the dock got it.
    pub at: Instant,
}

/// What happened to one flight task on one dock ([`Fleet::flights`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FlightRecord {
    pub flight_id: String,
    pub dock_sn: String,
    /// The last `flighttask_prepare` the dock accepted for it.
    pub task: PreparedTask,
    pub prepared_at: Instant,
    /// Whether the downloaded wayline file's MD5 matched `file.fingerprint`; `None` until a
    /// download finished.
    pub file_matched: Option<bool>,
    /// Why the wayline file cannot be used: download error, fingerprint mismatch,
    /// `flighttask_resource_get` refused or unanswered.
    pub file_error: Option<String>,
    /// Whether the dock asked `flighttask_resource_get` for this flight.
    pub resource_requested: bool,
    /// When the dock sent `flighttask_ready` (conditional tasks).
    pub ready_at: Option<Instant>,
    /// When the accepted `flighttask_execute` arrived.
    pub executed_at: Option<Instant>,
    pub status: FlightStatus,
    /// `ext.media_count` of the terminal progress.
    pub media_count: u32,
    /// Photos uploaded to the storage.
    pub media_uploaded: u32,
    /// Photos reported with `file_upload_callback` (after their upload).
    pub media_reported: u32,
    /// Photos given up on: `storage_config_get` refused or unanswered, or the upload failed.
    pub media_failed: u32,
}

impl FlightRecord {
    fn prepared(dock_sn: &str, task: PreparedTask, at: Instant) -> Self {
        Self {
            flight_id: task.flight_id.clone(),
            dock_sn: dock_sn.to_string(),
            task,
            prepared_at: at,
            file_matched: None,
            file_error: None,
            resource_requested: false,
            ready_at: None,
            executed_at: None,
            status: FlightStatus::Prepared,
            media_count: 0,
            media_uploaded: 0,
            media_reported: 0,
            media_failed: 0,
        }
    }

    /// The flight ended and every photo was either reported or given up on.
    pub fn settled(&self) -> bool {
        self.status.is_terminal() && self.media_reported + self.media_failed >= self.media_count
    }
}

/// Where a flight task stands, as the dock last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightStatus {
    /// Prepared, not executed.
    Prepared,
    /// Forgotten by `flighttask_undo` before it flew.
    Undone,
    /// Executed and not finished (possibly still waiting for its wayline file).
    InProgress,
    Paused,
    /// Ended `ok`.
    Ok,
    /// Ended `failed` with this `data.result`.
    Failed(i64),
}

impl FlightStatus {
    /// `Ok` or `Failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ok | Self::Failed(_))
    }
}

/// Messages the fleet handed to the broker, and commands it received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// `update_topo` on `sys/product/<dock>/status`.
    pub topo: u64,
    /// `state` messages a dock sends when it connects (its `live_capacity`).
    pub states: u64,
    /// OSD messages (dock and aircraft).
    pub osd: u64,
    /// HMS events.
    pub hms: u64,
    /// `services` and `property/set` received.
    pub commands: u64,
    /// `services_reply` and `property/set_reply` sent.
    pub replies: u64,
    /// Messages that follow an accepted command: progress events, and `state` for authority grabs.
    pub events: u64,
    /// `requests` sent (the binding flow).
    pub requests: u64,
    /// `requests_reply` and `events_reply` received.
    pub acks_received: u64,
    /// Publishes that could not be queued (the connection's task had stopped).
    pub errors: u64,
    /// QoS 1 publishes the broker acknowledged (PubAck): what it took responsibility for. A
    /// publish counted above but not here was still queued in the simulator when it stopped.
    pub acked: u64,
    /// Photos uploaded to object storage after a flight.
    pub uploads: u64,
    /// Photos not uploaded: `storage_config_get` refused or unanswered, or the upload failed.
    pub upload_errors: u64,
}

impl SimStats {
    /// Everything published.
    pub fn sent(&self) -> u64 {
        self.topo + self.states + self.osd + self.hms + self.replies + self.events + self.requests
    }
}

#[derive(Default)]
struct Counters {
    topo: AtomicU64,
    states: AtomicU64,
    osd: AtomicU64,
    hms: AtomicU64,
    commands: AtomicU64,
    replies: AtomicU64,
    events: AtomicU64,
    requests: AtomicU64,
    acks_received: AtomicU64,
    errors: AtomicU64,
    acked: AtomicU64,
    uploads: AtomicU64,
    upload_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            topo: get(&self.topo),
            states: get(&self.states),
            osd: get(&self.osd),
            hms: get(&self.hms),
            commands: get(&self.commands),
            replies: get(&self.replies),
            events: get(&self.events),
            requests: get(&self.requests),
            acks_received: get(&self.acks_received),
            errors: get(&self.errors),
            acked: get(&self.acked),
            uploads: get(&self.uploads),
            upload_errors: get(&self.upload_errors),
        }
    }

    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn of(&self, kind: Kind) -> &AtomicU64 {
        match kind {
            Kind::Topo => &self.topo,
            Kind::State => &self.states,
            Kind::Osd => &self.osd,
            Kind::Hms => &self.hms,
            Kind::Reply => &self.replies,
            Kind::Event => &self.events,
            Kind::Request => &self.requests,
        }
    }
}

/// State the fleet's handle and every driver share: scripted answers and flight outcomes
/// (changed while running), received commands, flight records, the number of bound docks. Locks
/// are held only to copy in or out, never across an await.
#[derive(Default)]
struct Shared {
    answers: RwLock<Answers>,
    received: Mutex<VecDeque<ReceivedCommand>>,
    flights: Mutex<VecDeque<FlightRecord>>,
    outcomes: Mutex<Outcomes>,
    bound: AtomicUsize,
}

/// How the next flights end: the queued outcomes first, one per flight, then the standing one.
#[derive(Debug, Default)]
struct Outcomes {
    standing: FlightOutcome,
    queued: VecDeque<FlightOutcome>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the data itself intact.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn answers(&self) -> std::sync::RwLockReadGuard<'_, Answers> {
        // A panic elsewhere while holding the lock leaves the map itself intact.
        self.answers.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn answers_mut(&self) -> std::sync::RwLockWriteGuard<'_, Answers> {
        self.answers.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, command: ReceivedCommand) {
        let mut received = lock(&self.received);
        if received.len() >= RECEIVED_KEPT {
            received.pop_front();
        }
        received.push_back(command);
    }

    /// A flight prepared (again): a prepare for a flight id the dock knows starts its record over.
    fn record_flight(&self, record: FlightRecord) {
        let mut flights = lock(&self.flights);
        if let Some(r) =
            flights.iter_mut().rev().find(|r| r.flight_id == record.flight_id && r.dock_sn == record.dock_sn)
        {
            *r = record;
            return;
        }
        if flights.len() >= FLIGHTS_KEPT {
            flights.pop_front();
        }
        flights.push_back(record);
    }

    fn update_flight(&self, dock_sn: &str, flight_id: &str, change: impl FnOnce(&mut FlightRecord)) {
        let mut flights = lock(&self.flights);
        if let Some(r) = flights.iter_mut().rev().find(|r| r.flight_id == flight_id && r.dock_sn == dock_sn) {
            change(r);
        }
    }

    fn next_outcome(&self) -> FlightOutcome {
        let mut outcomes = lock(&self.outcomes);
        outcomes.queued.pop_front().unwrap_or(outcomes.standing)
    }
}

/// A running fleet. Dropping it stops every connection at once; [`Fleet::stop`] stops them
/// cleanly.
pub struct Fleet {
    docks: Vec<SimDock>,
    counters: Arc<Counters>,
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            answers: RwLock::new(Answers { by_method: config.answers.clone(), default: config.default_answer.clone() }),
            outcomes: Mutex::new(Outcomes { standing: config.flight_outcome, queued: VecDeque::new() }),
            ..Shared::default()
        });
        // Redirects are followed (up to 10): download links of object stores often are one.
        let http = reqwest::Client::builder()
            .timeout(DOWNLOAD_TIMEOUT)
            .build()
            .context("HTTP client for wayline downloads")?;
        let stop = Shutdown::new();
        let mut tasks = JoinSet::new();
        let mut subscribed = Vec::new();
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        for (k, group) in docks.chunks(per_connection).enumerate() {
            let client_id = format!("{}sim{k}-{}", config.sn_prefix, &run_id[..8]);
            let mut options = mqtt::options(&url, &client_id, Duration::from_secs(30), true, None);
            options.set_inflight(200);
            let (client, eventloop) = mqtt::client(options, 1024);
            let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
            let (connected_tx, connected_rx) = watch::channel(0u64);
            let (subscribed_tx, subscribed_rx) = watch::channel(false);
            subscribed.push(subscribed_rx);
            let filters: Vec<String> = group
                .iter()
                .flat_map(|d| {
                    ["services", "requests_reply", "property/set", "events_reply"]
                        .map(|t| protocol::thing_topic(&d.dock_sn, t))
                })
                .collect();
            tasks.spawn(connection_loop(
                eventloop,
                client.clone(),
                filters,
                inbox_tx,
                connected_tx,
                subscribed_tx,
                counters.clone(),
                stop.clone(),
            ));
            let first_index = k * per_connection;
            let (news_tx, news_rx) = mpsc::unbounded_channel();
            let driver = Driver {
                docks: group
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let mut dock = DockState::new(d.clone(), first_index + i);
                        dock.cycle_flights = config.cycle_flights;
                        dock
                    })
                    .collect(),
                bindings: match &config.binding_code {
                    Some(code) => group.iter().map(|_| Binding::new(code.clone(), config.binding_retry)).collect(),
                    None => Vec::new(),
                },
                by_sn: group.iter().enumerate().map(|(i, d)| (d.dock_sn.clone(), i)).collect(),
                config: config.clone(),
                out: Publisher { client, counters: counters.clone() },
                shared: shared.clone(),
                stop: stop.clone(),
                pending: JoinSet::new(),
                cursor: 0,
                http: http.clone(),
                news: news_tx,
                awaiting: HashMap::new(),
                task_work: false,
                log_uploads: HashMap::new(),
                drc_links: HashMap::new(),
            };
            tasks.spawn(driver.run(inbox_rx, connected_rx, news_rx));
        }
        Ok(Self { docks, counters, shared, subscribed, tasks, stop })
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

    /// Scripts how every dock answers `method` from now on (see [`FleetConfig::answers`] for the
    /// keys); commands already received keep the answer they got.
    pub fn set_answer(&self, method: &str, answer: Answer) {
        self.shared.answers_mut().by_method.insert(method.to_string(), answer);
    }

    /// Scripts the answer to every method without an entry of its own.
    pub fn set_default_answer(&self, answer: Answer) {
        self.shared.answers_mut().default = answer;
    }

    /// Every `services` and `property/set` received so far (the last 100,000), in arrival order
    /// per connection, redeliveries included.
    pub fn received(&self) -> Vec<ReceivedCommand> {
        lock(&self.shared.received).iter().cloned().collect()
    }

    /// Every flight task prepared so far (the last 10,000), in the order first prepared: what
    /// the dock made of it, its wayline file, its status, its photos.
    pub fn flights(&self) -> Vec<FlightRecord> {
        lock(&self.shared.flights).iter().cloned().collect()
    }

    /// The record of `flight_id` (the latest, should two docks have had one).
    pub fn flight(&self, flight_id: &str) -> Option<FlightRecord> {
        lock(&self.shared.flights).iter().rev().find(|r| r.flight_id == flight_id).cloned()
    }

    /// Waits until the record of `flight_id` satisfies `until` (e.g. [`FlightRecord::settled`])
    /// and returns it.
    pub async fn wait_for_flight(
        &self,
        flight_id: &str,
        timeout: Duration,
        until: impl Fn(&FlightRecord) -> bool,
    ) -> anyhow::Result<FlightRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let record = self.flight(flight_id);
            match record {
                Some(r) if until(&r) => return Ok(r),
                _ if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("flight {flight_id} did not get there in {timeout:?}; last seen: {record:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Scripts how every later flight ends (after the queued outcomes).
    pub fn set_flight_outcome(&self, outcome: FlightOutcome) {
        lock(&self.shared.outcomes).standing = outcome;
    }

    /// Scripts how the next flight to start (on any dock) ends; queued calls apply to the
    /// following flights in order.
    pub fn queue_flight_outcome(&self, outcome: FlightOutcome) {
        lock(&self.shared.outcomes).queued.push_back(outcome);
    }

    /// Docks whose last binding answer said they and their aircraft are bound: either
    /// `airport_bind_status` said both already were, or `airport_organization_bind` succeeded for
    /// both (every `err_code` 0). Always 0 without a binding code.
    pub fn bound(&self) -> usize {
        self.shared.bound.load(Ordering::Relaxed)
    }

    /// Stops publishing, disconnects every connection and returns the final counters.
    pub async fn stop(mut self) -> SimStats {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.counters.snapshot()
    }
}

/// Polls one connection: subscribes on every ConnAck, passes commands and `requests_reply` to the
/// driver, reconnects
/// with backoff. Never waits on anything but the network, so it never stalls the connection.
#[allow(clippy::too_many_arguments)]
async fn connection_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    inbox: mpsc::UnboundedSender<(String, bytes::Bytes)>,
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
            Ok(Event::Incoming(Packet::PubAck(_))) => Counters::add(&counters.acked),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic.ends_with("/services") || p.topic.ends_with("/property/set") {
                    Counters::add(&counters.commands);
                    let _ = inbox.send((p.topic, p.payload));
                } else if p.topic.ends_with("/requests_reply") {
                    // The binding flow waits for it; the driver handles it off this loop.
                    Counters::add(&counters.acks_received);
                    let _ = inbox.send((p.topic, p.payload));
                } else {
                    Counters::add(&counters.acks_received);
                }
            }
            // Acks of the last publishes may still be on their way: read until the broker closes
            // the connection (within the deadline).
            Ok(Event::Outgoing(MqttOutgoing::Disconnect)) if deadline.is_none() => break,
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

/// Which counter a published message adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Topo,
    State,
    Osd,
    Hms,
    Reply,
    Event,
    Request,
}

/// A message a dock publishes with QoS 1, built when it is sent so that its timestamp is the time
/// it left.
#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// `services_reply`, `property/set_reply`: the command's `tid` and `bid`.
    Reply { tid: String, bid: String, method: Option<String>, data: Value },
    /// `events`, `state`, `requests`: from the gateway, with a `tid` of its own.
    Up { tid: String, bid: String, gateway: String, method: Option<String>, need_reply: bool, data: Value },
}

impl Body {
    fn encode(&self) -> Vec<u8> {
        match self {
            Body::Reply { tid, bid, method, data } => protocol::reply(tid, bid, method.as_deref(), data),
            Body::Up { tid, bid, gateway, method, need_reply, data } => {
                let mut v = json!({"tid": tid, "bid": bid, "timestamp": now_ms(), "gateway": gateway, "data": data});
                if let Some(m) = method {
                    v["method"] = json!(m);
                }
                if *need_reply {
                    v["need_reply"] = json!(1);
                }
                v.to_string().into_bytes()
            }
        }
    }
}

/// One message due `after` the previous one of its plan (or after the command, for the first).
#[derive(Debug, Clone, PartialEq)]
struct Message {
    after: Duration,
    topic: String,
    kind: Kind,
    body: Body,
}

impl Message {
    /// An event of dock `sn` (`need_reply` 1, a `tid` of its own).
    fn event(after: Duration, sn: &str, bid: &str, method: &str, data: Value) -> Self {
        Self {
            after,
            topic: protocol::thing_topic(sn, "events"),
            kind: Kind::Event,
            body: Body::Up {
                tid: tid(),
                bid: bid.to_string(),
                gateway: sn.to_string(),
                method: Some(method.to_string()),
                need_reply: true,
                data,
            },
        }
    }

    /// A request of dock `sn`, due now, and its `tid`, by which its `requests_reply` is known.
    fn request(sn: &str, method: &str, data: Value) -> (String, Self) {
        let t = tid();
        let body = Body::Up {
            tid: t.clone(),
            bid: tid(),
            gateway: sn.to_string(),
            method: Some(method.to_string()),
            need_reply: false,
            data,
        };
        (t, Self { after: Duration::ZERO, topic: protocol::thing_topic(sn, "requests"), kind: Kind::Request, body })
    }
}

/// What background work of a dock (a download) found, back to its driver.
#[derive(Debug)]
enum News {
    FileChecked {
        dock: usize,
        flight_id: String,
        generation: u64,
        outcome: Result<(), String>,
    },
    /// The workspace's flight areas downloaded and checked against their sha256: the file's
    /// `{name, checksum}`, or why not.
    FlightAreasChecked {
        dock: usize,
        outcome: Result<Value, String>,
    },
}

/// A request of a dock's flight that waits for its `requests_reply`.
#[derive(Debug)]
struct Awaited {
    dock: usize,
    flight_id: String,
    asked: Asked,
    until: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Asked {
    /// `flighttask_resource_get`: the wayline file's URL.
    Resource,
    /// `storage_config_get`, to upload this many photos.
    Storage { photos: u32 },
    /// `flight_areas_get`, after the cloud's `flight_areas_update`.
    FlightAreas,
}

impl Asked {
    fn method(self) -> &'static str {
        match self {
            Asked::Resource => "flighttask_resource_get",
            Asked::Storage { .. } => "storage_config_get",
            Asked::FlightAreas => "flight_areas_get",
        }
    }
}

/// Queues publishes on one connection and counts them.
#[derive(Clone)]
struct Publisher {
    client: AsyncClient,
    counters: Arc<Counters>,
}

impl Publisher {
    async fn publish(&self, kind: Kind, topic: String, qos: QoS, payload: Vec<u8>) {
        Counters::add(self.counters.of(kind));
        if self.client.publish(topic, qos, false, payload).await.is_err() {
            Counters::add(&self.counters.errors);
        }
    }

    async fn send(&self, m: Message) {
        self.publish(m.kind, m.topic, QoS::AtLeastOnce, m.body.encode()).await;
    }
}

/// Publishes the traffic of one connection's docks and answers their commands.
struct Driver {
    config: FleetConfig,
    out: Publisher,
    docks: Vec<DockState>,
    /// One per dock when the fleet has a binding code, else empty.
    bindings: Vec<Binding>,
    /// Dock index by dock serial number, to route what arrives on a dock's topics.
    by_sn: HashMap<String, usize>,
    shared: Arc<Shared>,
    stop: Shutdown,
    /// Delayed replies and progress events waiting for their time: they must not hold up the
    /// other docks' OSD or answers.
    pending: JoinSet<()>,
    /// Next dock to publish OSD for.
    cursor: usize,
    /// Downloads wayline files.
    http: reqwest::Client,
    /// Where downloads report back.
    news: mpsc::UnboundedSender<News>,
    /// Flight requests waiting for their `requests_reply`, by `tid`.
    awaiting: HashMap<String, Awaited>,
    /// Some dock has a flight, a conditional task or a request to look after.
    task_work: bool,
    /// Log uploads under way, by dock index: what a cancel reports, and the task to stop.
    log_uploads: HashMap<usize, (logs::LogUpload, tokio::task::AbortHandle)>,
    /// DRC links, by dock index.
    drc_links: HashMap<usize, tokio::task::AbortHandle>,
}

impl Driver {
    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
        mut connected: watch::Receiver<u64>,
        mut news: mpsc::UnboundedReceiver<News>,
    ) {
        // Spread the docks' OSD evenly over each period instead of bursting them all at once.
        let period = 1.0 / self.config.osd_hz;
        let count = self.docks.len();
        let tick = Duration::from_secs_f64((period / count.max(1) as f64).max(0.002));
        // Docks due per second of being online. What is due follows the clock, not the ticks: a
        // busy machine delays ticks, and a fleet that skipped them would offer less than asked.
        let per_second = count as f64 / period;
        let hms_probability =
            self.config.hms_every.map_or(0.0, |every| (period / every.as_secs_f64().max(1e-3)).min(1.0));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut binding_check = tokio::time::interval(BINDING_CHECK);
        binding_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Flights step once per progress interval: look a few times per interval.
        let flight_period =
            (self.config.progress_interval / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let mut flight_check = tokio::time::interval(flight_period);
        flight_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due = 0.0f64;
        let started = Instant::now();
        let mut last_tick: Option<Instant> = None;

        loop {
            let online = *connected.borrow() > 0;
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                changed = connected.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // A dock announces its topology on every (re)connection, just before its next
                    // OSD: spread like the OSD, not a burst of thousands at once that a broker's
                    // queue limit for the bridge would cut.
                    for d in &mut self.docks {
                        d.announce = self.config.announce_topology;
                    }
                }
                Some((topic, payload)) = inbox.recv() => self.on_message(&topic, &payload).await,
                Some(_) = self.pending.join_next(), if !self.pending.is_empty() => {}
                Some(n) = news.recv() => self.on_news(n).await,
                _ = flight_check.tick(), if online && self.task_work => self.poll_tasks().await,
                _ = binding_check.tick(), if online && !self.bindings.is_empty() => self.check_bindings().await,
                _ = ticker.tick(), if online => {
                    let now = Instant::now();
                    // after a stall (or time offline) at most one period is caught up at once
                    let since = last_tick.map_or(tick, |at| now - at);
                    last_tick = Some(now);
                    due = (due + since.as_secs_f64() * per_second).min(count as f64);
                    let t = started.elapsed().as_secs_f64();
                    while due >= 1.0 {
                        due -= 1.0;
                        self.publish_next(t, hms_probability).await;
                    }
                }
            }
        }
        self.pending.abort_all();
        while self.pending.join_next().await.is_some() {}
        let _ = self.out.client.disconnect().await;
    }

    /// The next dock's OSD, preceded by its topology (and binding check) after a connection.
    async fn publish_next(&mut self, t: f64, hms_probability: f64) {
        let i = self.cursor;
        self.cursor = (i + 1) % self.docks.len();
        let d = &mut self.docks[i];
        d.advance(t);
        let out = &self.out;
        if std::mem::take(&mut d.announce) {
            let topic = format!("sys/product/{}/status", d.ids.dock_sn);
            out.publish(Kind::Topo, topic, QoS::AtLeastOnce, d.update_topo().to_string().into_bytes()).await;
            let state = protocol::thing_topic(&d.ids.dock_sn, "state");
            out.publish(Kind::State, state, QoS::AtLeastOnce, d.live_capacity().to_string().into_bytes()).await;
            // A real dock checks its binding once it has told the cloud who it is.
            if let Some(b) = self.bindings.get_mut(i) {
                out.send(b.start(&d.ids, Instant::now())).await;
            }
        }
        let qos = self.config.osd_qos;
        let stamp = |mut osd: Value| {
            if self.config.osd_send_time {
                osd["data"]["sim_sent_us"] = json!(chrono::Utc::now().timestamp_micros());
            }
            osd.to_string().into_bytes()
        };
        out.publish(Kind::Osd, protocol::thing_topic(&d.ids.dock_sn, "osd"), qos, stamp(d.dock_osd())).await;
        out.publish(Kind::Osd, protocol::thing_topic(&d.ids.drone_sn, "osd"), qos, stamp(d.drone_osd())).await;
        if hms_probability > 0.0 && rand::thread_rng().gen_bool(hms_probability) {
            let topic = protocol::thing_topic(&d.ids.dock_sn, "events");
            out.publish(Kind::Hms, topic, QoS::AtLeastOnce, d.hms().to_string().into_bytes()).await;
        }
    }

    /// A message on one of the docks' topics.
    async fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let Some(Topic { sn, kind }) = Topic::parse(topic) else { return };
        let Some(&i) = self.by_sn.get(&sn) else { return };
        let command_topic = match kind {
            TopicKind::Services => CommandTopic::Services,
            TopicKind::PropertySet => CommandTopic::PropertySet,
            TopicKind::Other(k) if k == "thing/requests_reply" => return self.on_requests_reply(i, payload).await,
            _ => return,
        };
        // A payload that is not a JSON object cannot be answered: a real dock drops it too.
        let Some(command) = Envelope::parse(payload) else { return };
        self.shared.record(ReceivedCommand {
            dock_sn: sn,
            topic: topic.to_string(),
            tid: command.tid.clone(),
            bid: command.bid.clone(),
            method: match command_topic {
                CommandTopic::Services => command.method.clone(),
                CommandTopic::PropertySet => PROPERTY_SET.to_string(),
            },
            data: command.data.clone(),
            at: Instant::now(),
        });
        let plan = services::plan(
            &self.docks[i],
            command_topic,
            &command,
            &self.shared.answers(),
            self.config.progress_interval,
        );
        if let Some(effect) = plan.effect {
            effect.apply(&mut self.docks[i]);
        }
        let start_at = Instant::now() + plan.reply_delay;
        let replied = !plan.messages.is_empty();
        self.send(plan.messages).await;
        // A dock told that the flight areas changed fetches them (if it accepted).
        let accepted = replied && {
            let answers = self.shared.answers();
            answers.for_service(&command.method).result == 0
        };
        if command_topic == CommandTopic::Services && command.method == "flight_areas_update" && accepted {
            self.ask(i, String::new(), Asked::FlightAreas).await;
        }
        if command_topic == CommandTopic::Services && accepted {
            self.on_logs_command(i, &command).await;
        }
        if let Some(task) = plan.task {
            self.on_task(i, task, start_at).await;
        }
    }

    /// `fileupload_start` (upload the logs, reporting progress) and `fileupload_update` (cancel the
    /// upload under way), `drc_mode_enter` (join the DRC broker) and `drc_mode_exit`, once the dock
    /// accepted them.
    async fn on_logs_command(&mut self, i: usize, command: &Envelope) {
        self.log_uploads.retain(|_, (_, task)| !task.is_finished());
        match command.method.as_str() {
            "fileupload_start" => {
                let sn = self.docks[i].ids.dock_sn.clone();
                match logs::LogUpload::parse(&sn, &command.bid, &command.data) {
                    Ok(job) => {
                        if let Some((_, earlier)) = self.log_uploads.remove(&i) {
                            earlier.abort();
                        }
                        let task = self.pending.spawn(logs::upload(
                            job.clone(),
                            self.out.clone(),
                            self.config.progress_interval,
                        ));
                        self.log_uploads.insert(i, (job, task));
                    }
                    Err(e) => tracing::warn!(error = %e, dock = %sn, "simulated dock cannot upload its logs"),
                }
            }
            "drc_mode_enter" => {
                if let Some(earlier) = self.drc_links.remove(&i) {
                    earlier.abort();
                }
                let d = &self.docks[i];
                match drc::DrcLink::parse(&d.ids.dock_sn, &command.data, d.lat, d.lon) {
                    Ok(link) => {
                        let task = self.pending.spawn(drc::run(link));
                        self.drc_links.insert(i, task);
                        self.docks[i].drc_state = 2;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, dock = %d.ids.dock_sn, "simulated dock cannot join the DRC broker")
                    }
                }
            }
            "drc_mode_exit" => {
                if let Some(link) = self.drc_links.remove(&i) {
                    link.abort();
                }
                self.docks[i].drc_state = 0;
            }
            "fileupload_update" if command.data.get("status").and_then(Value::as_str) == Some("cancel") => {
                if let Some((job, task)) = self.log_uploads.remove(&i) {
                    task.abort();
                    self.out.send(logs::canceled(&job)).await;
                }
            }
            _ => {}
        }
    }

    /// A flight-task command the dock accepted; a flight's first progress is due at `start_at`.
    async fn on_task(&mut self, i: usize, task: TaskCommand, start_at: Instant) {
        let now = Instant::now();
        let sn = self.docks[i].ids.dock_sn.clone();
        self.task_work = true;
        match task {
            TaskCommand::Prepare(task) => {
                self.shared.record_flight(FlightRecord::prepared(&sn, task.clone(), now));
                if let Some(generation) = self.docks[i].tasks.prepare(task.clone(), now) {
                    self.download(i, task.flight_id, generation, task.url, task.fingerprint);
                }
            }
            TaskCommand::Execute(id) => {
                let settings = FlightSettings {
                    steps: self.config.flight_steps,
                    interval: self.config.progress_interval,
                    media: self.config.media_per_flight,
                    resource_get: self.config.resource_get,
                };
                let outcome = self.shared.next_outcome();
                let Some(ask) = self.docks[i].tasks.execute(&id, start_at, settings, outcome) else { return };
                self.shared.update_flight(&sn, &id, |r| {
                    r.executed_at = Some(now);
                    r.status = FlightStatus::InProgress;
                    r.resource_requested = ask;
                });
                if ask {
                    self.ask(i, id, Asked::Resource).await;
                }
            }
            TaskCommand::Pause | TaskCommand::Recover => {
                let pause = task == TaskCommand::Pause;
                let tasks = &mut self.docks[i].tasks;
                if pause {
                    tasks.pause();
                } else {
                    tasks.recover(now);
                }
                if let Some(id) = tasks.flight_id() {
                    let status = if pause { FlightStatus::Paused } else { FlightStatus::InProgress };
                    self.shared.update_flight(&sn, id, |r| r.status = status);
                }
            }
            TaskCommand::Undo(ids) => {
                for id in self.docks[i].tasks.undo(&ids) {
                    self.shared.update_flight(&sn, &id, |r| r.status = FlightStatus::Undone);
                }
            }
        }
    }

    /// Downloads a wayline file off the loop; the outcome comes back as [`News::FileChecked`].
    fn download(&mut self, dock: usize, flight_id: String, generation: u64, url: String, fingerprint: String) {
        let (http, news) = (self.http.clone(), self.news.clone());
        self.pending.spawn(async move {
            let outcome = flighttask::fetch_wayline(&http, &url, &fingerprint).await;
            let _ = news.send(News::FileChecked { dock, flight_id, generation, outcome });
        });
    }

    async fn on_news(&mut self, news: News) {
        match news {
            News::FlightAreasChecked { dock, outcome } => match outcome {
                Ok(file) => self.flight_areas_progress(dock, "synchronized", 0, file).await,
                Err(e) => {
                    tracing::info!(error = %e, dock, "simulated dock rejects its flight areas");
                    self.flight_areas_progress(dock, "fail", FLIGHT_AREAS_UNAVAILABLE, Value::Null).await;
                }
            },
            News::FileChecked { dock, flight_id, generation, outcome } => {
                let Some(d) = self.docks.get_mut(dock) else { return };
                if !d.tasks.file_checked(&flight_id, generation, &outcome) {
                    return;
                }
                if let Err(e) = &outcome {
                    tracing::info!(error = %e, %flight_id, dock = %d.ids.dock_sn, "simulated dock cannot use its wayline file");
                }
                self.shared.update_flight(&d.ids.dock_sn, &flight_id, |r| {
                    r.file_matched = Some(outcome.is_ok());
                    r.file_error = outcome.err();
                });
                self.task_work = true;
            }
        }
    }

    /// Sends a flight's request and waits for its reply (or [`FleetConfig::request_timeout`]).
    async fn ask(&mut self, dock: usize, flight_id: String, asked: Asked) {
        let data = match asked {
            Asked::Resource => json!({"flight_id": flight_id}),
            Asked::Storage { .. } => json!({"module": 0}),
            Asked::FlightAreas => json!({}),
        };
        let (tid, m) = Message::request(&self.docks[dock].ids.dock_sn, asked.method(), data);
        let until = Instant::now() + self.config.request_timeout;
        self.awaiting.insert(tid, Awaited { dock, flight_id, asked, until });
        self.task_work = true;
        self.out.send(m).await;
    }

    /// The answer to a flight's request: the reply's `output` when its result is 0, else why not.
    async fn on_answer(&mut self, a: Awaited, answer: Result<Value, String>) {
        let Awaited { dock, flight_id, asked, .. } = a;
        let ids = self.docks[dock].ids.clone();
        match asked {
            Asked::Resource => {
                let answer = answer.map(|output| {
                    let file = |k: &str| {
                        output.pointer(&format!("/file/{k}")).and_then(Value::as_str).unwrap_or_default().to_string()
                    };
                    (file("url"), file("fingerprint"))
                });
                if let Err(e) = &answer {
                    self.shared.update_flight(&ids.dock_sn, &flight_id, |r| r.file_error = Some(e.clone()));
                }
                if let Some((generation, url, fingerprint)) =
                    self.docks[dock].tasks.resource_answered(&flight_id, answer)
                {
                    self.download(dock, flight_id, generation, url, fingerprint);
                }
            }
            Asked::Storage { photos } => match answer.and_then(|output| StorageConfig::parse(&output)) {
                Ok(storage) => {
                    let d = &self.docks[dock];
                    let job = UploadJob { ids, flight_id, count: photos, storage, lat: d.lat, lon: d.lon };
                    self.pending.spawn(media::upload(job, self.out.clone(), self.shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, %flight_id, dock = %ids.dock_sn, "simulated dock gets no storage for its photos");
                    media::fail(&self.out.counters, &self.shared, &ids, &flight_id, photos);
                }
            },
            Asked::FlightAreas => {
                let file = answer.and_then(|output| {
                    output.pointer("/files/0").cloned().ok_or_else(|| "flight_areas_get listed no file".to_string())
                });
                match file {
                    Ok(file) => {
                        self.flight_areas_progress(dock, "synchronizing", 0, Value::Null).await;
                        let (http, news) = (self.http.clone(), self.news.clone());
                        self.pending.spawn(async move {
                            let outcome = fetch_flight_areas(&http, &file).await;
                            let _ = news.send(News::FlightAreasChecked { dock, outcome });
                        });
                    }
                    Err(e) => {
                        tracing::info!(error = %e, dock = %ids.dock_sn, "simulated dock cannot fetch its flight areas");
                        self.flight_areas_progress(dock, "fail", FLIGHT_AREAS_UNAVAILABLE, Value::Null).await;
                    }
                }
            }
        }
    }

    /// `flight_areas_sync_progress` of a dock.
    async fn flight_areas_progress(&mut self, dock: usize, status: &str, reason: i64, file: Value) {
        let sn = self.docks[dock].ids.dock_sn.clone();
        let data = json!({"status": status, "reason": reason, "file": file});
        self.out.send(Message::event(Duration::ZERO, &sn, &tid(), "flight_areas_sync_progress", data)).await;
    }

    /// Sends what flight tasks have due: ready events, progress, requests that timed out.
    async fn poll_tasks(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> =
            self.awaiting.iter().filter(|(_, a)| now >= a.until).map(|(t, _)| t.clone()).collect();
        for t in expired {
            if let Some(a) = self.awaiting.remove(&t) {
                let why = format!("no answer to {} in {:?}", a.asked.method(), self.config.request_timeout);
                self.on_answer(a, Err(why)).await;
            }
        }
        let now_ms = now_ms();
        for i in 0..self.docks.len() {
            if !self.docks[i].tasks.busy() {
                continue;
            }
            let battery = self.docks[i].battery_percent();
            let polled = self.docks[i].tasks.poll(now, now_ms, battery);
            let sn = self.docks[i].ids.dock_sn.clone();
            for id in polled.ready {
                let data = json!({"flight_ids": [id]});
                self.out.send(Message::event(Duration::ZERO, &sn, &tid(), "flighttask_ready", data)).await;
                self.shared.update_flight(&sn, &id, |r| r.ready_at = Some(now));
            }
            for p in polled.progress {
                let id = p.flight_id.clone();
                self.out.send(Message::event(Duration::ZERO, &sn, &p.flight_id, "flighttask_progress", p.data)).await;
                let status = match p.end {
                    None => FlightStatus::InProgress,
                    Some(End::Ok { .. }) => FlightStatus::Ok,
                    Some(End::Failed(code)) => FlightStatus::Failed(code),
                };
                let media = match p.end {
                    Some(End::Ok { media }) => media,
                    _ => 0,
                };
                self.shared.update_flight(&sn, &id, |r| {
                    r.status = status;
                    r.media_count = media;
                });
                if media > 0 {
                    self.ask(i, id, Asked::Storage { photos: media }).await;
                }
            }
        }
        self.task_work = !self.awaiting.is_empty() || self.docks.iter().any(|d| d.tasks.busy());
    }

    async fn on_requests_reply(&mut self, i: usize, payload: &[u8]) {
        let Some(reply) = Envelope::parse(payload) else { return };
        if let Some(a) = self.awaiting.remove(&reply.tid) {
            if a.dock != i {
                // Someone answered another dock's request on this dock's topic: not ours.
                self.awaiting.insert(reply.tid, a);
                return;
            }
            let answer = match reply.data.get("result").and_then(as_i64) {
                Some(0) => Ok(reply.data.get("output").cloned().unwrap_or(Value::Null)),
                other => Err(format!("{} answered with result {other:?}", a.asked.method())),
            };
            return self.on_answer(a, answer).await;
        }
        let Some(binding) = self.bindings.get_mut(i) else { return };
        let was_bound = binding.is_bound();
        let next = binding.on_reply(&self.docks[i].ids, &reply.tid, &reply.data, Instant::now());
        self.count_bound(was_bound, self.bindings[i].is_bound());
        if let Some(m) = next {
            self.out.send(m).await;
        }
    }

    /// Starts the binding flow again where a reply never came or a retry is due.
    async fn check_bindings(&mut self) {
        let now = Instant::now();
        for (b, d) in self.bindings.iter_mut().zip(&self.docks) {
            if let Some(m) = b.poll(&d.ids, now) {
                self.out.send(m).await;
            }
        }
    }

    fn count_bound(&self, was: bool, is: bool) {
        match (was, is) {
            (false, true) => {
                self.shared.bound.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.shared.bound.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Publishes what is due now at once (in order) and leaves the rest to a task of its own.
    async fn send(&mut self, messages: Vec<Message>) {
        let mut messages = messages.into_iter().peekable();
        while let Some(m) = messages.next_if(|m| m.after.is_zero()) {
            self.out.send(m).await;
        }
        let later: Vec<Message> = messages.collect();
        if later.is_empty() {
            return;
        }
        let (out, stop) = (self.out.clone(), self.stop.clone());
        self.pending.spawn(async move {
            for m in later {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(m.after) => {}
                }
                out.send(m).await;
            }
        });
    }
}

fn now_ms() -> i64 {
    shared::time::now_ms()
}

fn tid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `reason` of a `flight_areas_sync_progress` that failed because the file could not be had or
/// did not match its checksum.
const FLIGHT_AREAS_UNAVAILABLE: i64 = 1;

/// Downloads the flight-area file a `flight_areas_get` named and checks its sha256 and GeoJSON.
async fn fetch_flight_areas(http: &reqwest::Client, file: &Value) -> Result<Value, String> {
    use sha2::Digest as _;
    let text = |k: &str| file.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (url, checksum, name) = (text("url"), text("checksum"), text("name"));
    let bytes = async { http.get(&url).send().await?.error_for_status()?.bytes().await }
        .await
        .map_err(|e| format!("downloading {name}: {e}"))?;
    let got = hex::encode(sha2::Sha256::digest(&bytes));
    if !got.eq_ignore_ascii_case(&checksum) {
        return Err(format!("{name}: sha256 {got}, the cloud said {checksum}"));
    }
    let geojson: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{name} is not JSON: {e}"))?;
    if geojson["type"] != "FeatureCollection" {
        return Err(format!("{name} is not a GeoJSON FeatureCollection"));
    }
    Ok(json!({"name": name, "checksum": checksum}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers() {
        assert_eq!(SimDock::new("X", 7), SimDock { dock_sn: "XDOCK0007".into(), drone_sn: "XUAV0007".into() });
    }

    #[test]
    fn received_commands_are_bounded() {
        let shared = Shared::default();
        for n in 0..RECEIVED_KEPT + 5 {
            shared.record(ReceivedCommand {
                dock_sn: "X".into(),
                topic: String::new(),
                tid: n.to_string(),
                bid: String::new(),
                method: String::new(),
                data: Value::Null,
                at: Instant::now(),
            });
        }
        let received = shared.received.lock().unwrap();
        assert_eq!(received.len(), RECEIVED_KEPT);
        assert_eq!(received.front().unwrap().tid, "5");
    }

    #[test]
    fn flight_records_are_bounded_and_a_new_prepare_starts_one_over() {
        let shared = Shared::default();
        let task = |id: &str| PreparedTask { flight_id: id.into(), ..PreparedTask::default() };
        for n in 0..FLIGHTS_KEPT + 3 {
            shared.record_flight(FlightRecord::prepared("D", task(&n.to_string()), Instant::now()));
        }
        shared.update_flight("D", "5", |r| r.status = FlightStatus::Ok);
        shared.update_flight("other dock", "6", |r| r.status = FlightStatus::Ok);
        shared.record_flight(FlightRecord::prepared("D", task("6"), Instant::now()));
        let flights = lock(&shared.flights);
        assert_eq!(flights.len(), FLIGHTS_KEPT);
        assert_eq!(flights.front().map(|r| r.flight_id.as_str()), Some("3"));
        let status = |id: &str| flights.iter().find(|r| r.flight_id == id).map(|r| r.status);
        assert_eq!((status("5"), status("6")), (Some(FlightStatus::Ok), Some(FlightStatus::Prepared)));
        assert_eq!(flights.iter().filter(|r| r.flight_id == "6").count(), 1);
    }

    #[test]
    fn queued_flight_outcomes_come_before_the_standing_one() {
        let shared = Shared::default();
        lock(&shared.outcomes).standing = FlightOutcome::Failed(1);
        lock(&shared.outcomes).queued.extend([FlightOutcome::Ok, FlightOutcome::Failed(2)]);
        let next: Vec<FlightOutcome> = (0..4).map(|_| shared.next_outcome()).collect();
        assert_eq!(
            next,
            [FlightOutcome::Ok, FlightOutcome::Failed(2), FlightOutcome::Failed(1), FlightOutcome::Failed(1)]
        );
    }

    #[test]
    fn up_messages_carry_gateway_and_need_reply() {
        let body = Body::Up {
            tid: "t".into(),
            bid: "b".into(),
            gateway: "G".into(),
            method: Some("cover_open".into()),
            need_reply: true,
            data: json!({"result": 0}),
        };
        let v: Value = serde_json::from_slice(&body.encode()).unwrap();
        assert_eq!(
            (v["tid"].as_str(), v["bid"].as_str(), v["gateway"].as_str(), v["need_reply"].as_i64()),
            (Some("t"), Some("b"), Some("G"), Some(1))
        );
        assert!(v["timestamp"].as_i64().unwrap() > 0);
    }
}
