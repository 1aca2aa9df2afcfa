//! `hangar bench --only replicas`: the upload-callback bench and the device bench against one
//! process of each service (command-api, query-api, projectors, mqtt-bridge: four `hangar serve`
//! children) and against three of each (twelve), in the same run, each on a fresh database and
//! NATS prefix. The point is that nothing breaks and nothing doubles when the work is spread: it
//! prints rates, p50/p99 and the 3-vs-1 ratios, and the exact loss and duplicate counts, which
//! must be 0.
//!
//! Writes go round-robin to the command-api replicas (as a Kubernetes Service would send them);
//! one WebSocket client per query-api replica; the bridges share the device traffic through
//! session slots. Each side has a Mosquitto of its own ([`crate::bench_devices::Broker`], with
//! `mqtt-bridge/mosquitto.conf`): a broker shared with other runs holds their sessions and
//! traffic, and the two sides would not meet the same broker. On one machine the replicas share its cores, so more replicas cannot be faster
//! here: the ratios say what the coordination between them costs.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use mqtt_bridge::mqtt::{self, BrokerUrl};
use mqtt_bridge::sim::{Fleet, FleetConfig};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{json, Value};
use shared::domain::device::DeviceCommand;
use shared::event_store::{cqrs, execute, metadata};
use shared::metrics::Summary;
use shared::nats::Names;
use shared::Config;
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

use tokio::sync::Mutex;

use crate::bench::{BenchArgs, WORKSPACE};

/// Session slots of the bridges: every replica count here divides it.
const SLOTS: usize = 6;
/// Simulated docks (each with its aircraft) of the device bench, at 20 Hz: more than one machine
/// carries, so the rates are saturation rates.
const DOCKS: usize = 250;
const WITHIN: Duration = Duration::from_secs(120);

/// One side of the comparison.
pub struct Side {
    pub replicas: usize,
    pub upload_rps: f64,
    pub upload_p50: Duration,
    pub upload_p99: Duration,
    pub upload_accepted: u64,
    pub upload_errors: u64,
    /// Accepted callbacks without their file in the read model.
    pub upload_lost: u64,
    /// Callbacks recorded more than once.
    pub upload_doubled: u64,
    pub osd_offered_rps: f64,
    pub osd_stored_rps: f64,
    /// OSD pushes per second to each WebSocket client (mean over the clients).
    pub ws_rps: f64,
    /// OSD the broker accepted from the devices (a plain subscriber's count).
    pub osd_sent: u64,
    pub osd_lost: u64,
    pub osd_doubled: u64,
    pub probe_p50: Duration,
    pub probe_p99: Duration,
    pub probes_sent: u64,
    pub probes_received: u64,
}

pub struct ReplicasReport {
    pub one: Side,
    pub three: Side,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let n = self.replicas;
        writeln!(
            f,
            "{n} of each upload-callback, saturation {:>9.0} req/s  p50 {:.1} ms  p99 {:.1} ms  accepted {} errors {} lost {} doubled {}",
            self.upload_rps,
            ms(self.upload_p50),
            ms(self.upload_p99),
            self.upload_accepted,
            self.upload_errors,
            self.upload_lost,
            self.upload_doubled
        )?;
        write!(
            f,
            "{n} of each OSD (offered {:.0}/s) stored {:>8.0} msg/s, to each WebSocket {:>8.0} msg/s; probe p50 {:.1} ms p99 {:.1} ms ({}/{} pushed); broker accepted {} lost {} doubled {}",
            self.osd_offered_rps,
            self.osd_stored_rps,
            self.ws_rps,
            ms(self.probe_p50),
            ms(self.probe_p99),
            self.probes_received,
            self.probes_sent,
            self.osd_sent,
            self.osd_lost,
            self.osd_doubled
        )
    }
}

