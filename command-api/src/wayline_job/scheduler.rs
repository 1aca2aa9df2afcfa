//! The schedule of jobs, derived from their events: the read model says which jobs are pending and
//! when, and each job's aggregate decides, so a due job executes once however many processes run
//! and whatever restarted in between. One process at a time schedules (the holder of a Postgres
//! advisory lock); when it dies its lock goes with its connection and another takes over within a
//! second.
//!
//! - a timed job executes at its `begin_time` (a task per job, armed shortly before); one whose time
//!   passed by more than `job_start_grace_ms` (everything was down) fails with code 408 instead;
//! - an immediate job still pending after the grace (its process died before executing it) fails
//!   with 408;
//! - a conditional job is prepared on its dock 24 h before its window and fails with 408 when its
//!   window closes without the dock's `flighttask_ready`;
//! - a job executing with no word from its dock for long after its execute (its process died in
//!   between, or the dock never flew it) fails with 211001; if the dock does report it later, the
//!   job follows the dock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use shared::domain::wayline_job::{code, task_type};
use shared::protocol::codes;
use shared::Shutdown;
use sqlx::Connection;

use super::{execute_now, fail, prepare, system, CONDITIONAL_PREPARE_AHEAD_MS};
use crate::AppState;

/// Advisory lock key of the job scheduler ("hangar.jobs").
const SCHEDULER_LOCK: i64 = 0x6861_6e67_6172_0003;
/// How often the schedule is read, and how far ahead a timed job is armed.
const TICK: Duration = Duration::from_millis(200);
const ARM_AHEAD_MS: i64 = 2_000;
/// How often executing jobs are checked for a dock that never reported them.
const STALE_CHECK: Duration = Duration::from_secs(5);

pub async fn run(s: AppState, shutdown: Shutdown) -> anyhow::Result<()> {
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(&s, &shutdown).await {
            tracing::warn!(error = ?e, "job scheduler interrupted; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Due {
    job_id: String,
    workspace_id: String,
    task_type: i32,
    prepared: bool,
    begin_ms: i64,
    end_ms: Option<i64>,
}

async fn lead(s: &AppState, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&s.config.database_url).await.context("scheduler connection")?;
    loop {
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(SCHEDULER_LOCK).fetch_one(&mut conn).await?;
        if got {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    tracing::info!("scheduling wayline jobs");
    // jobs with a task of their own (armed, being prepared or failed): not looked at again
    let armed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stale_check = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        // the lock lives as long as this connection: check it is still there
        sqlx::query("SELECT 1").execute(&mut conn).await.context("scheduler leadership lost")?;
        let rows: Vec<Due> = sqlx::query_as(
            "SELECT job_id, workspace_id, task_type, prepared, \
               (extract(epoch FROM begin_time) * 1000)::bigint AS begin_ms, \
               (extract(epoch FROM end_time) * 1000)::bigint AS end_ms \
             FROM rm_wayline_jobs WHERE status = 1 AND begin_time <= now() + make_interval(secs => $1)",
        )
        .bind((CONDITIONAL_PREPARE_AHEAD_MS + ARM_AHEAD_MS) as f64 / 1000.0)
        .fetch_all(&s.pool)
        .await?;
        let now = shared::time::now_ms();
        let grace = s.config.job_start_grace_ms as i64;
        for job in rows {
            if armed.lock().expect("not poisoned").contains(&job.job_id) {
                continue;
            }
            let late_by = now - job.begin_ms;
            let action = match job.task_type {
                task_type::TIMED if job.begin_ms - now <= ARM_AHEAD_MS => Action::Execute,
                task_type::IMMEDIATE if late_by > grace => Action::Expire,
                task_type::CONDITIONAL if now > job.end_ms.unwrap_or(job.begin_ms + 86_400_000) => Action::Expire,
                task_type::CONDITIONAL if !job.prepared && job.begin_ms - now <= CONDITIONAL_PREPARE_AHEAD_MS => {
                    Action::Prepare
                }
                _ => continue,
            };
            armed.lock().expect("not poisoned").insert(job.job_id.clone());
            let (s, armed, grace, shutdown) = (s.clone(), armed.clone(), grace, shutdown.clone());
            tokio::spawn(async move {
                act(&s, &job, action, grace, &shutdown).await;
                // a job that is still pending (its prepare failed and it was not failed, a lost
                // race) is looked at again on a later tick
                armed.lock().expect("not poisoned").remove(&job.job_id);
            });
        }
        if last_stale_check.elapsed() >= STALE_CHECK {
            last_stale_check = tokio::time::Instant::now();
            fail_unreported(s).await?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Execute,
    Expire,
    Prepare,
}

async fn act(s: &AppState, job: &Due, action: Action, grace: i64, shutdown: &Shutdown) {
    let actor = system(&job.workspace_id);
    let id = job.job_id.as_str();
    match action {
        Action::Execute => {
            let wait = job.begin_ms - shared::time::now_ms();
            if wait > 0 {
                // a process that stops leaves its armed jobs to the next scheduler
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                }
            }
            let late_by = shared::time::now_ms() - job.begin_ms;
            if late_by > grace {
                let reason = format!("its time passed {} s ago while it could not be executed", late_by / 1000);
                fail(s, &actor, id, code::TIME_PASSED, &reason).await;
                return;
            }
            if let Err(e) = execute_now(s, &actor, id).await {
                tracing::warn!(job_id = id, error = %e, "timed job not executed");
            }
        }
        Action::Expire => {
            let reason = match job.task_type {
                task_type::CONDITIONAL => "its window closed without the dock being ready",
                _ => "its time passed before it was executed",
            };
            fail(s, &actor, id, code::TIME_PASSED, reason).await;
        }
        Action::Prepare => {
            if let Err(e) = prepare(s, &actor, id).await {
                tracing::warn!(job_id = id, error = %e, "conditional job not prepared");
            }
        }
    }
}

/// Jobs executing without a single progress report long after their execute.
async fn fail_unreported(s: &AppState) -> anyhow::Result<()> {
    let quiet_secs = (s.config.device_reply_timeout_ms / 1000 + 60) as f64;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT job_id, workspace_id FROM rm_wayline_jobs \
         WHERE status = 2 AND progress IS NULL AND execute_time < now() - make_interval(secs => $1)",
    )
    .bind(quiet_secs)
    .fetch_all(&s.pool)
    .await?;
    for (id, ws) in rows {
        let reason = "the dock never reported the job after it was executed";
        fail(s, &system(&ws), &id, codes::NO_REPLY, reason).await;
    }
    Ok(())
}
