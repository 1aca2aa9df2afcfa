//! `hangar bench --only replay`: how fast the event history is read back, beside JetStream's own
//! rate of handing the same stream to a plain pull consumer, measured in the same run.
//!
//! A history of `--events` upload-callbacks is made through the real command path first. Then,
//! each round:
//! - **raw**: an ephemeral pull consumer (no acks, as `replay` uses) drains the whole ES stream and
//!   does nothing with the messages: the most any reader of the stream can get;
//! - **rebuild all**: `hangar rebuild all` writes every read model again from the event store, and
//!   the running projectors' consumers start again after it, until every projection's consumers
//!   have nothing pending and its tables hold as many rows as before;
//! - **export**: the same events from the event store as Parquet and as JSON Lines, written to a
//!   sink (the file system is not measured).
//!
//! Rates are events per second; each line also gives its share of the raw rate. Medians of the
//! rounds, every round on stderr.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use shared::nats::Names;
use shared::Config;
use sqlx::PgPool;

use crate::export;

pub struct ReplayReport {
    pub events: u64,
    pub raw_per_sec: f64,
    pub rebuild_per_sec: f64,
    pub export_parquet_per_sec: f64,
    pub export_jsonl_per_sec: f64,
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = |r: f64| 100.0 * r / self.raw_per_sec;
        writeln!(
            f,
            "baseline  JetStream pull consumer draining ES ({} events) {:>9.0} events/s",
            self.events, self.raw_per_sec
        )?;
        writeln!(
            f,
            "hangar    rebuild all (every read model again)        {:>9.0} events/s = {:.1}% of raw",
            self.rebuild_per_sec,
            share(self.rebuild_per_sec)
        )?;
        writeln!(
            f,
            "hangar    export, Parquet                              {:>9.0} events/s = {:.1}% of raw",
            self.export_parquet_per_sec,
            share(self.export_parquet_per_sec)
        )?;
        write!(
            f,
            "hangar    export, JSON Lines                           {:>9.0} events/s = {:.1}% of raw",
            self.export_jsonl_per_sec,
            share(self.export_jsonl_per_sec)
        )
    }
}

const ROUNDS: usize = 3;

