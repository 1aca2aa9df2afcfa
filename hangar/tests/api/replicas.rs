//! Three processes of each service on one machine, on one Postgres, NATS and MQTT broker, under
//! device traffic and HTTP load at once; one process of each kind is killed (SIGKILL) mid-load.
//! Afterwards: every MQTT message the devices sent is stored once, every accepted write's event
//! exists once and is in JetStream once, the read models equal a rebuild from the first event,
//! every device was answered within 2 s of the bridge's death, and every WebSocket client (moved
//! to another query-api if its own died) still receives its workspace's pushes.
//!
//! The broker is a Mosquitto of this test: on the shared one every Hangar of other tests would
//! answer these devices too, and the timing of the answers would not be this cluster's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use mqtt_bridge::sim::{Fleet, FleetConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use shared::nats::Names;
use tokio::task::JoinSet;

use crate::devices::prefix;
use crate::helpers::*;

const REPLICAS: usize = 3;
/// Session slots of the bridges: two each while three run, three each after one died.
const SLOTS: usize = 6;
const DOCKS: usize = 6;
/// Raw devices that time their requests (`config`) through the failovers.
const PROBES: usize = 6;
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// The promise after a bridge replica dies.
const ANSWERED_WITHIN: Duration = Duration::from_secs(2);
/// Generous for a loaded two-core machine; the conditions themselves come much sooner.
const SETTLE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `hangar serve` child running one component.
struct Proc {
    component: &'static str,
    index: usize,
    port: u16,
    child: Child,
}

