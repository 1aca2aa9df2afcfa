//! `hangar bench --only services`: a command through the whole path (HTTP → command-api → event
//! store and outbox → DEVICE_OUT → mqtt-bridge → Mosquitto → simulated dock → services_reply →
//! DEVICE_IN → device inbox → the waiting HTTP caller), beside the broker's own request/reply round
//! trip with the same simulated docks, measured in the same run.
//!
//! Phases:
//! 1. baseline: the broker's own request/reply round trip at the paced rate (one plain client asks,
//!    another answers at once), so the overhead reported includes the simulated dock's own time;
//! 2. Hangar at the same paced rate (p50/p99, and the overhead over the baseline), then at
//!    saturation (commands per second);
//! 3. 1,000 commands at once to docks that never answer: every one must be answered 211001 at its
//!    timeout, with the process's memory measured before and after.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mqtt_bridge::sim::{Answer, Fleet, FleetConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use shared::Config;
use tokio::sync::oneshot;

pub struct ServicesReport {
    pub rate: f64,
    pub broker_p50: Duration,
    pub broker_p99: Duration,
    pub paced_rps: f64,
    pub paced_p50: Duration,
    pub paced_p99: Duration,
    pub paced_errors: u64,
    pub saturation_rps: f64,
    pub saturation_p99: Duration,
    pub silent: usize,
    pub silent_timed_out: usize,
    pub silent_min: Duration,
    pub silent_max: Duration,
    pub timeout: Duration,
    /// The process's resident memory before the silent commands and after each round of them.
    pub rss_mib: Vec<f64>,
}

impl std::fmt::Display for ServicesReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "baseline  broker request/reply round trip at {:.0}/s          p50 {:.1} ms  p99 {:.1} ms",
            self.rate,
            ms(self.broker_p50),
            ms(self.broker_p99)
        )?;
        writeln!(
            f,
            "hangar    HTTP command → dock → HTTP answer at {:.0}/s ({:.0} done/s)  p50 {:.1} ms  p99 {:.1} ms  errors {}",
            self.rate,
            self.paced_rps,
            ms(self.paced_p50),
            ms(self.paced_p99),
            self.paced_errors
        )?;
        writeln!(
            f,
            "hangar    overhead over the broker's round trip             p50 {:+.1} ms  p99 {:+.1} ms",
            ms(self.paced_p50) - ms(self.broker_p50),
            ms(self.paced_p99) - ms(self.broker_p99)
        )?;
        writeln!(
            f,
            "hangar    commands at saturation                {:>8.0} cmd/s  p99 {:.1} ms",
            self.saturation_rps,
            ms(self.saturation_p99)
        )?;
        let rss: Vec<String> = self.rss_mib.iter().map(|m| format!("{m:.0}")).collect();
        write!(
            f,
            "hangar    {} commands to silent docks (2 rounds of {SILENT}): {} answered 211001 after {:.2}–{:.2} s \
             (timeout {:.1} s); memory before and after each round {} MiB",
            self.silent,
            self.silent_timed_out,
            self.silent_min.as_secs_f64(),
            self.silent_max.as_secs_f64(),
            self.timeout.as_secs_f64(),
            rss.join(" → ")
        )
    }
}

const DOCKS: usize = 50;
const RATE: f64 = 200.0;
const SILENT: usize = 1000;

pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

type Waiting = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<()>>>>;

fn mqtt_client(name: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(format!("bench-{name}-{}", uuid::Uuid::new_v4().simple()), "127.0.0.1", 1883);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(1000);
    mqtt_bridge::mqtt::client(o, 10_000)
}

/// Polls an event loop until the first SubAck, then hands each publish to `on_publish`.
async fn poll_subscribed(
    mut el: rumqttc::EventLoop,
    on_publish: impl Fn(rumqttc::Publish) + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (subscribed_tx, subscribed_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = el.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => on_publish(p),
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx).await.context("bench subscription")??;
    Ok(task)
}

/// The broker's own request/reply round trip: one client sends a command-sized request (QoS 1, as
/// Hangar's commands go), another answers at once, and the first waits for the answer by `tid`.
pub(crate) async fn broker_round_trips(seconds: u64) -> anyhow::Result<Vec<Duration>> {
    let root = format!("hangar-bench/{}", uuid::Uuid::new_v4().simple());
    let (responder, responder_el) = mqtt_client("echo");
    responder.subscribe(format!("{root}/request"), QoS::AtLeastOnce).await?;
    let r = responder.clone();
    let reply_topic = format!("{root}/reply");
    let echo = poll_subscribed(responder_el, move |p| {
        let _ = r.try_publish(reply_topic.clone(), QoS::AtLeastOnce, false, p.payload);
    })
    .await?;
    let (client, el) = mqtt_client("rr");
    client.subscribe(format!("{root}/reply"), QoS::AtLeastOnce).await?;
    let waiting: Waiting = Arc::default();
    let w = waiting.clone();
    let poller = poll_subscribed(el, move |p| {
        let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
        let tx = v["tid"].as_str().and_then(|t| w.lock().ok()?.remove(t));
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
    })
    .await?;
    let samples = paced(seconds, |_| {
        let (client, waiting, topic) = (client.clone(), waiting.clone(), format!("{root}/request"));
        async move {
            let tid = uuid::Uuid::new_v4().to_string();
            let (tx, rx) = oneshot::channel();
            waiting.lock().ok()?.insert(tid.clone(), tx);
            let body = json!({"tid": tid, "bid": tid, "timestamp": 0, "method": "supplement_light_open", "data": ""});
            client.publish(topic, QoS::AtLeastOnce, false, body.to_string()).await.ok()?;
            tokio::time::timeout(Duration::from_secs(10), rx).await.ok()?.ok()
        }
    })
    .await;
    poller.abort();
    echo.abort();
    Ok(samples.into_iter().filter_map(|(d, ok)| ok.then_some(d)).collect())
}