impl std::fmt::Display for ReplicasReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (&self.one, &self.three);
        let r = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
        let d = |x: Duration, y: Duration| r(x.as_secs_f64(), y.as_secs_f64());
        writeln!(f, "{a}")?;
        writeln!(f, "{b}")?;
        writeln!(
            f,
            "3 vs 1    upload-callback rate {:.2}x  p50 {:.2}x  p99 {:.2}x",
            r(b.upload_rps, a.upload_rps),
            d(b.upload_p50, a.upload_p50),
            d(b.upload_p99, a.upload_p99)
        )?;
        write!(
            f,
            "3 vs 1    OSD stored {:.2}x  to each WebSocket {:.2}x  probe p50 {:.2}x  p99 {:.2}x",
            r(b.osd_stored_rps, a.osd_stored_rps),
            r(b.ws_rps, a.ws_rps),
            d(b.probe_p50, a.probe_p50),
            d(b.probe_p99, a.probe_p99)
        )
    }
}

pub async fn run(base: &Config, args: &BenchArgs) -> anyhow::Result<ReplicasReport> {
    let one = side(base, args, 1).await?;
    let three = side(base, args, 3).await?;
    Ok(ReplicasReport { one, three })
}

/// `hangar serve` children, killed with the guard.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn side(base: &Config, args: &BenchArgs, replicas: usize) -> anyhow::Result<Side> {
    let tag = format!("benchr{replicas}x{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let mut config = base.clone();
    let opts: PgConnectOptions = base.database_url.parse().context("database URL")?;
    config.database_url = opts.database(&tag).to_url_lossy().to_string();
    config.nats_prefix = tag.clone();
    config.storage_dir = std::env::temp_dir().join(&tag);
    config.mqtt_share_group = tag.clone();
    config.mqtt_slots = SLOTS as u16;
    let broker = crate::bench_devices::Broker::start()?;
    config.mqtt_url = broker.url.clone();
    let result = measure(&config, args, replicas).await;
    drop(broker);
    if let Ok(nats) = shared::nats::connect(base).await {
        let _ = jetstream::new(nats).delete_key_value(mqtt_bridge::slots::bucket(&tag)).await;
    }
    crate::bench::remove_run(base, &tag).await;
    result
}

