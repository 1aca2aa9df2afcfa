//! `hangar bench --only devices` and `--only fleet`: device traffic through the broker, the bridge
//! and JetStream to a WebSocket client, beside the broker's own pub→sub ceiling in the same run.
//!
//! `devices`, at saturation:
//! 1. baseline: OSD messages (the simulator's own bytes, each with a `tid` of its own) published
//!    as fast as the broker takes them from [`BLASTERS`] connections, one plain subscriber
//!    counting what arrives: the broker's own ceiling, not the publisher's;
//! 2. Hangar: the same offered load on the topics of 1,000 bound devices: what JetStream stored
//!    per second (ingest) and what a WebSocket client received (push), as shares of the ceiling.
//!
//! `fleet`, the real thing at scale: 1,000, 5,000 and 10,000 simulated docks with their aircraft
//! at 1 Hz, QoS 1 (`--fleet-docks`). The docks are registered and bound beforehand (the device
//! inbox's commands for their topology, run directly), so every OSD message of the measured fleet
//! must reach JetStream and the WebSocket; each carries its send time. Every size uses the first
//! docks of the one registered fleet: docks silent for a minute since are offline, and come back
//! online with their first message, as a real fleet does. Reported: sent, dropped by the broker (its `$SYS` counter), stored, pushed, the
//! exact loss at each step, and the push delay p50/p99 over every message.
//!
//! `hangar bench --only devices|fleet` runs a Mosquitto of its own ([`Broker`], configured with
//! `mqtt-bridge/mosquitto.conf`) so that no other Hangar on the machine sees or disturbs the load;
//! a whole `hangar bench` uses the machine's broker, and says so.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use mqtt_bridge::sim::{Fleet, FleetConfig, SimDock};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::Value;
use shared::domain::device::DeviceCommand;
use shared::event_store::{cqrs, execute, metadata};
use shared::metrics::Summary;

/// Connections the saturation load is published from.
const BLASTERS: usize = 8;
/// Devices whose topics the saturation load is spread over.
const SATURATION_DOCKS: usize = 500;

/// The project's broker settings, as `scripts/services.sh` installs them.
const HANGAR_MOSQUITTO: &str = include_str!("../../mqtt-bridge/mosquitto.conf");

/// A Mosquitto of the bench's own on a free loopback port, with Hangar's settings.
pub struct Broker {
    child: Child,
    dir: PathBuf,
    pub url: String,
    pub port: u16,
}

