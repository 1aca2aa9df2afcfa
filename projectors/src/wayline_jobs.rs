//! Read model of wayline jobs (`rm_wayline_jobs`): the job list of the web client, with each job's
//! status, progress and media counts, and the scheduler's view of which jobs are due.

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize as _;
use shared::domain::wayline_job::{self, status, WaylineJobEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct WaylineJobs;

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[async_trait::async_trait]
impl crate::Projection for WaylineJobs {
    fn name(&self) -> &'static str {
        "wayline_jobs"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[wayline_job::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_wayline_jobs"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let id = e.aggregate_id.as_str();
        let at = e.recorded_at;
        let q = match WaylineJobEvent::deserialize(&e.payload)? {
            WaylineJobEvent::JobCreated(p) => sqlx::query(
                "INSERT INTO rm_wayline_jobs (job_id, workspace_id, name, file_id, file_name, dock_sn, wayline_type, \
                   task_type, begin_time, end_time, status, username, rth_altitude, out_of_control_action, \
                   min_battery_capacity, min_storage_capacity, parent_id, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18) \
                 ON CONFLICT (job_id) DO NOTHING",
            )
            .bind(id)
            .bind(p.workspace_id)
            .bind(p.name)
            .bind(p.file_id)
            .bind(p.file_name)
            .bind(p.dock_sn)
            .bind(p.wayline_type)
            .bind(p.task_type)
            .bind(time(p.begin_time_ms))
            .bind(p.end_time_ms.map(time))
            .bind(status::PENDING)
            .bind(p.username)
            .bind(p.rth_altitude)
            .bind(p.out_of_control_action)
            .bind(p.min_battery_capacity)
            .bind(p.min_storage_capacity)
            .bind(p.parent_id)
            .bind(at),
            WaylineJobEvent::JobPrepared => {
                sqlx::query("UPDATE rm_wayline_jobs SET prepared = true, update_time = $2 WHERE job_id = $1")
                    .bind(id)
                    .bind(at)
            }
            WaylineJobEvent::JobExecuting { at_ms } => sqlx::query(
                "UPDATE rm_wayline_jobs SET status = $2, execute_time = $3, update_time = $4 WHERE job_id = $1",
            )
            .bind(id)
            .bind(status::IN_PROGRESS)
            .bind(time(at_ms))
            .bind(at),
            WaylineJobEvent::JobProgressed(p) => sqlx::query(
                // a job that already ended keeps its status; a job the dock flies without Hangar
                // having seen its execute answered is in progress
                "UPDATE rm_wayline_jobs SET progress = $2, media_count = COALESCE($3, media_count), \
                   status = CASE WHEN status IN (1, 2) OR (status = 5 AND code = 211001) THEN 2 ELSE status END, \
                   paused = CASE WHEN status IN (1, 2) OR (status = 5 AND code = 211001) THEN $4 ELSE paused END, \
                   execute_time = COALESCE(execute_time, $5), update_time = $5 WHERE job_id = $1",
            )
            .bind(id)
            .bind(p.percent)
            .bind(p.media_count)
            .bind(p.status == "paused")
            .bind(at),
            WaylineJobEvent::JobPaused => {
                sqlx::query("UPDATE rm_wayline_jobs SET paused = true, update_time = $2 WHERE job_id = $1")
                    .bind(id)
                    .bind(at)
            }
            WaylineJobEvent::JobResumed => {
                sqlx::query("UPDATE rm_wayline_jobs SET paused = false, update_time = $2 WHERE job_id = $1")
                    .bind(id)
                    .bind(at)
            }
            WaylineJobEvent::JobMediaPrioritized => {
                // one job of a dock uploads first: the one named last
                sqlx::query(
                    "UPDATE rm_wayline_jobs SET uploading = (job_id = $1), update_time = $2 \
                     WHERE dock_sn = (SELECT dock_sn FROM rm_wayline_jobs WHERE job_id = $1) \
                       AND (job_id = $1 OR uploading)",
                )
                .bind(id)
                .bind(at)
            }
            WaylineJobEvent::JobMediaUploaded { .. } => sqlx::query(
                "UPDATE rm_wayline_jobs SET uploaded_count = uploaded_count + 1, update_time = $2 WHERE job_id = $1",
            )
            .bind(id)
            .bind(at),
            WaylineJobEvent::JobEnded { status, code, media_count, at_ms, .. } => sqlx::query(
                "UPDATE rm_wayline_jobs SET status = $2, code = $3, media_count = COALESCE($4, media_count), \
                   completed_time = $5, paused = false, \
                   progress = CASE WHEN $2 = 3 THEN 100 ELSE progress END, update_time = $6 WHERE job_id = $1",
            )
            .bind(id)
            .bind(status)
            .bind(code)
            .bind(media_count)
            .bind(time(at_ms))
            .bind(at),
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
