//! `hangar bench`: upload-callbacks per second at saturation, latency at half that load, and
//! projection lag, beside PostgreSQL's own single-row insert rate (pgbench) measured in the same run
//! against the same server; OSD throughput (`bench_devices`); uploads through the S3 endpoint
//! beside a plain file copy (`bench_storage`); `rebuild all` and `export` beside draining the
//! event stream (`bench_replay`).
//!
//! It starts a whole Hangar in this process on a fresh database and NATS prefix, so it measures
//! the real path: HTTP → command → Postgres (event + outbox) → relay → JetStream → projector →
//! read model. Load comes from this process too; on a small machine that shares the cores.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use shared::metrics::{self, Summary};
use shared::{Config, Shutdown};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

use crate::{start, Components};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent clients at saturation (pgbench uses the same number).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Only one part: `media` (upload-callbacks against pgbench), `devices` (OSD to JetStream and
    /// the WebSocket at saturation against the broker's own ceiling), `fleet` (1,000 to 10,000
    /// docks at 1 Hz: loss and push delay), `services` (commands to docks and their answers against
    /// the broker's own request/reply), `storage` (an upload through the S3 endpoint against a
    /// file copy), `wpml` (reading a 1,000-waypoint KMZ against inflating it) or `jobs` (1,000
    /// timed jobs on 1,000 docks due within one minute, against the broker's round trip);
    /// `replay` (`rebuild all` and `export` of a history against draining its JetStream stream); or
    /// `replicas` (run only when asked: the upload-callback and device benches against one and
    /// against three processes of each service, with their ratios and loss and duplicate counts).
    #[arg(long)]
    pub only: Option<String>,
    /// Fleet sizes of `fleet`, in docks (each with its aircraft), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub fleet_docks: Vec<usize>,
    /// Upload-callbacks in the history that the replay part reads back.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
}

pub const WORKSPACE: &str = "e3dea0f5-37f2-4d79-ae58-490af3228069";

pub struct Report {
    pub media: Option<MediaReport>,
    pub devices: Option<crate::bench_devices::DeviceReport>,
    pub fleet: Option<crate::bench_devices::FleetReport>,
    pub services: Option<crate::bench_services::ServicesReport>,
    pub storage: Option<crate::bench_storage::StorageReport>,
    pub wpml: Option<crate::bench_wpml::WpmlReport>,
    pub jobs: Option<crate::bench_jobs::JobsReport>,
    pub replicas: Option<crate::bench_replicas::ReplicasReport>,
    pub replay: Option<crate::bench_replay::ReplayReport>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(m) = &self.media {
            writeln!(f, "{m}")?;
        }
        if let Some(d) = &self.devices {
            writeln!(f, "{d}")?;
        }
        if let Some(d) = &self.fleet {
            writeln!(f, "{d}")?;
        }
        if let Some(s) = &self.services {
            writeln!(f, "{s}")?;
        }
        if let Some(s) = &self.storage {
            writeln!(f, "{s}")?;
        }
        if let Some(w) = &self.wpml {
            writeln!(f, "{w}")?;
        }
        if let Some(j) = &self.jobs {
            writeln!(f, "{j}")?;
        }
        if let Some(r) = &self.replay {
            write!(f, "{r}")?;
        }
        if let Some(r) = &self.replicas {
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

pub struct MediaReport {
    pub pgbench_tps: f64,
    pub saturation_rps: f64,
    pub saturation_p50: Duration,
    pub saturation_p99: Duration,
    pub half_rps: f64,
    pub half_p50: Duration,
    pub half_p99: Duration,
    pub lag_p50: Duration,
    pub lag_p99: Duration,
    /// pgbench's own single-row INSERT latency at the half-load rate: what the disk and the
    /// machine allow any committed write here.
    pub pgbench_half_p50: Duration,
    pub pgbench_half_p99: Duration,
    pub errors: u64,
}

impl std::fmt::Display for MediaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(f, "baseline  pgbench single-row INSERT      {:>9.0} tx/s", self.pgbench_tps)?;
        writeln!(
            f,
            "hangar    upload-callback, saturation    {:>9.0} req/s  = {:.1}% of pgbench   p50 {:.1} ms  p99 {:.1} ms",
            self.saturation_rps,
            100.0 * self.saturation_rps / self.pgbench_tps,
            ms(self.saturation_p50),
            ms(self.saturation_p99)
        )?;
        writeln!(
            f,
            "hangar    upload-callback, half load     {:>9.0} req/s                         p50 {:.1} ms  p99 {:.1} ms",
            self.half_rps,
            ms(self.half_p50),
            ms(self.half_p99)
        )?;
        writeln!(
            f,
            "baseline  pgbench INSERT at the same rate                                  p50 {:.1} ms  p99 {:.1} ms",
            ms(self.pgbench_half_p50),
            ms(self.pgbench_half_p99)
        )?;
        writeln!(
            f,
            "hangar    projection lag (half load)     p50 {:.1} ms  p99 {:.1} ms",
            ms(self.lag_p50),
            ms(self.lag_p99)
        )?;
        write!(f, "errors    {}", self.errors)
    }
}

