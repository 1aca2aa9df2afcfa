//! `hangar bench --only jobs`: 1,000 timed jobs on 1,000 simulated docks, due within the same
//! minute. Every job must be executed once (one `flighttask_execute` at its dock, one
//! `JobExecuting` event), and its lateness is measured twice: when Hangar decided to execute it
//! (the event's time) and when its dock received the execute. The baseline, measured in the same
//! run, is the broker's own request/reply round trip: the least any command to a dock costs here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mqtt_bridge::sim::{Fleet, FleetConfig};
use serde_json::{json, Value};
use shared::Config;

use crate::bench_services::percentile;

pub struct JobsReport {
    pub jobs: usize,
    pub created_in: Duration,
    pub executed_once: usize,
    pub executed_twice: usize,
    pub not_executed: usize,
    pub decided_p50: Duration,
    pub decided_p99: Duration,
    pub decided_max: Duration,
    pub arrived_p50: Duration,
    pub arrived_p99: Duration,
    pub arrived_max: Duration,
    pub broker_p99: Duration,
}

impl std::fmt::Display for JobsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(f, "baseline  broker request/reply round trip                    p99 {:.1} ms", ms(self.broker_p99))?;
        writeln!(
            f,
            "hangar    {} timed jobs on {} docks due within one minute (created in {:.1} s): executed once {}, \
             twice {}, never {}",
            self.jobs,
            self.jobs,
            self.created_in.as_secs_f64(),
            self.executed_once,
            self.executed_twice,
            self.not_executed
        )?;
        writeln!(
            f,
            "hangar    lateness of the decision to execute        p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(self.decided_p50),
            ms(self.decided_p99),
            ms(self.decided_max)
        )?;
        write!(
            f,
            "hangar    lateness of the execute at the dock        p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(self.arrived_p50),
            ms(self.arrived_p99),
            ms(self.arrived_max)
        )
    }
}

const JOBS: usize = 1000;
/// Creating a thousand jobs (each prepared on its dock) takes a while: the minute starts after it.
const LEAD: Duration = Duration::from_secs(45);

