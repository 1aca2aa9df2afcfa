//! `hangar bench --only devices`: OSD from simulated docks through Mosquitto, the bridge and
//! JetStream to a WebSocket client, beside the broker's own pub→sub rate for the same messages
//! from the same simulator in the same run.
//!
//! Three phases:
//! 1. raw broker: the simulator at full speed, one plain MQTT subscriber counting what arrives;
//! 2. Hangar at full speed: the same simulator, every device bound, counting what JetStream stored
//!    and what the WebSocket client received;
//! 3. DJI's reference load, 1,000 docks and 1,000 aircraft at 1 Hz (2,000 msg/s), plus a probe dock
//!    whose OSD carries a send time and a sequence number: end-to-end latency and exact loss.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use mqtt_bridge::sim::{Fleet, FleetConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use shared::domain::device::DeviceCommand;
use shared::event_store::{cqrs, execute, metadata};
use shared::metrics::Summary;
use shared::Config;
use tokio::sync::Mutex;

pub struct DeviceReport {
    pub raw_rps: f64,
    pub raw_offered_rps: f64,
    pub stored_rps: f64,
    pub ws_rps: f64,
    pub sat_offered_rps: f64,
    pub ref_sent: u64,
    pub ref_stored: u64,
    pub ref_ws: u64,
    pub probes_sent: u64,
    pub probes_received: u64,
    pub p50: Duration,
    pub p99: Duration,
}

impl std::fmt::Display for DeviceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "baseline  broker pub→sub (simulator offered {:.0}/s)  {:>8.0} msg/s",
            self.raw_offered_rps, self.raw_rps
        )?;
        writeln!(
            f,
            "hangar    OSD stored in JetStream (offered {:.0}/s)     {:>8.0} msg/s = {:.1}% of broker",
            self.sat_offered_rps,
            self.stored_rps,
            100.0 * self.stored_rps / self.raw_rps
        )?;
        writeln!(
            f,
            "hangar    OSD pushed to a WebSocket client             {:>8.0} msg/s = {:.1}% of broker",
            self.ws_rps,
            100.0 * self.ws_rps / self.raw_rps
        )?;
        writeln!(
            f,
            "hangar    2,000 msg/s (1,000 docks + 1,000 aircraft at 1 Hz): sent {} stored {} pushed {}; probes {}/{} received, p50 {:.1} ms, p99 {:.1} ms",
            self.ref_sent, self.ref_stored, self.ref_ws, self.probes_received, self.probes_sent, ms(self.p50), ms(self.p99)
        )
    }
}

fn mqtt(id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(o, 10_000)
}

