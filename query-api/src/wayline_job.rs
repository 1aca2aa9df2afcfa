//! WaylineJobController reads (reference `http-api.md` §2.2): the job list, newest first, and the
//! WebSocket pushes of jobs (§22.4): `flighttask_progress`, `file_upload_callback` and
//! `highest_priority_upload_flighttask_media`, from `wayline_job` events.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use shared::domain::wayline_job::{self, status, WaylineJobEvent};
use shared::error::ok;
use shared::es::StoredEvent;
use shared::http::Paginated;
use shared::time::datetime_string;
use shared::{ApiResult, Shutdown};
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::devices::page_query;
use crate::ws::Audience;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, FromRow)]
pub struct Row {
    job_id: String,
    name: String,
    file_id: String,
    file_name: String,
    dock_sn: String,
    dock_name: Option<String>,
    workspace_id: String,
    wayline_type: i32,
    task_type: i32,
    begin_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
    execute_time: Option<DateTime<Utc>>,
    completed_time: Option<DateTime<Utc>>,
    status: i32,
    paused: bool,
    progress: Option<i32>,
    code: i64,
    username: String,
    rth_altitude: i32,
    out_of_control_action: i32,
    media_count: i32,
    uploaded_count: i32,
    uploading: bool,
    parent_id: Option<String>,
}

/// WaylineJobDTO (§2.2); absent values are left out, as DJI's backend does.
#[derive(Debug, Serialize)]
pub struct JobDto {
    job_id: String,
    job_name: String,
    file_id: String,
    file_name: String,
    dock_sn: String,
    dock_name: String,
    workspace_id: String,
    wayline_type: i32,
    task_type: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    execute_time: Option<String>,
    begin_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_time: Option<String>,
    status: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<i32>,
    username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i64>,
    rth_altitude: i32,
    out_of_control_action: i32,
    media_count: i32,
    uploaded_count: i32,
    uploading: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
}

impl From<Row> for JobDto {
    fn from(r: Row) -> Self {
        let status = if r.status == status::IN_PROGRESS && r.paused { status::PAUSED } else { r.status };
        let running = matches!(status, status::IN_PROGRESS | status::PAUSED);
        let ended = matches!(status, status::SUCCESS | status::CANCEL | status::FAILED);
        Self {
            job_id: r.job_id,
            job_name: r.name,
            file_id: r.file_id,
            file_name: r.file_name,
            dock_sn: r.dock_sn,
            dock_name: r.dock_name.filter(|n| !n.is_empty()).unwrap_or_default(),
            workspace_id: r.workspace_id,
            wayline_type: r.wayline_type,
            task_type: r.task_type,
            execute_time: r.execute_time.map(datetime_string),
            begin_time: datetime_string(r.begin_time),
            end_time: r.end_time.map(datetime_string),
            completed_time: r.completed_time.filter(|_| ended).map(datetime_string),
            status,
            progress: r.progress.filter(|_| running || status == status::SUCCESS),
            username: r.username,
            code: Some(r.code).filter(|c| *c != 0),
            rth_altitude: r.rth_altitude,
            out_of_control_action: r.out_of_control_action,
            media_count: r.media_count,
            uploaded_count: r.uploaded_count,
            uploading: r.uploading,
            parent_id: r.parent_id,
        }
    }
}

const SELECT: &str = "SELECT j.job_id, j.name, j.file_id, j.file_name, j.dock_sn, d.nickname AS dock_name, \
    j.workspace_id, j.wayline_type, j.task_type, j.begin_time, j.end_time, j.execute_time, j.completed_time, \
    j.status, j.paused, j.progress, j.code, j.username, j.rth_altitude, j.out_of_control_action, j.media_count, \
    j.uploaded_count, j.uploading, j.parent_id \
    FROM rm_wayline_jobs j LEFT JOIN rm_devices d ON d.device_sn = j.dock_sn";