/// Starts one operation every 1/RATE s for `seconds`; returns each one's duration and success.
async fn paced<F, Fut>(seconds: u64, op: F) -> Vec<(Duration, bool)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Option<()>> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let mut i = 0;
    while Instant::now() < end {
        tick.tick().await;
        let fut = op(i);
        i += 1;
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = fut.await.is_some();
            (t.elapsed(), ok)
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(r) = t.await {
            out.push(r);
        }
    }
    out
}

/// Waits until every one of `docks` is bound and online (simulated docks bind themselves).
pub(crate) async fn wait_bound(pool: &sqlx::PgPool, docks: &[String], within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rm_devices WHERE device_sn = ANY($1) AND bound AND online")
                .bind(docks)
                .fetch_one(pool)
                .await?;
        if n as usize == docks.len() {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {} docks bound", docks.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn command(http: &reqwest::Client, base: &str, token: &str, sn: &str) -> Option<i64> {
    let r: Value = http
        .post(format!("{base}/control/api/v1/devices/{sn}/jobs/supplement_light_open"))
        .header("x-auth-token", token)
        .json(&json!({}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    r["code"].as_i64()
}

pub async fn run(
    config: &Config,
    base: &str,
    token: &str,
    pool: &sqlx::PgPool,
    seconds: u64,
) -> anyhow::Result<ServicesReport> {
    let tag = config.nats_prefix.to_ascii_uppercase();
    let fleet = Fleet::start(FleetConfig {
        docks: DOCKS,
        osd_hz: 0.5,
        sn_prefix: format!("{tag}C"),
        hms_every: None,
        binding_code: Some("qwe".into()),
        ..Default::default()
    })
    .await?;
    fleet.ready(Duration::from_secs(30)).await?;
    let docks: Vec<String> = fleet.docks().iter().map(|d| d.dock_sn.clone()).collect();

    // the docks bind themselves with the workspace's code; wait until they are bound and online, so
    // that both measured phases see the same quiet docks
    wait_bound(pool, &docks, Duration::from_secs(60)).await?;

    eprintln!("bench: broker request/reply at {RATE}/s ({seconds} s)…");
    let mut broker = broker_round_trips(seconds).await?;
    broker.sort();

    eprintln!("bench: Hangar commands at {RATE}/s ({seconds} s)…");
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let samples = paced(seconds, |i| {
        let (http, base, token, sn, errors) =
            (http.clone(), base.to_string(), token.to_string(), docks[i % DOCKS].clone(), errors.clone());
        async move {
            let ok = command(&http, &base, &token, &sn).await == Some(0);
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            ok.then_some(())
        }
    })
    .await;
    let paced_rps = samples.len() as f64 / started.elapsed().as_secs_f64();
    let mut paced_ok: Vec<Duration> = samples.iter().filter(|(_, ok)| *ok).map(|(d, _)| *d).collect();
    paced_ok.sort();

    eprintln!("bench: Hangar commands at saturation, 32 clients ({seconds} s)…");
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for c in 0..32 {
        let (http, base, token, docks, done) =
            (http.clone(), base.to_string(), token.to_string(), docks.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < end {
                let t = Instant::now();
                if command(&http, &base, &token, &docks[i % DOCKS]).await == Some(0) {
                    done.fetch_add(1, Ordering::Relaxed);
                    lat.push(t.elapsed());
                }
                i += 32;
            }
            lat
        }));
    }
    let t0 = Instant::now();
    let mut sat = Vec::new();
    for c in clients {
        sat.extend(c.await.unwrap_or_default());
    }
    let saturation_rps = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    sat.sort();

    // twice: memory that grows in the first round (connections, buffers) must not grow again
    fleet.set_default_answer(Answer::silent());
    let timeout = Duration::from_millis(config.device_reply_timeout_ms);
    let mut rss = vec![rss_mib()];
    let mut silent = Vec::new();
    for round in 1..=2 {
        eprintln!("bench: {SILENT} commands to silent docks, round {round}…");
        let mut waiting = Vec::with_capacity(SILENT);
        for i in 0..SILENT {
            let (http, base, token, sn) = (http.clone(), base.to_string(), token.to_string(), docks[i % DOCKS].clone());
            waiting.push(tokio::spawn(async move {
                let t = Instant::now();
                let code = command(&http, &base, &token, &sn).await;
                (t.elapsed(), code)
            }));
        }
        for w in waiting {
            if let Ok(r) = w.await {
                silent.push(r);
            }
        }
        rss.push(rss_mib());
    }
    fleet.stop().await;
    let timed_out: Vec<Duration> = silent.iter().filter(|(_, c)| *c == Some(211001)).map(|(d, _)| *d).collect();
    Ok(ServicesReport {
        rate: RATE,
        broker_p50: percentile(&broker, 0.5),
        broker_p99: percentile(&broker, 0.99),
        paced_rps,
        paced_p50: percentile(&paced_ok, 0.5),
        paced_p99: percentile(&paced_ok, 0.99),
        paced_errors: errors.load(Ordering::Relaxed),
        saturation_rps,
        saturation_p99: percentile(&sat, 0.99),
        silent: silent.len(),
        silent_timed_out: timed_out.len(),
        silent_min: timed_out.iter().min().copied().unwrap_or_default(),
        silent_max: timed_out.iter().max().copied().unwrap_or_default(),
        timeout,
        rss_mib: rss,
    })
}