/// Counts OSD arriving at a plain subscriber.
async fn raw_subscriber(counter: Arc<AtomicU64>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (client, mut el) = mqtt(&format!("bench-raw-{}", uuid::Uuid::new_v4().simple()));
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

/// Offered and delivered rates over a window.
async fn window<F: Fn() -> u64>(fleet: &Fleet, seconds: u64, delivered: F) -> (f64, f64) {
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    let (s0, d0, t0) = (fleet.stats().osd, delivered(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (s1, d1, dt) = (fleet.stats().osd, delivered(), t0.elapsed().as_secs_f64());
    ((s1 - s0) as f64 / dt, (d1 - d0) as f64 / dt)
}

pub(crate) fn fleet_config(prefix: &str, docks: usize, hz: f64) -> FleetConfig {
    FleetConfig { docks, osd_hz: hz, sn_prefix: prefix.into(), hms_every: None, ..Default::default() }
}

pub(crate) async fn bind_all(pool: &sqlx::PgPool, prefix: &str, expected: i64) -> anyhow::Result<()> {
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
    // let the projection and the WebSocket's device directory catch up
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

pub(crate) struct WsStats {
    pub(crate) osd: AtomicU64,
    pub(crate) probes: Mutex<HashSet<u64>>,
    pub(crate) latency: Summary,
}

/// Counts OSD pushes for devices whose serial starts with `prefix`, and the probe's latency.
pub(crate) async fn ws_client(
    base: &str,
    token: &str,
    prefix: String,
    probe_sn: String,
) -> anyhow::Result<Arc<WsStats>> {
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

pub async fn run(
    config: &Config,
    base: &str,
    token: &str,
    pool: &sqlx::PgPool,
    js: &async_nats::jetstream::Context,
    names: &shared::nats::Names,
    seconds: u64,
) -> anyhow::Result<DeviceReport> {
    // 1. the broker alone
    eprintln!("bench: broker pub→sub baseline ({seconds} s)…");
    let raw = Arc::new(AtomicU64::new(0));
    let sub = raw_subscriber(raw.clone()).await?;
    let tag = &config.nats_prefix.to_ascii_uppercase();
    let fleet = Fleet::start(fleet_config(&format!("{tag}R"), 500, 20.0)).await?;
    let (raw_offered_rps, raw_rps) = window(&fleet, seconds, || raw.load(Ordering::Relaxed)).await;
    fleet.stop().await;
    sub.abort();

    // 2. through Hangar at full speed
    eprintln!("bench: Hangar at full speed ({seconds} s)…");
    let prefix = format!("{tag}S");
    let ws = ws_client(base, token, prefix.clone(), "no-probe".into()).await?;
    let stream = js.get_stream(names.telemetry_stream()).await?;
    let stored = Arc::new(AtomicU64::new(0));
    let fleet = Fleet::start(fleet_config(&prefix, 500, 20.0)).await?;
    bind_all(pool, &prefix, 1000).await?;
    let counting = {
        let (stream, stored) = (stream.clone(), stored.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(i) = stream.get_info().await {
                    stored.store(i.state.messages, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let st = stored.clone();
    let t0 = Instant::now();
    let ws0 = ws.osd.load(Ordering::Relaxed);
    let (sat_offered_rps, stored_rps) = window(&fleet, seconds, || st.load(Ordering::Relaxed)).await;
    let ws_rps = (ws.osd.load(Ordering::Relaxed) - ws0) as f64 / t0.elapsed().as_secs_f64();
    fleet.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3. the reference load with probes
    eprintln!("bench: 1,000 docks and 1,000 aircraft at 1 Hz ({seconds} s)…");
    let prefix = format!("{tag}K");
    let probe = format!("{prefix}PROBE");
    let ws = ws_client(base, token, prefix.clone(), probe.clone()).await?;
    let fleet = Fleet::start(fleet_config(&prefix, 1000, 1.0)).await?;
    let (pc, mut pel) = mqtt(&format!("bench-probe-{}", uuid::Uuid::new_v4().simple()));
    let acked = Arc::new(AtomicU64::new(0));
    {
        let acked = acked.clone();
        tokio::spawn(async move {
            loop {
                match pel.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    let topo = json!({"tid": uuid::Uuid::new_v4().to_string(), "bid": "b", "timestamp": 0, "method": "update_topo",
        "data": {"domain": 3, "type": 2, "sub_type": 0, "thing_version": "1.2.0", "sub_devices": []}});
    pc.publish(format!("sys/product/{probe}/status"), QoS::AtLeastOnce, false, topo.to_string()).await?;
    bind_all(pool, &prefix, 2001).await?;
    let stored0 = stream.get_info().await?.state.messages;
    let sent0 = fleet.stats().osd;
    let ws0 = ws.osd.load(Ordering::Relaxed);
    let probes_sent = seconds * 20;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for seq in 0..probes_sent {
        tick.tick().await;
        let msg = json!({"tid": uuid::Uuid::new_v4().to_string(), "bid": "b", "timestamp": shared::time::now_ms(), "gateway": probe,
            "data": {"mode_code": 0, "bench_seq": seq, "bench_sent_us": chrono::Utc::now().timestamp_micros()}});
        pc.publish(format!("thing/product/{probe}/osd"), QoS::AtLeastOnce, false, msg.to_string()).await?;
    }
    let stats = fleet.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    counting.abort();
    let ref_sent = stats.osd - sent0 + probes_sent;
    let ref_stored = stream.get_info().await?.state.messages - stored0;
    let ref_ws = ws.osd.load(Ordering::Relaxed) - ws0;
    let probes_received = ws.probes.lock().await.len() as u64;
    let q = |p| ws.latency.quantile(p).unwrap_or_default();
    Ok(DeviceReport {
        raw_rps,
        raw_offered_rps,
        stored_rps,
        ws_rps,
        sat_offered_rps,
        ref_sent,
        ref_stored,
        ref_ws,
        probes_sent,
        probes_received,
        p50: q(0.5),
        p99: q(0.99),
    })
}