impl Proc {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The twelve processes, killed with the guard whatever happens.
struct Cluster {
    procs: Vec<Proc>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Cluster {
    fn of(&self, component: &str) -> Vec<&Proc> {
        self.procs.iter().filter(|p| p.component == component).collect()
    }

    fn kill(&mut self, component: &str, index: usize) {
        let p = self.procs.iter_mut().find(|p| p.component == component && p.index == index).unwrap();
        p.child.kill().unwrap();
        p.child.wait().unwrap();
        eprintln!("killed {component} #{index}");
    }
}

fn spawn(app: &TestApp, logs: &std::path::Path, component: &'static str, index: usize) -> Proc {
    let port = free_port();
    let c = &app.config;
    let pool = match component {
        "command" | "projectors" => 5,
        "query" => 3,
        _ => 2,
    };
    let log = std::fs::File::create(logs.join(format!("{component}-{index}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .arg("serve")
        .env("HANGAR_COMPONENTS", component)
        .env("HANGAR_LISTEN", format!("127.0.0.1:{port}"))
        .env("HANGAR_S3_ENDPOINT_LISTEN", "127.0.0.1:0")
        .env("HANGAR_DATABASE_URL", &c.database_url)
        .env("HANGAR_DATABASE_POOL", pool.to_string())
        .env("HANGAR_NATS_PREFIX", &c.nats_prefix)
        .env("HANGAR_JWT_SECRET", &c.jwt_secret)
        .env("HANGAR_STORAGE_DIR", &c.storage_dir)
        .env("HANGAR_MQTT_URL", &c.mqtt_url)
        .env("HANGAR_MQTT_SHARE_GROUP", &c.mqtt_share_group)
        .env("HANGAR_MQTT_CLIENT_ID", format!("{}-{component}-{index}", c.nats_prefix))
        .env("HANGAR_MQTT_SLOTS", SLOTS.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a hangar process");
    Proc { component, index, port, child }
}

async fn ready(http: &reqwest::Client, base: &str) -> bool {
    http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
}

/// Replicas of one API, as a Kubernetes Service sees them: round-robin over those that answer;
/// one that refuses a connection is taken out.
struct Service {
    bases: Vec<String>,
    alive: Vec<AtomicBool>,
    next: AtomicUsize,
}

impl Service {
    fn new(procs: &[&Proc]) -> Arc<Self> {
        Arc::new(Self {
            bases: procs.iter().map(|p| p.base()).collect(),
            alive: procs.iter().map(|_| AtomicBool::new(true)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    fn pick(&self) -> usize {
        for _ in 0..self.bases.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len();
            if self.alive[i].load(Ordering::Relaxed) {
                return i;
            }
        }
        panic!("no replica of the service is left")
    }

    /// The first live replica from `i` on.
    fn from(&self, i: usize) -> usize {
        (0..self.bases.len())
            .map(|k| (i + k) % self.bases.len())
            .find(|&k| self.alive[k].load(Ordering::Relaxed))
            .unwrap()
    }

    fn failed(&self, i: usize, e: &reqwest::Error) {
        if e.is_connect() {
            self.alive[i].store(false, Ordering::Relaxed);
        }
    }
}

/// What the HTTP load saw.
#[derive(Default)]
struct Writes {
    /// Upload callbacks answered with code 0, by fingerprint.
    accepted: Vec<String>,
    /// Sent without an answer (the replica died under it): they may or may not have been recorded.
    unanswered: Vec<String>,
    /// Device commands answered (any DJI envelope), and how many of those had code 0.
    commands_answered: u64,
    commands_ok: u64,
    commands_attempted: u64,
}

async fn upload_worker(
    http: reqwest::Client,
    api: Arc<Service>,
    token: String,
    tag: String,
    writes: Arc<Mutex<Writes>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let fp = format!("{tag}-{n}");
        let i = api.pick();
        let res = http
            .post(format!("{}/media/api/v1/workspaces/{WS}/upload-callback", api.bases[i]))
            .header("x-auth-token", &token)
            .json(&callback_body(&fp))
            .send()
            .await;
        let body = match res {
            Ok(r) => r.json::<Value>().await.ok(),
            Err(e) => {
                api.failed(i, &e);
                None
            }
        };
        let mut w = writes.lock().unwrap();
        match body {
            Some(b) => {
                assert_eq!(b["code"], 0, "upload callback {fp}: {b}");
                w.accepted.push(fp);
            }
            None => w.unanswered.push(fp),
        }
    }
}

async fn command_worker(
    http: reqwest::Client,
    api: Arc<Service>,
    token: String,
    sn: String,
    writes: Arc<Mutex<Writes>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let method = if n % 2 == 1 { "cover_open" } else { "cover_close" };
        let i = api.pick();
        writes.lock().unwrap().commands_attempted += 1;
        let res = http
            .post(format!("{}/control/api/v1/devices/{sn}/jobs/{method}", api.bases[i]))
            .header("x-auth-token", &token)
            .json(&json!({}))
            .send()
            .await;
        match res {
            Ok(r) => {
                let b: Value = r.json().await.unwrap_or(Value::Null);
                let code = b["code"].as_i64().unwrap_or_else(|| panic!("{sn} {method}: {b}"));
                let mut w = writes.lock().unwrap();
                w.commands_answered += 1;
                w.commands_ok += u64::from(code == 0);
            }
            Err(e) => api.failed(i, &e),
        }
    }
}

/// One probe request: when it was sent and, once answered, how long that took.
type Timings = Arc<Mutex<HashMap<String, (Instant, Option<Duration>)>>>;

/// A raw device that sends `config` requests every [`PROBE_EVERY`] and times their answers.
async fn probe(broker: u16, sn: String, timings: Timings, sent: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut o = MqttOptions::new(format!("probe-{sn}"), "127.0.0.1", broker);
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = AsyncClient::new(o, 100);
    let reply_topic = format!("thing/product/{sn}/requests_reply");
    let (subscribed_tx, mut subscribed) = tokio::sync::watch::channel(false);
    let t2 = timings.clone();
    let c2 = client.clone();
    let events = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = c2.subscribe(&reply_topic, QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subscribed_tx.send_replace(true);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if let Some(tid) = v["tid"].as_str() {
                        if let Some((at, took)) = t2.lock().unwrap().get_mut(tid) {
                            took.get_or_insert(at.elapsed());
                        }
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    subscribed.wait_for(|s| *s).await.unwrap();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let tid = uuid::Uuid::new_v4().to_string();
        let msg = json!({"tid": tid, "bid": tid, "timestamp": 1, "gateway": sn, "method": "config",
            "data": {"config_type": "json", "config_scope": "product"}});
        timings.lock().unwrap().insert(tid, (Instant::now(), None));
        client.publish(format!("thing/product/{sn}/requests"), QoS::AtLeastOnce, false, msg.to_string()).await.unwrap();
        sent.fetch_add(1, Ordering::Relaxed);
    }
    // Answers still on their way are read on (the task is detached) until the test has checked them.
    drop(events);
}

/// What one WebSocket client received: the last OSD push per device (`dock_osd` for the web,
/// `device_osd` of the aircraft for Pilot and the web), and its reconnections.
#[derive(Default)]
struct Session {
    /// The devices whose OSD this client must see.
    expects: Vec<String>,
    last_osd: HashMap<String, Instant>,
    reconnects: u32,
    on: usize,
}

/// A web or Pilot client on query-api replica `first`, moving to the next live one when its own
/// goes away, as a browser behind a Service does.
async fn ws_client(api: Arc<Service>, first: usize, token: String, seen: Arc<Mutex<Session>>, stop: Arc<AtomicBool>) {
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        i = api.from(i);
        seen.lock().unwrap().on = i;
        let url = format!("{}/api/v1/ws?x-auth-token={token}", api.bases[i].replace("http://", "ws://"));
        match tokio_tungstenite::connect_async(&url).await {
            Ok((mut ws, _)) => {
                while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
                    if v["biz_code"].as_str().is_some_and(|b| b.ends_with("_osd")) {
                        if let Some(sn) = v["data"]["sn"].as_str() {
                            seen.lock().unwrap().last_osd.insert(sn.to_string(), Instant::now());
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
            Err(_) => api.alive[i].store(false, Ordering::Relaxed),
        }
        // The connection ended (its replica died) or went quiet: reconnect, elsewhere if need be.
        if !ready(&reqwest::Client::new(), &api.bases[i]).await {
            api.alive[i].store(false, Ordering::Relaxed);
        }
        seen.lock().unwrap().reconnects += 1;
    }
}

/// Every read model a projection writes, as sorted JSON.
async fn read_models(app: &TestApp) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in projectors::all_projections() {
        for table in p.tables() {
            let rows: Option<String> =
                sqlx::query_scalar(&format!("SELECT json_agg(t ORDER BY t::text)::text FROM {table} t"))
                    .fetch_one(&app.pool)
                    .await
                    .unwrap();
            out.insert(table.to_string(), rows.unwrap_or_default());
        }
    }
    out
}

/// Messages in a stream.
async fn stored(js: &jetstream::Context, stream: String) -> u64 {
    js.get_stream(stream).await.unwrap().info().await.unwrap().state.messages
}

/// Whether a durable consumer has delivered and settled everything.
async fn drained(js: &jetstream::Context, stream: String, durable: String) -> bool {
    let Ok(s) = js.get_stream(stream).await else { return false };
    let Ok(mut c) = s.get_consumer::<consumer::pull::Config>(&durable).await else { return false };
    c.info().await.is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
#[ignore = "twelve processes and a broker of its own; scripts/test runs it alone after the other tests"]
async fn three_replicas_of_each_service_survive_one_of_each_killed_under_load() {
    // This process prepares the database and the streams, and reads the outcome; the system is
    // the twelve children.
    let mut c = test_config();
    c.mqtt_share_group = c.nats_prefix.clone();
    c.mqtt_slots = SLOTS as u16;
    let tag = c.nats_prefix.clone();
    let broker = hangar::bench_devices::Broker::start().expect("a Mosquitto of this test");
    c.mqtt_url = broker.url.clone();
    let app = TestApp::spawn_with(c, hangar::Components::NONE).await;
    let names = Names::new(&app.config.nats_prefix);
    let logs = std::env::temp_dir().join(format!("{tag}_logs"));
    std::fs::create_dir_all(&logs).unwrap();
    eprintln!("process logs in {}", logs.display());

    let mut cluster = Cluster { procs: Vec::new() };
    for component in ["projectors", "command", "query", "bridge"] {
        for i in 0..REPLICAS {
            cluster.procs.push(spawn(&app, &logs, component, i));
        }
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    for p in cluster.of("command").into_iter().chain(cluster.of("query")) {
        let base = p.base();
        wait_for(&format!("{} #{} ready", p.component, p.index), SETTLE, || ready(&http, &base)).await;
    }
    app.wait_for("seed users projected", || async { app.count("rm_users").await == 2 }).await;
    let bridges: HashSet<String> = (0..REPLICAS).map(|i| format!("{tag}-bridge-{i}")).collect();
    wait_for("every bridge holds its share of the slots", SETTLE, || async {
        let h = crate::bridge_replicas::holders(&app, SLOTS).await;
        let per: Vec<usize> =
            bridges.iter().map(|b| h.iter().filter(|x| x.as_deref() == Some(b.as_str())).count()).collect();
        per.iter().all(|&n| n == SLOTS / REPLICAS)
    })
    .await;

    let commands = Service::new(&cluster.of("command"));
    let queries = Service::new(&cluster.of("query"));
    let login = |username: &'static str, password: &'static str, flag: i32| {
        let (http, base) = (http.clone(), commands.bases[0].clone());
        async move {
            let b: Value = http
                .post(format!("{base}/manage/api/v1/login"))
                .json(&json!({"username": username, "password": password, "flag": flag}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            b["data"]["access_token"].as_str().unwrap_or_else(|| panic!("login: {b}")).to_string()
        }
    };
    let (web, pilot) = (login("adminPC", "adminPC", 1).await, login("pilot", "pilot123", 2).await);

    // Docks that bind themselves, with OSD, topology, HMS and answers to commands.
    let fleet = Fleet::start(FleetConfig {
        broker: broker.url.clone(),
        docks: DOCKS,
        osd_hz: 2.0,
        sn_prefix: prefix(),
        hms_every: Some(Duration::from_secs(3)),
        binding_code: Some("qwe".into()),
        progress_interval: Duration::from_millis(100),
        cycle_flights: false,
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.ready(SETTLE).await.unwrap();
    let docks: Vec<String> = fleet.docks().iter().map(|d| d.dock_sn.clone()).collect();
    wait_for("every dock bound itself", SETTLE, || async { fleet.bound() == DOCKS }).await;

    // WebSocket clients, a web and a Pilot one on each query-api: the web sees the docks' OSD,
    // Pilot its aircraft's.
    let stop_ws = Arc::new(AtomicBool::new(false));
    let mut background = JoinSet::new();
    let mut sessions = Vec::new();
    for i in 0..REPLICAS {
        let drones: Vec<String> = fleet.docks().iter().map(|d| d.drone_sn.clone()).collect();
        for (token, expects) in [(&web, docks.clone()), (&pilot, drones)] {
            let seen = Arc::new(Mutex::new(Session { expects, ..Session::default() }));
            sessions.push(seen.clone());
            background.spawn(ws_client(queries.clone(), i, token.clone(), seen, stop_ws.clone()));
        }
    }
    let every_session_sees_every_dock = |since: Instant| {
        let sessions = sessions.clone();
        async move {
            sessions.iter().all(|s| {
                let s = s.lock().unwrap();
                s.expects.iter().all(|d| s.last_osd.get(d).is_some_and(|at| *at > since))
            })
        }
    };
    let start = Instant::now();
    wait_for("every WebSocket client sees every dock", SETTLE, || every_session_sees_every_dock(start)).await;

    // Load: upload callbacks, commands to every dock, timed device requests.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let timings: Timings = Arc::default();
    let probes_sent = Arc::new(AtomicU64::new(0));
    let mut load = JoinSet::new();
    for w in 0..4 {
        let args = (http.clone(), commands.clone(), pilot.clone(), format!("{tag}-w{w}"), writes.clone(), stop.clone());
        load.spawn(upload_worker(args.0, args.1, args.2, args.3, args.4, args.5));
    }
    for sn in &docks {
        load.spawn(command_worker(
            http.clone(),
            commands.clone(),
            web.clone(),
            sn.clone(),
            writes.clone(),
            stop.clone(),
        ));
    }
    let probe_sns: Vec<String> = (0..PROBES).map(|i| format!("{}P{i}", prefix())).collect();
    for sn in &probe_sns {
        load.spawn(probe(broker.port, sn.clone(), timings.clone(), probes_sent.clone(), stop.clone()));
    }

    // One of each kind killed, a few seconds apart, the bridge last so that its failover is timed
    // on a system that has already lost the others.
    let pause = Duration::from_secs(4);
    for component in ["command", "query", "projectors", "bridge"] {
        tokio::time::sleep(pause).await;
        cluster.kill(component, 0);
    }
    let bridge_killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    let killed_at = Instant::now();

    // Every WebSocket client is still served (the ones of the dead query-api elsewhere).
    wait_for("every WebSocket client sees every dock after the kills", SETTLE, || {
        every_session_sees_every_dock(killed_at)
    })
    .await;
    for (k, s) in sessions.iter().enumerate() {
        let s = s.lock().unwrap();
        eprintln!("WebSocket client {k}: on query-api #{} after {} reconnections", s.on, s.reconnects);
        if k / 2 == 0 {
            assert!(s.on != 0 && s.reconnects >= 1, "client {k} of the killed query-api moved to another one");
        }
    }
    stop_ws.store(true, Ordering::Relaxed);

    // Every device request answered; those sent after the bridge died within 2 s.
    let received_commands = fleet.received();
    let sims = fleet.stop().await;
    wait_for("every probe request answered", SETTLE, || async {
        timings.lock().unwrap().values().all(|(_, took)| took.is_some())
    })
    .await;
    let (mut slowest, mut after_kill, mut slowest_ever) = (Duration::ZERO, 0, Duration::ZERO);
    for (at, took) in timings.lock().unwrap().values() {
        slowest_ever = slowest_ever.max(took.unwrap());
        if *at >= bridge_killed {
            after_kill += 1;
            slowest = slowest.max(took.unwrap());
        }
    }
    eprintln!(
        "{after_kill} device requests after the bridge kill, slowest answered in {slowest:?}; \
         slowest of all {} requests: {slowest_ever:?}",
        timings.lock().unwrap().len()
    );
    assert!(after_kill >= PROBES * 20, "the probes kept asking after the bridge kill: {after_kill}");
    assert!(slowest < ANSWERED_WITHIN, "a device waited {slowest:?} for its answer after the bridge died");

    // Every MQTT message the devices sent is stored exactly once.
    // What the broker acknowledged must all be stored; what the simulators still had queued when
    // they stopped (they offer what is due by the clock, in bursts on a loaded machine) may never
    // have reached the broker. Stored beyond what was sent would be a message stored twice.
    let probes = probes_sent.load(Ordering::Relaxed);
    let (accepted, sent) = (sims.acked + probes, sims.sent() + probes);
    let js = app.js.clone();
    let in_streams =
        || async { stored(&js, names.device_in_stream()).await + stored(&js, names.telemetry_stream()).await };
    let deadline = Instant::now() + SETTLE;
    while in_streams().await < accepted {
        let now = in_streams().await;
        assert!(
            Instant::now() < deadline,
            "{now} device messages stored, the broker acknowledged {accepted}: {sims:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sims.errors, 0, "simulator publish errors");
    let stored_now = in_streams().await;
    eprintln!("device messages: {accepted} acknowledged by the broker, {sent} sent, {stored_now} stored");
    assert!(stored_now <= sent, "{stored_now} device messages stored of {sent} sent: some twice ({sims:?})");

    // Every event in JetStream once and projected once.
    wait_for("outbox drained and every consumer settled", SETTLE, || async {
        if app.count("event_outbox").await != 0 {
            return false;
        }
        for p in projectors::all_projections() {
            for consumer in projectors::runner::consumer_names(p.as_ref(), &names) {
                if !drained(&js, names.es_stream(), consumer).await {
                    return false;
                }
            }
        }
        true
    })
    .await;
    let events = scalar(&app, "SELECT count(*) FROM events").await;
    assert_eq!(stored(&js, names.es_stream()).await, events as u64, "ES stream holds each event once");

    // Every accepted upload callback is one event and one file; the unanswered ones at most one.
    let w = std::mem::take(&mut *writes.lock().unwrap());
    eprintln!(
        "upload callbacks: {} accepted, {} unanswered; device commands: {} attempted, {} answered ({} ok)",
        w.accepted.len(),
        w.unanswered.len(),
        w.commands_attempted,
        w.commands_answered,
        w.commands_ok
    );
    assert!(w.accepted.len() > 50 && w.commands_ok > 20, "the load ran");
    let uploaded: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload->'MediaFileUploaded'->>'fingerprint', count(*) FROM events \
         WHERE aggregate_type = 'media_file' AND event_type = 'MediaFileUploaded' GROUP BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let uploaded: HashMap<String, i64> = uploaded.into_iter().collect();
    for fp in &w.accepted {
        assert_eq!(uploaded.get(fp), Some(&1), "accepted upload callback {fp} recorded once");
    }
    let unanswered: HashSet<&String> = w.unanswered.iter().collect();
    for (fp, n) in &uploaded {
        assert_eq!(*n, 1, "{fp} recorded once");
        assert!(w.accepted.contains(fp) || unanswered.contains(fp), "{fp} was sent by this test");
    }
    assert_eq!(app.count("rm_media_files").await, uploaded.len() as i64, "one file per recorded callback");

    // Every command a dock received was recorded once; every answered one was recorded.
    let sent_commands: i64 = scalar(
        &app,
        "SELECT count(*) FROM events WHERE aggregate_type = 'device_command' AND event_type = 'CommandSent'",
    )
    .await;
    let ok_replies: i64 = scalar(
        &app,
        "SELECT count(*) FROM events WHERE aggregate_type = 'device_command' AND event_type = 'ReplyReceived' \
         AND payload->'ReplyReceived'->>'result' = '0' AND payload->'ReplyReceived'->>'late' = 'false'",
    )
    .await;
    assert!(
        (w.commands_answered as i64..=w.commands_attempted as i64).contains(&sent_commands),
        "commands recorded {sent_commands}, answered {}, attempted {}",
        w.commands_answered,
        w.commands_attempted
    );
    assert!(ok_replies >= w.commands_ok as i64, "every command answered 0 has its reply recorded: {ok_replies}");
    let received: HashSet<String> = received_commands.into_iter().map(|c| c.tid).collect();
    let recorded: HashSet<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'device_command' AND event_type = 'CommandSent'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(received.is_subset(&recorded), "a dock received a command that was never recorded");

    // The read models are what a rebuild from the first event makes of the history.
    let before = read_models(&app).await;
    for p in projectors::all_projections() {
        projectors::runner::rebuild(p.as_ref(), &app.pool, &js, &names).await.unwrap();
    }
    wait_for("the rebuilt read models", SETTLE, || async { read_models(&app).await == before }).await;

    background.abort_all();
    drop(cluster);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&logs);
}