impl Broker {
    pub fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("hangar-bench-mosquitto-{port}"));
        std::fs::create_dir_all(&dir)?;
        // Started as root, Mosquitto runs as the user `mosquitto`, which must write its database.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence_location {}/\n{HANGAR_MOSQUITTO}",
                dir.display()
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (Debian package mosquitto)")?;
        let broker = Self { child, dir, url: format!("mqtt://127.0.0.1:{port}"), port };
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(broker);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("the bench's mosquitto did not listen on port {port}")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mqtt(url: &str, id: &str, inflight: u16) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop)> {
    let u = mqtt_bridge::BrokerUrl::parse(url)?;
    let mut o = MqttOptions::new(id, u.host, u.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(inflight);
    Ok(mqtt_bridge::mqtt::client(o, 10_000))
}

fn unique(name: &str) -> String {
    format!("bench-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The broker's own counters (`$SYS`): messages received from publishers, and dropped because a
/// client's queue was full.
#[derive(Debug, Clone, Copy, Default)]
struct BrokerCounters {
    received: u64,
    dropped: u64,
}

/// Reads the broker's counters once they are current: `$SYS` values are retained and refreshed
/// every `sys_interval` (10 s by default), so this waits for the next refresh.
async fn broker_counters(url: &str) -> anyhow::Result<BrokerCounters> {
    let (client, mut el) = mqtt(url, &unique("sys"), 10)?;
    client.subscribe("$SYS/broker/uptime", QoS::AtMostOnce).await?;
    client.subscribe("$SYS/broker/publish/messages/+", QoS::AtMostOnce).await?;
    let mut counters = BrokerCounters::default();
    let mut uptimes = 0;
    let mut refreshed = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if refreshed.is_some_and(|t: Instant| t.elapsed() > Duration::from_millis(300)) {
            break;
        }
        let Ok(event) = tokio::time::timeout(Duration::from_millis(100), el.poll()).await else { continue };
        if let Event::Incoming(Packet::Publish(p)) = event? {
            let value = || std::str::from_utf8(&p.payload).ok().and_then(|v| v.trim().parse::<u64>().ok());
            match p.topic.as_str() {
                "$SYS/broker/uptime" => {
                    uptimes += 1;
                    if uptimes == 2 {
                        refreshed = Some(Instant::now());
                    }
                }
                "$SYS/broker/publish/messages/received" => counters.received = value().unwrap_or(counters.received),
                "$SYS/broker/publish/messages/dropped" => counters.dropped = value().unwrap_or(counters.dropped),
                _ => {}
            }
        }
    }
    let _ = client.try_disconnect();
    anyhow::ensure!(refreshed.is_some(), "the broker published no $SYS values (sys_interval 0?)");
    Ok(counters)
}

/// OSD messages as the simulator makes them, without their `tid`: `{` is replaced by
/// `{"tid":"<unique>",` when sent.
struct Templates {
    dock: Vec<u8>,
    drone: Vec<u8>,
}

impl Templates {
    /// Takes one dock and one aircraft OSD of a simulated dock off the broker.
    async fn capture(url: &str, tag: &str) -> anyhow::Result<Self> {
        let (client, mut el) = mqtt(url, &unique("capture"), 10)?;
        let sim = SimDock::new(&format!("{tag}T"), 1);
        client.subscribe(format!("thing/product/{}/osd", sim.dock_sn), QoS::AtMostOnce).await?;
        client.subscribe(format!("thing/product/{}/osd", sim.drone_sn), QoS::AtMostOnce).await?;
        let fleet = Fleet::start(FleetConfig {
            broker: url.into(),
            osd_hz: 5.0,
            hms_every: None,
            sn_prefix: format!("{tag}T"),
            ..Default::default()
        })
        .await?;
        let strip = |payload: &[u8]| -> anyhow::Result<Vec<u8>> {
            let mut v: serde_json::Map<String, Value> = serde_json::from_slice(payload)?;
            v.remove("tid");
            Ok(serde_json::to_vec(&v)?)
        };
        let (mut dock, mut drone) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while dock.is_none() || drone.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "no OSD from the simulator");
            let Ok(event) = tokio::time::timeout(Duration::from_millis(200), el.poll()).await else { continue };
            if let Event::Incoming(Packet::Publish(p)) = event? {
                if p.topic.contains(&sim.dock_sn) {
                    dock = Some(strip(&p.payload)?);
                } else {
                    drone = Some(strip(&p.payload)?);
                }
            }
        }
        fleet.stop().await;
        let _ = client.try_disconnect();
        Ok(Self { dock: dock.unwrap_or_default(), drone: drone.unwrap_or_default() })
    }

    fn message(template: &[u8], tid: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(template.len() + tid.len() + 10);
        out.extend_from_slice(br#"{"tid":""#);
        out.extend_from_slice(tid.as_bytes());
        out.extend_from_slice(br#"","#);
        out.extend_from_slice(&template[1..]);
        out
    }
}

/// Publishes OSD as fast as the broker acks it, from [`BLASTERS`] connections, on the topics of
/// `docks`, until `until`; returns the publishes the broker acked.
async fn blast(url: &str, docks: &[SimDock], templates: &Arc<Templates>, until: Instant) -> anyhow::Result<u64> {
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let topics: Arc<Vec<(String, bool)>> = Arc::new(
        docks
            .iter()
            .flat_map(|d| {
                [
                    (format!("thing/product/{}/osd", d.dock_sn), true),
                    (format!("thing/product/{}/osd", d.drone_sn), false),
                ]
            })
            .collect(),
    );
    for c in 0..BLASTERS {
        let (client, mut el) = mqtt(url, &unique("blast"), 1000)?;
        let acked = acked.clone();
        tasks.spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let (topics, templates) = (topics.clone(), templates.clone());
        let run = uuid::Uuid::new_v4().simple().to_string();
        tasks.spawn(async move {
            let mut n = c;
            while Instant::now() < until {
                let (topic, dock) = &topics[n % topics.len()];
                let template = if *dock { &templates.dock } else { &templates.drone };
                let payload = Templates::message(template, &format!("{}-{n}", &run[..8]));
                if client.publish(topic.clone(), QoS::AtLeastOnce, false, payload).await.is_err() {
                    break;
                }
                n += BLASTERS;
            }
            let _ = client.disconnect().await;
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(acked.load(Ordering::Relaxed))
}

pub struct DeviceReport {
    pub broker: String,
    pub raw_offered_rps: f64,
    pub raw_rps: f64,
    pub sat_offered_rps: f64,
    pub stored_rps: f64,
    pub ws_rps: f64,
    pub backlog_secs: f64,
    pub broker_dropped: u64,
}

impl std::fmt::Display for DeviceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "broker    {}", self.broker)?;
        writeln!(
            f,
            "baseline  broker pub→sub, one subscriber ({BLASTERS} publishers offered {:.0}/s)  {:>8.0} msg/s",
            self.raw_offered_rps, self.raw_rps
        )?;
        writeln!(
            f,
            "hangar    OSD stored in JetStream (offered {:.0}/s)              {:>8.0} msg/s = {:.1}% of broker",
            self.sat_offered_rps,
            self.stored_rps,
            100.0 * self.stored_rps / self.raw_rps
        )?;
        writeln!(
            f,
            "hangar    OSD pushed to a WebSocket client                      {:>8.0} msg/s = {:.1}% of broker",
            self.ws_rps,
            100.0 * self.ws_rps / self.raw_rps
        )?;
        write!(
            f,
            "hangar    backlog left in the broker drained in {:.1} s; broker dropped {} messages in these phases",
            self.backlog_secs, self.broker_dropped
        )
    }
}

/// Counts OSD arriving at a plain subscriber.
async fn raw_subscriber(url: &str, counter: Arc<AtomicU64>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (client, mut el) = mqtt(url, &unique("raw"), 100)?;
    client.subscribe("thing/product/+/osd", QoS::AtLeastOnce).await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
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
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await.context("raw subscriber")??;
    Ok(h)
}

/// The rate of `counter` over `seconds` after a second of warm-up.
async fn rate<F: Fn() -> u64>(seconds: u64, counter: F) -> f64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, t0) = (counter(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    (counter() - c0) as f64 / t0.elapsed().as_secs_f64()
}

/// Registers docks 1..=`docks` of `prefix` with their aircraft and binds them all to the bench's
/// workspace, so that their OSD is pushed from the first message on. The commands are those the
/// device inbox runs for a dock's `update_topo`, executed here directly and 32 at a time: through
/// the inbox, 10,000 docks take minutes to register on this machine, and registration is not what
/// is measured.
async fn register(ctx: &Ctx<'_>, prefix: &str, docks: usize) -> anyhow::Result<()> {
    use shared::domain::device::Model;
    let devices = cqrs::<shared::domain::device::Device>(&shared::event_store::Appender::new(ctx.pool.clone()));
    let ws = super::bench::WORKSPACE;
    let failed = AtomicU64::new(0);
    futures::stream::iter(1..=docks)
        .for_each_concurrent(32, |i| {
            let (devices, failed) = (devices.clone(), &failed);
            async move {
                let d = SimDock::new(prefix, i);
                let online = |model: Model, parent_sn: Option<String>| DeviceCommand::ReportOnline {
                    model: Some(model),
                    thing_version: Some("1.2.0".into()),
                    control_source: parent_sn.as_ref().map(|_| "A".to_string()),
                    parent_sn,
                };
                let bind = || DeviceCommand::Bind {
                    workspace_id: ws.into(),
                    user_id: String::new(),
                    nickname: None,
                    model: None,
                    by_user: false,
                };
                let commands = [
                    (&d.dock_sn, online(Model { domain: 3, kind: 2, sub_type: 0 }, None)),
                    (&d.drone_sn, online(Model { domain: 0, kind: 91, sub_type: 0 }, Some(d.dock_sn.clone()))),
                    (&d.dock_sn, DeviceCommand::ReportTopology { sub_devices: vec![d.drone_sn.clone()] }),
                    (&d.dock_sn, bind()),
                    (&d.drone_sn, bind()),
                ];
                for (sn, cmd) in commands {
                    if let Err(e) = execute(&devices, sn, cmd, metadata("bench", ws, "bench")).await {
                        tracing::warn!(sn, error = %e, "bench registration failed");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    anyhow::ensure!(
        failed.load(Ordering::Relaxed) == 0,
        "{} registration commands failed",
        failed.load(Ordering::Relaxed)
    );
    // the projection, then the WebSocket's device directory (refreshed every 250 ms), catch up
    let expected = docks as i64 * 2;
    let deadline = Instant::now() + Duration::from_secs(60 + docks as u64 / 50);
    wait_bound(ctx.pool, prefix, expected, deadline).await
}

/// Waits until `expected` devices of `prefix` are bound in the read model, then lets the
/// WebSocket's device directory (refreshed every 250 ms) catch up.
pub(crate) async fn wait_bound(
    pool: &sqlx::PgPool,
    prefix: &str,
    expected: i64,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_devices WHERE device_sn LIKE $1 AND bound")
            .bind(format!("{prefix}%"))
            .fetch_one(pool)
            .await?;
        if n >= expected {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {expected} devices bound");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(())
}

/// What a WebSocket client received of the devices of one prefix.
struct WsStats {
    osd: AtomicU64,
    delay: Summary,
}

/// Counts OSD pushes for devices whose serial starts with `prefix`, and the delay of those that
/// carry their send time (`data.sim_sent_us`).
async fn ws_client(base: &str, token: &str, prefix: String, since_us: i64) -> anyhow::Result<Arc<WsStats>> {
    let url = format!("{}/api/v1/ws?x-auth-token={token}", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let stats = Arc::new(WsStats { osd: AtomicU64::new(0), delay: Summary::default() });
    let st = stats.clone();
    let sn = format!("\"sn\":\"{prefix}");
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let Ok(text) = m.to_text() else { continue };
            if !text.contains("_osd\"") || !text.contains(&sn) {
                continue;
            }
            let sent = text.find("\"sim_sent_us\":").and_then(|at| {
                let digits: String =
                    text[at + 14..].chars().skip_while(|c| *c == ' ').take_while(char::is_ascii_digit).collect();
                digits.parse::<i64>().ok()
            });
            match sent {
                // a late push of an earlier phase is not this phase's
                Some(sent) if sent < since_us => continue,
                Some(sent) => {
                    let now = chrono::Utc::now().timestamp_micros();
                    st.delay.observe(Duration::from_micros((now - sent).max(0) as u64));
                }
                None => {}
            }
            st.osd.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(stats)
}

/// Messages in the TELEMETRY stream.
async fn stored(js: &async_nats::jetstream::Context, names: &shared::nats::Names) -> anyhow::Result<u64> {
    Ok(js.get_stream(names.telemetry_stream()).await?.get_info().await?.state.messages)
}

/// Waits until `count` reaches `target` or stops moving for `quiet`; returns how long it took.
async fn settle<F, Fut>(target: u64, quiet: Duration, limit: Duration, count: F) -> anyhow::Result<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let t0 = Instant::now();
    let (mut last, mut moved) = (count().await?, Instant::now());
    while last < target && moved.elapsed() < quiet && t0.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count().await?;
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
    Ok(t0.elapsed())
}

/// What every phase needs.
pub struct Ctx<'a> {
    /// The broker's URL, and what it is, for the report.
    pub url: &'a str,
    pub broker: String,
    /// Whether the broker is the bench's own ([`Broker`]), which only the bench's load reaches.
    pub own_broker: bool,
    pub tag: String,
    pub base: &'a str,
    pub token: &'a str,
    pub pool: &'a sqlx::PgPool,
    pub js: &'a async_nats::jetstream::Context,
    pub names: &'a shared::nats::Names,
}

pub async fn run(ctx: &Ctx<'_>, seconds: u64) -> anyhow::Result<DeviceReport> {
    let dropped0 = broker_counters(ctx.url).await?.dropped;
    let templates = Arc::new(Templates::capture(ctx.url, &ctx.tag).await?);

    // 1. the broker alone
    eprintln!("bench: broker pub→sub baseline, {BLASTERS} publishers ({seconds} s)…");
    let raw = Arc::new(AtomicU64::new(0));
    let sub = raw_subscriber(ctx.url, raw.clone()).await?;
    let docks: Vec<SimDock> = (1..=SATURATION_DOCKS).map(|i| SimDock::new(&format!("{}R", ctx.tag), i)).collect();
    let until = Instant::now() + Duration::from_secs(seconds + 1);
    let blasting = {
        let (url, templates) = (ctx.url.to_string(), templates.clone());
        tokio::spawn(async move { blast(&url, &docks, &templates, until).await })
    };
    let t0 = Instant::now();
    let raw_rps = rate(seconds, || raw.load(Ordering::Relaxed)).await;
    let raw_offered_rps = blasting.await?? as f64 / t0.elapsed().as_secs_f64();
    sub.abort();

    // 2. through Hangar
    eprintln!("bench: Hangar at saturation ({seconds} s)…");
    let prefix = format!("{}S", ctx.tag);
    register(ctx, &prefix, SATURATION_DOCKS).await?;
    settle(u64::MAX, Duration::from_secs(2), Duration::from_secs(30), || stored(ctx.js, ctx.names)).await?;
    let ws = ws_client(ctx.base, ctx.token, prefix.clone(), 0).await?;
    let stored_now = Arc::new(AtomicU64::new(stored(ctx.js, ctx.names).await?));
    let counting = {
        let (js, names, stored_now) = (ctx.js.clone(), ctx.names.clone(), stored_now.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(n) = stored(&js, &names).await {
                    stored_now.store(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let docks: Vec<SimDock> = (1..=SATURATION_DOCKS).map(|i| SimDock::new(&prefix, i)).collect();
    let until = Instant::now() + Duration::from_secs(seconds + 1);
    let blasting = {
        let (url, templates) = (ctx.url.to_string(), templates.clone());
        tokio::spawn(async move { blast(&url, &docks, &templates, until).await })
    };
    let t0 = Instant::now();
    let (ws0, stored0) = (ws.osd.load(Ordering::Relaxed), stored_now.load(Ordering::Relaxed));
    let stored_rps = rate(seconds, || stored_now.load(Ordering::Relaxed)).await;
    let ws_rps = (ws.osd.load(Ordering::Relaxed) - ws0) as f64 / t0.elapsed().as_secs_f64();
    let sent = blasting.await??;
    let sat_offered_rps = sent as f64 / t0.elapsed().as_secs_f64();
    counting.abort();
    // What the broker queued for the bridge meanwhile drains before anything else is measured.
    let backlog =
        settle(stored0 + sent, Duration::from_secs(5), Duration::from_secs(300), || stored(ctx.js, ctx.names)).await?;
    let dropped1 = broker_counters(ctx.url).await?.dropped;
    Ok(DeviceReport {
        broker: ctx.broker.clone(),
        raw_offered_rps,
        raw_rps,
        sat_offered_rps,
        stored_rps,
        ws_rps,
        backlog_secs: backlog.as_secs_f64(),
        broker_dropped: dropped1.saturating_sub(dropped0),
    })
}

/// One fleet size.
pub struct FleetPhase {
    pub docks: usize,
    pub seconds: u64,
    pub sent: u64,
    pub broker_received: u64,
    /// The broker is the bench's own: what it received is exactly what the fleet sent, acks that
    /// crossed the simulator's disconnection included, and losses are counted from it.
    pub own_broker: bool,
    pub broker_dropped: u64,
    pub stored: u64,
    pub pushed: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Pushes the WebSocket session's queue dropped (`hangar_ws_dropped_total`).
    pub ws_queue_dropped: u64,
    /// How long after the fleet stopped JetStream had everything, and the client every push.
    pub stored_after: Duration,
    pub pushed_after: Duration,
}

pub struct FleetReport {
    pub broker: String,
    pub phases: Vec<FleetPhase>,
}

impl std::fmt::Display for FleetPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let accepted = if self.own_broker { self.broker_received } else { self.sent } as i64;
        write!(
            f,
            "fleet     {:>6} docks + aircraft at 1 Hz, QoS 1, {} s: sent {} ({:.0}/s; broker received {}, dropped {}), \
             stored {} (lost {}), pushed {} (lost {}, {} of them at the WebSocket session's queue); \
             push delay p50 {:.1} ms p99 {:.1} ms max {:.1} ms; all stored {:.1} s and pushed {:.1} s after the last was sent",
            self.docks,
            self.seconds,
            self.sent,
            self.sent as f64 / self.seconds as f64,
            self.broker_received,
            self.broker_dropped,
            self.stored,
            accepted - self.stored as i64,
            self.pushed,
            accepted - self.pushed as i64,
            self.ws_queue_dropped,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.stored_after.as_secs_f64(),
            self.pushed_after.as_secs_f64(),
        )
    }
}

impl std::fmt::Display for FleetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broker    {}", self.broker)?;
        for p in &self.phases {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

/// Fleets of each size in `sizes`, one after the other.
pub async fn fleet(ctx: &Ctx<'_>, sizes: &[usize], seconds: u64) -> anyhow::Result<FleetReport> {
    let mut phases = Vec::new();
    // Every size uses the first docks of one registered fleet.
    let prefix = format!("{}F", ctx.tag);
    let largest = sizes.iter().copied().max().unwrap_or(0);
    eprintln!("bench: registering {largest} docks and their aircraft…");
    register(ctx, &prefix, largest).await?;
    for &docks in sizes {
        settle(u64::MAX, Duration::from_secs(2), Duration::from_secs(60), || stored(ctx.js, ctx.names)).await?;
        let ws = ws_client(ctx.base, ctx.token, prefix.clone(), chrono::Utc::now().timestamp_micros()).await?;
        let before = broker_counters(ctx.url).await?;
        let stored0 = stored(ctx.js, ctx.names).await?;
        let ws_dropped = shared::metrics::counter("hangar_ws_dropped_total", &[]);
        let ws_dropped0 = ws_dropped.load(Ordering::Relaxed);
        eprintln!("bench: {docks} docks and their aircraft at 1 Hz ({seconds} s)…");
        let fleet = Fleet::start(FleetConfig {
            broker: ctx.url.into(),
            docks,
            osd_hz: 1.0,
            sn_prefix: prefix.clone(),
            hms_every: None,
            announce_topology: false,
            osd_send_time: true,
            ..Default::default()
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        // Sent: what the broker acknowledged (every QoS 1 publish of this fleet is an OSD message).
        let sent = fleet.stop().await.acked;
        let stopped = Instant::now();
        // Quiet for longer than a reconnection of the bridge takes (keep-alive 10 s, then backoff),
        // so that a bridge catching up after a reconnection is not taken for one that is done.
        settle(stored0 + sent, Duration::from_secs(20), Duration::from_secs(300), || stored(ctx.js, ctx.names)).await?;
        let stored_after = stopped.elapsed();
        let ws_count = || async { anyhow::Ok(ws.osd.load(Ordering::Relaxed)) };
        settle(sent, Duration::from_secs(3), Duration::from_secs(120), ws_count).await?;
        let pushed_after = stopped.elapsed();
        let after = broker_counters(ctx.url).await?;
        let q = |p| ws.delay.quantile(p).unwrap_or_default();
        phases.push(FleetPhase {
            docks,
            seconds,
            sent,
            broker_received: after.received.saturating_sub(before.received),
            own_broker: ctx.own_broker,
            broker_dropped: after.dropped.saturating_sub(before.dropped),
            stored: stored(ctx.js, ctx.names).await? - stored0,
            pushed: ws.osd.load(Ordering::Relaxed),
            p50: q(0.5),
            p99: q(0.99),
            max: q(1.0),
            ws_queue_dropped: ws_dropped.load(Ordering::Relaxed) - ws_dropped0,
            stored_after,
            pushed_after,
        });
        if let Some(p) = phases.last() {
            eprintln!("{p}");
        }
    }
    Ok(FleetReport { broker: ctx.broker.clone(), phases })
}