pub async fn run(base: Config, args: BenchArgs) -> anyhow::Result<Report> {
    if args.only.as_deref() == Some("replicas") {
        // Its systems are child processes of its own: no Hangar in this process.
        let replicas = Some(crate::bench_replicas::run(&base, &args).await?);
        return Ok(Report {
            media: None,
            devices: None,
            fleet: None,
            replay: None,
            services: None,
            storage: None,
            wpml: None,
            jobs: None,
            replicas,
        });
    }
    let tag = format!("bench{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let mut config = base.clone();
    let opts: PgConnectOptions = base.database_url.parse().context("database URL")?;
    config.database_url = opts.clone().database(&tag).to_url_lossy().to_string();
    config.nats_prefix = tag.clone();
    // a port of its own that the links it gives docks name (the docks download wayline files)
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    config.listen = format!("127.0.0.1:{port}").parse()?;
    config.public_url = format!("http://127.0.0.1:{port}");
    config.storage_dir = std::env::temp_dir().join(&tag);
    config.s3_endpoint_listen = "127.0.0.1:0".parse()?;

    config.mqtt_client_id = format!("{tag}-bridge");
    config.mqtt_share_group = tag.clone();
    // Device load alone runs on a broker of its own with Hangar's settings, out of the way of any
    // other Hangar on the machine's broker (each would receive every message of the load).
    let own_broker = match args.only.as_deref() {
        Some("devices" | "fleet") => Some(crate::bench_devices::Broker::start()?),
        _ => None,
    };
    let broker = match &own_broker {
        Some(b) => {
            config.mqtt_url = b.url.clone();
            format!("{}, the bench's own with mqtt-bridge/mosquitto.conf", b.url)
        }
        None => format!("{}, the machine's", config.mqtt_url),
    };
    let shutdown = Shutdown::new();
    let running = start(config.clone(), Components::ALL, shutdown).await?;
    let base_url = format!("http://{}", running.addr.context("no API address")?);
    let result = async {
        let media = match args.only.as_deref() {
            None | Some("media") => Some(measure(&config, &base_url, &args).await?),
            _ => None,
        };
        let device_ctx = async {
            let http = reqwest::Client::new();
            let token = login(&http, &base_url, "adminPC", "adminPC", 1).await?;
            let pool = shared::db::connect(&config.database_url, 8).await?;
            let js = async_nats::jetstream::new(shared::nats::connect(&config).await?);
            anyhow::Ok((token, pool, js))
        };
        let names = shared::nats::Names::new(&config.nats_prefix);
        let (devices, fleet) = match args.only.as_deref() {
            None | Some("devices") | Some("fleet") => {
                let (token, pool, js) = device_ctx.await?;
                let ctx = crate::bench_devices::Ctx {
                    url: &config.mqtt_url,
                    broker: broker.clone(),
                    own_broker: own_broker.is_some(),
                    tag: config.nats_prefix.to_ascii_uppercase(),
                    base: &base_url,
                    token: &token,
                    pool: &pool,
                    js: &js,
                    names: &names,
                };
                let devices = match args.only.as_deref() {
                    None | Some("devices") => Some(crate::bench_devices::run(&ctx, args.seconds).await?),
                    _ => None,
                };
                let fleet = match args.only.as_deref() {
                    None | Some("fleet") => {
                        Some(crate::bench_devices::fleet(&ctx, &args.fleet_docks, args.seconds).await?)
                    }
                    _ => None,
                };
                (devices, fleet)
            }
            _ => (None, None),
        };
        let services = match args.only.as_deref() {
            None | Some("services") => {
                let http = reqwest::Client::new();
                let token = login(&http, &base_url, "adminPC", "adminPC", 1).await?;
                let pool = shared::db::connect(&config.database_url, 8).await?;
                Some(crate::bench_services::run(&config, &base_url, &token, &pool, args.seconds).await?)
            }
            _ => None,
        };
        let storage = match args.only.as_deref() {
            None | Some("storage") => {
                let http = reqwest::Client::new();
                let token = login(&http, &base_url, "pilot", "pilot123", 2).await?;
                Some(crate::bench_storage::run(&config, &base_url, &token).await?)
            }
            _ => None,
        };
        let wpml = match args.only.as_deref() {
            None | Some("wpml") => Some(crate::bench_wpml::run(args.seconds)?),
            _ => None,
        };
        let jobs = match args.only.as_deref() {
            None | Some("jobs") => {
                let http = reqwest::Client::new();
                let token = login(&http, &base_url, "adminPC", "adminPC", 1).await?;
                let pool = shared::db::connect(&config.database_url, 8).await?;
                Some(crate::bench_jobs::run(&config, &base_url, &token, &pool).await?)
            }
            _ => None,
        };
        let replay = match args.only.as_deref() {
            None | Some("replay") => {
                let pool = shared::db::connect(&config.database_url, 4).await?;
                let js = async_nats::jetstream::new(shared::nats::connect(&config).await?);
                Some(crate::bench_replay::run(&config, &base_url, &pool, &js, args.events, args.concurrency).await?)
            }
            _ => None,
        };
        Ok(Report { media, devices, fleet, services, storage, wpml, jobs, replay, replicas: None })
    }
    .await;
    running.stop().await.ok();
    drop(own_broker);
    cleanup(&base, &tag).await;
    result
}

async fn measure(config: &Config, base: &str, args: &BenchArgs) -> anyhow::Result<MediaReport> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).build()?;
    let token = login(&http, base, "pilot", "pilot123", 2).await?;
    let ws = WORKSPACE;
    let url = format!("{base}/media/api/v1/workspaces/{ws}/upload-callback");

    eprintln!("bench: pgbench baseline ({} s, {} clients)…", args.seconds, args.concurrency);
    let pgbench_tps = pgbench(config, args)?;

    eprintln!("bench: saturation ({} s, {} clients)…", args.seconds, args.concurrency);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let sat = Arc::new(Summary::default());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, url, token, counter, errors, sat) =
            (http.clone(), url.clone(), token.clone(), counter.clone(), errors.clone(), sat.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if send(&http, &url, &token, n).await {
                    sat.observe(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let saturation_rps = sat.count() as f64 / started.elapsed().as_secs_f64();
    wait_projected(config, counter.load(Ordering::Relaxed) - errors.load(Ordering::Relaxed)).await?;

    let half_rps = (saturation_rps / 2.0).max(1.0);
    eprintln!("bench: half load ({half_rps:.0} req/s for {} s)…", args.seconds);
    let lag = metrics::summary("hangar_projection_lag_seconds", &[("projection", "media_files")]);
    lag.reset();
    let half = Arc::new(Summary::default());
    let total = (half_rps * args.seconds as f64) as u64;
    let interval = Duration::from_secs_f64(1.0 / half_rps);
    let start_at = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start_at + interval.mul_f64(i as f64)).await;
        let (http, url, token, errors, half) = (http.clone(), url.clone(), token.clone(), errors.clone(), half.clone());
        let n = counter.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            if send(&http, &url, &token, n).await {
                half.observe(t.elapsed());
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    wait_projected(config, counter.load(Ordering::Relaxed) - errors.load(Ordering::Relaxed)).await?;

    eprintln!("bench: pgbench at the same rate ({half_rps:.0} tx/s for {} s)…", args.seconds);
    let (pgbench_half_p50, pgbench_half_p99) = pgbench_latency(config, args, half_rps)?;

    let q = |s: &Summary, p| s.quantile(p).unwrap_or_default();
    Ok(MediaReport {
        pgbench_half_p50,
        pgbench_half_p99,
        pgbench_tps,
        saturation_rps,
        saturation_p50: q(&sat, 0.5),
        saturation_p99: q(&sat, 0.99),
        half_rps,
        half_p50: q(&half, 0.5),
        half_p99: q(&half, 0.99),
        lag_p50: q(&lag, 0.5),
        lag_p99: q(&lag, 0.99),
        errors: errors.load(Ordering::Relaxed),
    })
}

pub(crate) async fn login(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
    flag: i32,
) -> anyhow::Result<String> {
    // the seed users are projected shortly after start-up
    for _ in 0..100 {
        let r: Value = http
            .post(format!("{base}/manage/api/v1/login"))
            .json(&json!({"username": username, "password": password, "flag": flag}))
            .send()
            .await?
            .json()
            .await?;
        if let Some(t) = r["data"]["access_token"].as_str() {
            return Ok(t.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("could not log in")
}

pub(crate) async fn send(http: &reqwest::Client, url: &str, token: &str, n: u64) -> bool {
    let body = json!({
        "object_key": format!("media/{WORKSPACE}/bench/DJI_{n:08}.JPG"),
        "name": format!("DJI_{n:08}.JPG"),
        "path": "bench",
        "fingerprint": format!("{n:032x}"),
        "sub_file_type": 0,
        "ext": {"drone_model_key": "0-67-0", "file_group_id": "", "is_original": true,
                "payload_model_key": "1-52-0", "tinny_fingerprint": format!("tiny{n}"), "sn": "1581F5BMD228Q00A82XX"},
        "metadata": {"absolute_altitude": 56.2, "relative_altitude": 41.1, "gimbal_yaw_degree": -4.3,
                     "created_time": "2026-11-26T10:00:00+08:00", "shoot_position": {"lat": 22.57, "lng": 113.94}}
    });
    match http.post(url).header("x-auth-token", token).json(&body).send().await {
        Ok(r) => r.json::<Value>().await.map(|v| v["code"] == 0).unwrap_or(false),
        Err(_) => false,
    }
}

pub(crate) async fn wait_projected(config: &Config, expected: u64) -> anyhow::Result<()> {
    let pool = shared::db::connect(&config.database_url, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_media_files").fetch_one(&pool).await?;
        if n as u64 >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {expected} files projected after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const PGBENCH_SCRIPT: &str = "INSERT INTO bench_insert (payload) VALUES ('{\"fingerprint\": \"x\", \"n\": 1}');\n";

/// Runs pgbench with `extra` arguments on a single-row INSERT of a small JSON document into a
/// table of its own, and returns its standard output.
fn run_pgbench(config: &Config, extra: &[String]) -> anyhow::Result<String> {
    let opts: PgConnectOptions = config.database_url.parse()?;
    let script = std::env::temp_dir().join(format!("hangar-pgbench-{}.sql", std::process::id()));
    std::fs::write(&script, PGBENCH_SCRIPT)?;
    let psql = |sql: &str| {
        Command::new("psql")
            .args(["-q", "-h", opts.get_host(), "-p", &opts.get_port().to_string(), "-U", opts.get_username()])
            .args(["-d", opts.get_database().unwrap_or("postgres"), "-c", sql])
            .status()
    };
    psql("CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
        .context("running psql")?;
    let out = Command::new("pgbench")
        .args(["-n", "-h", opts.get_host(), "-p", &opts.get_port().to_string(), "-U", opts.get_username()])
        .args(extra)
        .arg("-f")
        .arg(&script)
        .arg(opts.get_database().unwrap_or("postgres"))
        .output()
        .context("running pgbench (Debian package postgresql-contrib or postgresql-client)")?;
    let _ = psql("DROP TABLE bench_insert");
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "pgbench failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

/// PostgreSQL's own rate for a single-row INSERT of a small JSON document, with as many clients.
fn pgbench(config: &Config, args: &BenchArgs) -> anyhow::Result<f64> {
    let text = run_pgbench(
        config,
        &["-c".into(), args.concurrency.to_string(), "-j".into(), "2".into(), "-T".into(), args.seconds.to_string()],
    )?;
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("pgbench printed no rate: {text}"))
}

/// p50 and p99 of the same INSERT issued at `rate` per second (pgbench's per-transaction log).
fn pgbench_latency(config: &Config, args: &BenchArgs, rate: f64) -> anyhow::Result<(Duration, Duration)> {
    let dir = std::env::temp_dir().join(format!("hangar-pgbench-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let prefix = dir.join("tx");
    let result = run_pgbench(
        config,
        &[
            "-c".into(),
            args.concurrency.min(8).to_string(),
            "-j".into(),
            "2".into(),
            "-T".into(),
            args.seconds.to_string(),
            "-R".into(),
            format!("{rate:.0}"),
            "-l".into(),
            format!("--log-prefix={}", prefix.display()),
        ],
    )
    .and_then(|_| {
        // one file per thread; the third column is the latency in microseconds
        let mut micros = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            for line in std::fs::read_to_string(entry?.path())?.lines() {
                if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                    micros.push(us);
                }
            }
        }
        anyhow::ensure!(!micros.is_empty(), "pgbench logged no transactions");
        micros.sort_unstable();
        let at = |q: f64| Duration::from_micros(micros[((micros.len() - 1) as f64 * q) as usize]);
        Ok((at(0.5), at(0.99)))
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub(crate) async fn cleanup(base: &Config, tag: &str) {
    // The bridge's sessions under the run's share group would queue every device message after it.
    let mut group = base.clone();
    group.mqtt_share_group = tag.to_string();
    if let Err(e) = mqtt_bridge::slots::forget_sessions(&group).await {
        eprintln!("bench: could not end the bridge's broker sessions: {e:#}");
    }
    remove_run(base, tag).await;
}

/// Removes a run's streams, database and files.
pub(crate) async fn remove_run(base: &Config, tag: &str) {
    if let Ok(nats) = shared::nats::connect(base).await {
        let js = async_nats::jetstream::new(nats);
        let names = shared::nats::Names::new(tag);
        for s in [names.es_stream(), names.device_in_stream(), names.device_out_stream(), names.telemetry_stream()] {
            let _ = js.delete_stream(s).await;
        }
    }
    // From the server's maintenance database: the configured one need not exist (the run's own
    // database is a fresh one of the same server).
    let admin =
        base.database_url.parse::<PgConnectOptions>().map(|o| o.database("postgres").to_url_lossy().to_string());
    if let Ok(pool) = shared::db::connect(admin.as_deref().unwrap_or(&base.database_url), 1).await {
        if let Err(e) = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{tag}\" WITH (FORCE)")).execute(&pool).await {
            eprintln!("bench: could not drop the database {tag}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(tag));
}
