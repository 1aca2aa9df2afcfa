//! Device liveness: a device silent for `device_offline_secs` goes offline, and a known device that
//! speaks again after that (its OSD keeps arriving) is online again, as it was. The sweep runs in
//! one process at a time (the holder of a Postgres advisory lock), so replicas do not each record
//! the same change; the read model only says which devices to look at, the aggregates decide.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use shared::domain::device::DeviceCommand;
use shared::Shutdown;
use sqlx::Connection;

use super::{exec, LastSeen};
use crate::AppState;

/// Advisory lock key of the liveness sweep ("hangar.liveness").
const LIVENESS_LOCK: i64 = 0x6861_6e67_6172_0002;

pub async fn run(s: AppState, seen: LastSeen, shutdown: Shutdown) -> anyhow::Result<()> {
    let started = Instant::now();
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(&s, &seen, &shutdown, started).await {
            tracing::warn!(error = ?e, "liveness sweep interrupted; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    Ok(())
}

async fn lead(s: &AppState, seen: &LastSeen, shutdown: &Shutdown, started: Instant) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&s.config.database_url).await.context("liveness connection")?;
    loop {
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LIVENESS_LOCK).fetch_one(&mut conn).await?;
        if got {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    let timeout = Duration::from_secs(s.config.device_offline_secs);
    // a new leader gives every device a full timeout before calling it silent
    let leading_since = Instant::now().max(started);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        // the lock lives as long as this connection: check it is still there
        sqlx::query("SELECT 1").execute(&mut conn).await.context("liveness leadership lost")?;
        let rows: Vec<(String, bool)> =
            sqlx::query_as("SELECT device_sn, online FROM rm_devices WHERE domain >= 0").fetch_all(&s.pool).await?;
        let last = seen.0.lock().await.clone();
        for (sn, online) in rows {
            let heard = last.get(&sn).copied();
            let silent = heard.map_or(leading_since.elapsed() > timeout, |t| t.elapsed() > timeout);
            let cmd = if online && silent {
                DeviceCommand::ReportOffline { reason: format!("silent for {} s", timeout.as_secs()) }
            } else if !online && !silent && heard.is_some() {
                DeviceCommand::ReportHeard
            } else {
                continue;
            };
            if let Err(e) = exec(s, &sn, cmd).await {
                tracing::warn!(sn, error = %e, "liveness command failed");
            }
        }
    }
    Ok(())
}