async fn measure(config: &Config, args: &BenchArgs, replicas: usize) -> anyhow::Result<Side> {
    eprintln!("bench: {replicas} process(es) of each service…");
    let pool = shared::db::prepare(&config.database_url, 4).await?;
    let nats = shared::nats::connect(config).await?;
    let js = jetstream::new(nats);
    let names = Names::new(&config.nats_prefix);
    shared::nats::ensure_streams(&js, &names, config).await?;

    let exe = std::env::current_exe().context("the hangar binary")?;
    // The children's warnings go to files, kept when something was lost or doubled.
    let logs = std::env::temp_dir().join(format!("{}_logs", config.nats_prefix));
    std::fs::create_dir_all(&logs)?;
    let mut children = Children(Vec::new());
    let (mut commands, mut queries) = (Vec::new(), Vec::new());
    for component in ["projectors", "command", "query", "bridge"] {
        for i in 0..replicas {
            let port = free_port()?;
            let child = Command::new(&exe)
                .arg("serve")
                .env("HANGAR_COMPONENTS", component)
                .env("HANGAR_LISTEN", format!("127.0.0.1:{port}"))
                .env("HANGAR_S3_ENDPOINT_LISTEN", "127.0.0.1:0")
                .env("HANGAR_DATABASE_URL", &config.database_url)
                .env("HANGAR_DATABASE_POOL", pool_size(component, replicas).to_string())
                .env("HANGAR_NATS_PREFIX", &config.nats_prefix)
                .env("HANGAR_JWT_SECRET", &config.jwt_secret)
                .env("HANGAR_STORAGE_DIR", &config.storage_dir)
                .env("HANGAR_MQTT_URL", &config.mqtt_url)
                .env("HANGAR_MQTT_SHARE_GROUP", &config.mqtt_share_group)
                .env("HANGAR_MQTT_CLIENT_ID", format!("{}-{component}-{i}", config.nats_prefix))
                .env("HANGAR_MQTT_SLOTS", SLOTS.to_string())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(logs.join(format!("{component}-{i}.log")))?)
                .spawn()
                .context("starting a hangar process")?;
            children.0.push(child);
            let url = format!("http://127.0.0.1:{port}");
            match component {
                "command" => commands.push(url),
                "query" => queries.push(url),
                _ => {}
            }
        }
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).build()?;
    for url in commands.iter().chain(&queries) {
        wait("an API replica ready", || async {
            http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await?;
    }
    wait("every slot held", || async { slots_held(&js, config).await == SLOTS }).await?;

    // Upload callbacks at saturation, round-robin over the command-api replicas.
    let token = crate::bench::login(&http, &commands[0], "pilot", "pilot123", 2).await?;
    eprintln!("bench: upload-callback saturation ({} s, {} clients)…", args.seconds, args.concurrency);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Summary::default());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let url = format!("{}/media/api/v1/workspaces/{WORKSPACE}/upload-callback", commands[w % replicas]);
        let (http, token, counter, errors, latency) =
            (http.clone(), token.clone(), counter.clone(), errors.clone(), latency.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if crate::bench::send(&http, &url, &token, n).await {
                    latency.observe(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let upload_rps = latency.count() as f64 / started.elapsed().as_secs_f64();
    let accepted = latency.count();
    wait("every accepted callback projected", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rm_media_files")
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n as u64 >= accepted)
    })
    .await
    .ok();
    let files: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_media_files").fetch_one(&pool).await?;
    let (recorded, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT payload->'MediaFileUploaded'->>'fingerprint') FROM events \
         WHERE aggregate_type = 'media_file' AND event_type = 'MediaFileUploaded'",
    )
    .fetch_one(&pool)
    .await?;

    // OSD at saturation from simulated docks, through the bridges, to a WebSocket client on
    // every query-api replica, with a probe dock timing the way end to end.
    let admin = crate::bench::login(&http, &commands[0], "adminPC", "adminPC", 1).await?;
    eprintln!("bench: OSD at full speed ({} s)…", args.seconds);
    let prefix = tag_prefix(config);
    let probe = format!("{prefix}PROBE");
    let mut clients = Vec::new();
    for q in &queries {
        clients.push(ws_client(q, &admin, prefix.clone(), probe.clone()).await?);
    }
    // The devices come online and are bound at 1 Hz first, then the same docks flood.
    let fleet_config = |hz| FleetConfig { broker: config.mqtt_url.clone(), ..fleet_config(&prefix, DOCKS, hz) };
    let fleet = Fleet::start(fleet_config(1.0)).await?;
    let (pc, acked) = probe_client(&BrokerUrl::parse(&config.mqtt_url)?);
    let topo = json!({"tid": uuid::Uuid::new_v4().to_string(), "bid": "b", "timestamp": 0, "method": "update_topo",
        "data": {"domain": 3, "type": 2, "sub_type": 0, "thing_version": "1.2.0", "sub_devices": []}});
    pc.publish(format!("sys/product/{probe}/status"), QoS::AtLeastOnce, false, topo.to_string()).await?;
    bind_all(&pool, &prefix, 2 * DOCKS as i64 + 1).await?;
    fleet.stop().await;
    // What the broker accepted from this side's devices, as a plain subscriber receives it: the
    // simulator counts what it queued, and what it still held when stopped never left it.
    let accepted_osd = Arc::new(AtomicU64::new(0));
    let watcher = osd_watcher(&BrokerUrl::parse(&config.mqtt_url)?, &prefix, accepted_osd.clone()).await?;
    let stored_before = count(&js, &names, &names.telemetry_kind_filter("osd")).await?;
    let fleet = Fleet::start(fleet_config(20.0)).await?;
    let osd = names.telemetry_kind_filter("osd");
    let stored0 = count(&js, &names, &osd).await?;
    let (sent0, ws0, t0) = (fleet.stats().osd, ws_total(&clients), Instant::now());
    let probes_sent = args.seconds * 20;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for seq in 0..probes_sent {
        tick.tick().await;
        let msg = json!({"tid": uuid::Uuid::new_v4().to_string(), "bid": "b", "timestamp": shared::time::now_ms(), "gateway": probe,
            "data": {"mode_code": 0, "bench_seq": seq, "bench_sent_us": chrono::Utc::now().timestamp_micros()}});
        pc.publish(format!("thing/product/{probe}/osd"), QoS::AtLeastOnce, false, msg.to_string()).await?;
    }
    let (sent1, ws1, dt) = (fleet.stats().osd, ws_total(&clients), t0.elapsed().as_secs_f64());
    let stored1 = count(&js, &names, &osd).await?;
    fleet.stop().await;
    wait("the probe's OSD acked by the broker", || async { acked.load(Ordering::Relaxed) > probes_sent }).await.ok();
    // Everything the broker accepted: once the watcher's count stands still for 2 s.
    let mut osd_sent = 0;
    let mut changed = Instant::now();
    while changed.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = accepted_osd.load(Ordering::Relaxed);
        if n != osd_sent {
            (osd_sent, changed) = (n, Instant::now());
        }
    }
    watcher.abort();
    // stored until all of it is in, or nothing more arrives for 5 s (a loss)
    let (mut stored, mut changed) = (0, Instant::now());
    while stored < osd_sent && changed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = count(&js, &names, &osd).await? - stored_before;
        if n != stored {
            (stored, changed) = (n, Instant::now());
        }
    }
    let probe_stats = &clients[0];
    let probes_received = probe_stats.probes.lock().await.len() as u64;
    let q = |p| probe_stats.latency.quantile(p).unwrap_or_default();
    let lq = |p| latency.quantile(p).unwrap_or_default();
    drop(children);
    let clean = accepted == files as u64 && recorded == distinct && stored == osd_sent;
    if clean {
        let _ = std::fs::remove_dir_all(&logs);
    } else {
        eprintln!("bench: something was lost or doubled; the processes' logs are in {}", logs.display());
    }
    Ok(Side {
        replicas,
        upload_rps,
        upload_p50: lq(0.5),
        upload_p99: lq(0.99),
        upload_accepted: accepted,
        upload_errors: errors.load(Ordering::Relaxed),
        upload_lost: (accepted as i64 - files).max(0) as u64,
        upload_doubled: (recorded - distinct).max(0) as u64,
        osd_offered_rps: (sent1 - sent0) as f64 / dt,
        osd_stored_rps: (stored1 - stored0) as f64 / dt,
        ws_rps: (ws1 - ws0) as f64 / dt / clients.len() as f64,
        osd_sent,
        osd_lost: osd_sent.saturating_sub(stored),
        osd_doubled: stored.saturating_sub(osd_sent),
        probe_p50: q(0.5),
        probe_p99: q(0.99),
        probes_sent,
        probes_received,
    })
}