/// `GET …/jobs?page=&page_size=`: newest first.
#[utoipa::path(
    get,
    path = "/wayline/api/v1/workspaces/{workspace_id}/jobs",
    tag = "WaylineJobController",
    summary = "Paginate through all jobs in this workspace.",
    params(("workspace_id" = String, Path)),
)]
pub async fn list(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let (page, size) = page_query(&q)?.resolve(10);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_wayline_jobs WHERE workspace_id = $1")
        .bind(&workspace_id)
        .fetch_one(&s.pool)
        .await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "{SELECT} WHERE j.workspace_id = $1 ORDER BY j.create_time DESC, j.job_id LIMIT $2 OFFSET $3"
    ))
    .bind(&workspace_id)
    .bind(size)
    .bind((page - 1) * size)
    .fetch_all(&s.pool)
    .await?;
    Ok(ok(Paginated::new(rows.into_iter().map(JobDto::from).collect(), page, size, total)))
}

/// The job's workspace, dock and counts as projected.
async fn job_counts(s: &AppState, job_id: &str) -> sqlx::Result<Option<(String, String, i32, i32)>> {
    sqlx::query_as("SELECT workspace_id, dock_sn, media_count, uploaded_count FROM rm_wayline_jobs WHERE job_id = $1")
        .bind(job_id)
        .fetch_optional(&s.pool)
        .await
}

/// Pushes what docks report about jobs to the job's workspace.
pub async fn push(s: AppState, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut sub = s.nats.subscribe(s.names.es_filter(Some(wayline_job::AGGREGATE_TYPE), None)).await?;
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => anyhow::bail!("job event subscription ended") },
        };
        let Ok(e) = StoredEvent::from_message(m.headers.as_ref(), &m.payload) else { continue };
        let Ok(event) = serde_json::from_value::<WaylineJobEvent>(e.payload.clone()) else { continue };
        if !matches!(
            event,
            WaylineJobEvent::JobProgressed(_)
                | WaylineJobEvent::JobMediaUploaded { .. }
                | WaylineJobEvent::JobMediaPrioritized
        ) {
            continue;
        }
        let s = s.clone();
        tokio::spawn(async move {
            if let Err(err) = push_one(&s, &e.aggregate_id, e.sequence, event).await {
                tracing::warn!(job_id = e.aggregate_id, error = %err, "job event not pushed");
            }
        });
    }
}

async fn push_one(s: &AppState, job_id: &str, sequence: i64, event: WaylineJobEvent) -> anyhow::Result<()> {
    // the projection may not have the event yet: wait a moment for counts that include it
    let mut row = None;
    for _ in 0..20 {
        row = job_counts(s, job_id).await?;
        let projected: Option<i64> = sqlx::query_scalar(
            "SELECT c.last_sequence FROM projection_checkpoints c JOIN projections p \
                 ON p.name = c.projection AND p.generation = c.generation \
                 WHERE c.projection = 'wayline_jobs' AND c.aggregate_type = $2 AND c.aggregate_id = $1",
        )
        .bind(job_id)
        .bind(wayline_job::AGGREGATE_TYPE)
        .fetch_optional(&s.pool)
        .await
        .unwrap_or(None)
        .flatten();
        if row.is_some() && projected.is_none_or(|p| p >= sequence) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some((ws, dock_sn, media_count, uploaded_count)) = row else { return Ok(()) };
    match event {
        WaylineJobEvent::JobProgressed(p) => {
            let data = json!({"bid": job_id, "sn": dock_sn, "result": p.result, "output": p.output});
            s.hub.publish(&ws, Audience::Web, "flighttask_progress", data);
        }
        WaylineJobEvent::JobMediaUploaded { .. } => {
            let data = json!({"job_id": job_id, "bid": job_id, "device_sn": dock_sn,
                "media_count": media_count, "uploaded_count": uploaded_count});
            s.hub.publish(&ws, Audience::Web, "file_upload_callback", data);
        }
        WaylineJobEvent::JobMediaPrioritized => {
            let data = json!({"job_id": job_id, "device_sn": dock_sn,
                "media_count": media_count, "uploaded_count": uploaded_count});
            s.hub.publish(&ws, Audience::Web, "highest_priority_upload_flighttask_media", data);
        }
        _ => {}
    }
    Ok(())
}