async fn import(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let kmz = wpml::write_kmz(&wpml::Mission {
        name: "Bench".into(),
        drone_model_key: "0-91-0".into(),
        payload_model_key: "1-80-0".into(),
        waypoints: (0..20)
            .map(|i| wpml::MissionPoint {
                longitude: 113.93 + f64::from(i) * 0.0001,
                latitude: 22.54,
                height: 80.0,
                speed: None,
                actions: vec![],
            })
            .collect(),
        auto_flight_speed: 10.0,
        finish_action: "goHome".into(),
        take_off_security_height: 30.0,
    })?;
    let ws = crate::bench::WORKSPACE;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(kmz).file_name(format!("bench-{}.kmz", uuid::Uuid::new_v4())));
    let r: Value = http
        .post(format!("{base}/wayline/api/v1/workspaces/{ws}/waylines/file/upload"))
        .header("x-auth-token", token)
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(r["code"] == 0, "import refused: {r}");
    for _ in 0..100 {
        let r: Value = http
            .get(format!("{base}/wayline/api/v1/workspaces/{ws}/waylines"))
            .header("x-auth-token", token)
            .send()
            .await?
            .json()
            .await?;
        if let Some(id) = r["data"]["list"][0]["id"].as_str() {
            return Ok(id.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the bench wayline was not listed")
}

pub async fn run(config: &Config, base: &str, token: &str, pool: &sqlx::PgPool) -> anyhow::Result<JobsReport> {
    let tag = config.nats_prefix.to_ascii_uppercase();
    let fleet = Fleet::start(FleetConfig {
        docks: JOBS,
        osd_hz: 0.2,
        sn_prefix: format!("{tag}J"),
        hms_every: None,
        binding_code: Some("qwe".into()),
        cycle_flights: false,
        flight_steps: 2,
        media_per_flight: 0,
        progress_interval: Duration::from_secs(1),
        ..Default::default()
    })
    .await?;
    fleet.ready(Duration::from_secs(60)).await?;
    let docks: Vec<String> = fleet.docks().iter().map(|d| d.dock_sn.clone()).collect();
    crate::bench_services::wait_bound(pool, &docks, Duration::from_secs(120)).await?;

    eprintln!("bench: broker request/reply (5 s)…");
    let mut broker = crate::bench_services::broker_round_trips(5).await?;
    broker.sort();

    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let file_id = import(&http, base, token).await?;
    // the minute: job i is due at start + i × 60 s / JOBS, to the second (DJI's task periods are
    // in seconds), so about 17 jobs share each second
    let start = chrono::Utc::now().timestamp() + LEAD.as_secs() as i64;
    let due: Vec<i64> = (0..JOBS).map(|i| start + (i as i64 * 60) / JOBS as i64).collect();
    eprintln!("bench: creating {JOBS} timed jobs due within one minute…");
    let created = Instant::now();
    let ws = crate::bench::WORKSPACE;
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for (i, begin) in due.iter().copied().enumerate() {
        let (http, url, token, dock, file_id, sem) = (
            http.clone(),
            format!("{base}/wayline/api/v1/workspaces/{ws}/flight-tasks"),
            token.to_string(),
            docks[i].clone(),
            file_id.clone(),
            sem.clone(),
        );
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            let body = json!({"name": format!("bench {i}"), "file_id": file_id, "dock_sn": dock, "wayline_type": 0,
                "task_type": 1, "rth_altitude": 100, "out_of_control_action": 0,
                "task_days": [begin], "task_periods": [[begin]]});
            let r: Value = http.post(url).header("x-auth-token", token).json(&body).send().await?.json().await?;
            anyhow::ensure!(r["code"] == 0, "job not created: {r}");
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("creating a job")??;
    }
    let created_in = created.elapsed();
    anyhow::ensure!(
        chrono::Utc::now().timestamp() < start,
        "creating the jobs took longer than the lead of {} s",
        LEAD.as_secs()
    );
    // the wall clock and the monotonic clock of the simulated docks, side by side
    let (mono0, wall0) = (Instant::now(), chrono::Utc::now().timestamp_millis());
    let end = start + 60;
    eprintln!("bench: waiting for the minute to pass…");
    while chrono::Utc::now().timestamp() < end + 15 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT job_id, (extract(epoch FROM begin_time) * 1000)::bigint, \
           (extract(epoch FROM execute_time) * 1000)::bigint FROM rm_wayline_jobs WHERE task_type = 1",
    )
    .fetch_all(pool)
    .await?;
    let executing: HashMap<String, i64> = sqlx::query_as(
        "SELECT aggregate_id, count(*) FROM events WHERE aggregate_type = 'wayline_job' \
         AND event_type = 'JobExecuting' GROUP BY aggregate_id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mut sent: HashMap<String, usize> = HashMap::new();
    for c in fleet.received().iter().filter(|c| c.method == "flighttask_execute") {
        *sent.entry(c.bid.clone()).or_default() += 1;
    }
    let arrivals: HashMap<String, Instant> =
        fleet.flights().into_iter().filter_map(|f| f.executed_at.map(|t| (f.flight_id, t))).collect();
    fleet.stop().await;

    let (mut once, mut twice, mut never) = (0, 0, 0);
    let (mut decided, mut arrived) = (Vec::new(), Vec::new());
    for (id, begin, executed) in &rows {
        match (sent.get(id).copied().unwrap_or(0), executing.get(id).copied().unwrap_or(0)) {
            (0, _) | (_, 0) => never += 1,
            (1, 1) => once += 1,
            _ => twice += 1,
        }
        if let Some(at) = executed {
            decided.push(Duration::from_millis((at - begin).max(0) as u64));
        }
        if let Some(t) = arrivals.get(id) {
            let wall = wall0 + (t.saturating_duration_since(mono0).as_millis() as i64)
                - (mono0.saturating_duration_since(*t).as_millis() as i64);
            arrived.push(Duration::from_millis((wall - begin).max(0) as u64));
        }
    }
    decided.sort();
    arrived.sort();
    Ok(JobsReport {
        jobs: rows.len(),
        created_in,
        executed_once: once,
        executed_twice: twice,
        not_executed: never,
        decided_p50: percentile(&decided, 0.5),
        decided_p99: percentile(&decided, 0.99),
        decided_max: decided.last().copied().unwrap_or_default(),
        arrived_p50: percentile(&arrived, 0.5),
        arrived_p99: percentile(&arrived, 0.99),
        arrived_max: arrived.last().copied().unwrap_or_default(),
        broker_p99: percentile(&broker, 0.99),
    })
}