pub async fn run(
    config: &Config,
    base_url: &str,
    pool: &PgPool,
    js: &jetstream::Context,
    events: u64,
    concurrency: usize,
) -> anyhow::Result<ReplayReport> {
    let names = Names::new(&config.nats_prefix);
    make_history(config, base_url, events, concurrency).await?;
    let mut raw = Vec::new();
    let mut rebuild = Vec::new();
    let mut parquet = Vec::new();
    let mut jsonl = Vec::new();
    let mut total = 0;
    for round in 1..=ROUNDS {
        let (n, t) = drain(js, &names).await?;
        total = n;
        raw.push(n as f64 / t.as_secs_f64());
        let t = rebuild_all(pool, js, &names).await?;
        rebuild.push(n as f64 / t.as_secs_f64());
        let (n_export, t) = export_to_sink(pool, export::Format::Parquet).await?;
        anyhow::ensure!(n_export == n, "export wrote {n_export} events, the stream holds {n}");
        parquet.push(n as f64 / t.as_secs_f64());
        let (_, t) = export_to_sink(pool, export::Format::Jsonl).await?;
        jsonl.push(n as f64 / t.as_secs_f64());
        eprintln!(
            "bench: replay round {round}: raw {:.0}/s, rebuild all {:.0}/s, export parquet {:.0}/s, jsonl {:.0}/s",
            raw[round - 1],
            rebuild[round - 1],
            parquet[round - 1],
            jsonl[round - 1]
        );
    }
    Ok(ReplayReport {
        events: total,
        raw_per_sec: median(raw),
        rebuild_per_sec: median(rebuild),
        export_parquet_per_sec: median(parquet),
        export_jsonl_per_sec: median(jsonl),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `events` distinct upload-callbacks through HTTP, `concurrency` at a time, then waits until they
/// are all projected.
async fn make_history(config: &Config, base_url: &str, events: u64, concurrency: usize) -> anyhow::Result<()> {
    eprintln!("bench: making a history of {events} upload-callbacks…");
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build()?;
    let token = crate::bench::login(&http, base_url, "pilot", "pilot123", 2).await?;
    let url = format!("{base_url}/media/api/v1/workspaces/{}/upload-callback", crate::bench::WORKSPACE);
    let before: i64 = {
        let pool = shared::db::connect(&config.database_url, 1).await?;
        sqlx::query_scalar("SELECT count(*) FROM rm_media_files").fetch_one(&pool).await?
    };
    // numbers of their own, so that the media part's files (numbered from 0) stay distinct
    let next = Arc::new(AtomicU64::new(1 << 40));
    let end = (1 << 40) + events;
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, token, next, failed) = (http.clone(), url.clone(), token.clone(), next.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    break;
                }
                if !crate::bench::send(&http, &url, &token, n).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} of the history's upload-callbacks failed");
    crate::bench::wait_projected(config, before as u64 + events).await
}

/// Drains the whole ES stream with a fresh pull consumer; returns how many messages it read and
/// how long that took (from the first pull to the last message).
async fn drain(js: &jetstream::Context, names: &Names) -> anyhow::Result<(u64, Duration)> {
    let stream = js.get_stream(names.es_stream()).await.context("ES stream")?;
    let c: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: names.es_filter(None, None),
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("raw consumer")?;
    let total = c.cached_info().num_pending;
    let started = Instant::now();
    let mut messages = c.stream().max_messages_per_batch(1000).messages().await?;
    let mut bytes = 0usize;
    for _ in 0..total {
        let m = messages.next().await.context("the raw consumer ended early")?.map_err(|e| anyhow::anyhow!(e))?;
        bytes += m.payload.len();
    }
    let took = started.elapsed();
    anyhow::ensure!(bytes > 0, "the stream's events are empty");
    drop(messages);
    let name = c.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    Ok((total, took))
}

/// `hangar rebuild all`, then waits until the running projectors' consumers have nothing pending.
async fn rebuild_all(pool: &PgPool, js: &jetstream::Context, names: &Names) -> anyhow::Result<Duration> {
    let projections = projectors::all_projections();
    let mut before = Vec::new();
    for p in &projections {
        for t in p.tables() {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}")).fetch_one(pool).await?;
            before.push((*t, n));
        }
    }
    let stream = js.get_stream(names.es_stream()).await.context("ES stream")?;
    let started = Instant::now();
    let all: Vec<&dyn projectors::Projection> = projections.iter().map(|p| p.as_ref()).collect();
    projectors::runner::rebuild_all(&all, pool, js, names).await?;
    let deadline = started + Duration::from_secs(300);
    'wait: loop {
        anyhow::ensure!(Instant::now() < deadline, "the projections did not catch up within 300 s of a rebuild");
        tokio::time::sleep(Duration::from_millis(10)).await;
        // the consumers first: asking JetStream costs the projections nothing, counting rows does
        for p in &projections {
            for name in projectors::runner::consumer_names(p.as_ref(), names) {
                match stream.consumer_info(&name).await {
                    Ok(i) if i.num_pending == 0 && i.num_ack_pending == 0 => {}
                    _ => continue 'wait,
                }
            }
        }
        for (t, n) in &before {
            let now: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}")).fetch_one(pool).await?;
            if now != *n {
                continue 'wait;
            }
        }
        return Ok(started.elapsed());
    }
}

/// Every event exported in `format` into a sink; returns how many and how long it took.
async fn export_to_sink(pool: &PgPool, format: export::Format) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let n = export::export(pool, &export::Filter::default(), format, std::io::sink(), |_| {}).await?;
    Ok((n, started.elapsed()))
}