/// Postgres connections of one process: each service's connections are divided between its
/// replicas, so that both sides open about as many (and twelve processes stay within the server's
/// `max_connections`, which other clients share).
fn pool_size(component: &str, replicas: usize) -> usize {
    let per_service: usize = match component {
        "command" => 16,
        "projectors" => 10,
        "query" => 6,
        _ => 2,
    };
    per_service.div_ceil(replicas).max(2)
}

/// Polls `f` every 100 ms until it holds, or fails after [`WITHIN`].
async fn wait<F, Fut>(what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WITHIN;
    while !f().await {
        anyhow::ensure!(Instant::now() < deadline, "bench: timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Device serial prefix of a side: its tag, upper case, without what a serial number cannot hold.
fn tag_prefix(config: &Config) -> String {
    config.nats_prefix.to_ascii_uppercase().replace(|c: char| !c.is_ascii_alphanumeric(), "")
}

fn ws_total(clients: &[Arc<WsStats>]) -> u64 {
    clients.iter().map(|c| c.osd.load(Ordering::Relaxed)).sum()
}

/// Counts the OSD messages of devices whose serial starts with `prefix` that the broker delivers
/// to a plain subscriber.
async fn osd_watcher(
    url: &BrokerUrl,
    prefix: &str,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let id = format!("bench-watch-{}", uuid::Uuid::new_v4().simple());
    let (client, mut el) = mqtt::client(mqtt::options(url, &id, Duration::from_secs(30), true, None), 1000);
    client.subscribe("thing/product/+/osd", QoS::AtLeastOnce).await?;
    let mine = format!("thing/product/{prefix}");
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let h = tokio::spawn(async move {
        let _client = client;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(t) = ready_tx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic.starts_with(&mine) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready).await.context("OSD watcher")??;
    Ok(h)
}

/// A plain MQTT client for the probe dock, and how many of its publishes the broker acked.
fn probe_client(url: &BrokerUrl) -> (AsyncClient, Arc<AtomicU64>) {
    let id = format!("bench-probe-{}", uuid::Uuid::new_v4().simple());
    let (client, mut el) = mqtt::client(mqtt::options(url, &id, Duration::from_secs(30), true, None), 10_000);
    let acked = Arc::new(AtomicU64::new(0));
    let a = acked.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    a.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    (client, acked)
}

/// Messages of the TELEMETRY stream under `filter`.
async fn count(js: &jetstream::Context, names: &Names, filter: &str) -> anyhow::Result<u64> {
    let stream = js.get_stream(names.telemetry_stream()).await?;
    let c: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter.to_string(),
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(5),
            ..Default::default()
        })
        .await?;
    let n = c.cached_info().num_pending;
    let _ = stream.delete_consumer(&c.cached_info().name).await;
    Ok(n)
}

/// Slots whose lease someone holds.
async fn slots_held(js: &jetstream::Context, config: &Config) -> usize {
    let Ok(store) = js.get_key_value(mqtt_bridge::slots::bucket(&config.nats_prefix)).await else { return 0 };
    let mut held = 0;
    for i in 0..SLOTS {
        let key = format!("{}.slot.{i}", config.mqtt_share_group);
        if let Ok(Some(e)) = store.entry(key).await {
            held += usize::from(e.operation == async_nats::jetstream::kv::Operation::Put);
        }
    }
    held
}

// What this bench shares with the single-process device bench of earlier versions: binding the
// simulated devices through their own update_topo, and a WebSocket client that times a probe.

fn fleet_config(prefix: &str, docks: usize, hz: f64) -> FleetConfig {
    FleetConfig { docks, osd_hz: hz, sn_prefix: prefix.into(), hms_every: None, ..Default::default() }
}

async fn bind_all(pool: &sqlx::PgPool, prefix: &str, expected: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_devices WHERE device_sn LIKE $1 AND online")
            .bind(format!("{prefix}%"))
            .fetch_one(pool)
            .await?;
        if n >= expected {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {expected} devices came online");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sns: Vec<String> = sqlx::query_scalar("SELECT device_sn FROM rm_devices WHERE device_sn LIKE $1")
        .bind(format!("{prefix}%"))
        .fetch_all(pool)
        .await?;
    let devices = cqrs::<shared::domain::device::Device>(&shared::event_store::Appender::new(pool.clone()));
    let ws = super::bench::WORKSPACE;
    futures::stream::iter(sns)
        .for_each_concurrent(16, |sn| {
            let devices = devices.clone();
            async move {
                let cmd = DeviceCommand::Bind {
                    workspace_id: ws.into(),
                    user_id: String::new(),
                    nickname: None,
                    model: None,
                    by_user: false,
                };
                if let Err(e) = execute(&devices, &sn, cmd, metadata("bench", ws, "bench")).await {
                    tracing::warn!(sn, error = %e, "bench bind failed");
                }
            }
        })
        .await;
    crate::bench_devices::wait_bound(pool, prefix, expected, deadline).await
}

struct WsStats {
    osd: AtomicU64,
    probes: Mutex<HashSet<u64>>,
    latency: Summary,
}

/// Counts OSD pushes for devices whose serial starts with `prefix`, and the probe's latency.
async fn ws_client(base: &str, token: &str, prefix: String, probe_sn: String) -> anyhow::Result<Arc<WsStats>> {
    let url = format!("{}/api/v1/ws?x-auth-token={token}", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let stats =
        Arc::new(WsStats { osd: AtomicU64::new(0), probes: Mutex::new(HashSet::new()), latency: Summary::default() });
    let st = stats.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let Ok(text) = m.to_text() else { continue };
            if !text.contains("_osd\"") || !text.contains(&format!("\"sn\":\"{prefix}")) {
                continue;
            }
            st.osd.fetch_add(1, Ordering::Relaxed);
            if text.contains(&probe_sn) {
                let Ok(v) = serde_json::from_str::<Value>(text) else { continue };
                let host = &v["data"]["host"];
                if let (Some(seq), Some(sent)) = (host["bench_seq"].as_u64(), host["bench_sent_us"].as_i64()) {
                    let now = chrono::Utc::now().timestamp_micros();
                    st.latency.observe(Duration::from_micros((now - sent).max(0) as u64));
                    st.probes.lock().await.insert(seq);
                }
            }
        }
    });
    Ok(stats)
}
