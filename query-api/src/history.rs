//! Time travel for web users: an aggregate as it was at a past time or sequence, and the devices of
//! a workspace as they were at a past time, folded from the event store by [`shared::history`].
//! These are the only reads of query-api that go to the `events` table rather than a read model:
//! read models hold only the present.
//!
//! A caller sees only what belonged to its workspace at that point (the workspace guard checks the
//! path; the aggregate's own state says whose it was then). Another workspace's aggregate answers
//! exactly as an id that does not exist, so ids cannot be probed across workspaces.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::error::ok;
use shared::history::{self, HistoryError, PastState, Point};
use shared::http::DjiQuery;
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(aggregate)).routes(routes!(devices))
}

/// `?at=` (RFC 3339, or milliseconds since the epoch as DJI's clients count time) or `?sequence=`.
#[derive(Debug, Deserialize)]
pub struct PointQuery {
    at: Option<String>,
    sequence: Option<String>,
}

impl PointQuery {
    fn point(&self) -> Result<Point, ApiError> {
        match (&self.at, &self.sequence) {
            (Some(_), Some(_)) => Err(ApiError::failed("Give either at or sequence, not both.")),
            (Some(at), None) => Ok(Point::At(parse_time(at)?)),
            (None, Some(n)) => match n.trim().parse::<i64>() {
                Ok(n) if n >= 1 => Ok(Point::Sequence(n)),
                _ => Err(ApiError::failed(format!("sequence must be a whole number from 1 on, not {n:?}."))),
            },
            (None, None) => Ok(Point::Latest),
        }
    }
}

fn parse_time(at: &str) -> Result<DateTime<Utc>, ApiError> {
    let at = at.trim();
    if let Ok(ms) = at.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| ApiError::failed(format!("at {ms} is out of range (milliseconds since 1970).")));
    }
    DateTime::parse_from_rfc3339(at).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        ApiError::failed(format!(
            "at must be an RFC 3339 time (2026-11-26T10:00:00Z) or milliseconds since 1970, not {at:?}: {e}."
        ))
    })
}

fn history_error(e: HistoryError) -> ApiError {
    match e {
        HistoryError::UnknownType(_) | HistoryError::NotFound { .. } => ApiError::failed(e.to_string()),
        HistoryError::Unreadable { .. } | HistoryError::Database(_) => ApiError::Internal(e.into()),
    }
}

/// `GET /history/api/v1/workspaces/{workspace_id}/aggregates/{aggregate_type}/{aggregate_id}?at=…|sequence=…`:
/// the aggregate after its events up to that point (without either: now).
#[tracing::instrument(skip(s))]
#[utoipa::path(
    get,
    path = "/history/api/v1/workspaces/{workspace_id}/aggregates/{aggregate_type}/{aggregate_id}",
    tag = "History",
    summary = "An aggregate as it was at a past time, from its events",
    params(("workspace_id" = String, Path), ("aggregate_type" = String, Path), ("aggregate_id" = String, Path)),
)]
pub async fn aggregate(
    State(s): State<AppState>,
    Path((workspace_id, aggregate_type, aggregate_id)): Path<(String, String, String)>,
    DjiQuery(q): DjiQuery<PointQuery>,
) -> ApiResult<Response> {
    let point = q.point()?;
    let past = history::state_at(&s.pool, &aggregate_type, &aggregate_id, point).await.map_err(history_error)?;
    if past.workspace_id.as_deref() != Some(workspace_id.as_str()) {
        return Err(history_error(HistoryError::NotFound { aggregate_type, aggregate_id }));
    }
    Ok(ok(past))
}

#[derive(Debug, Serialize)]
struct DevicesThen {
    at: DateTime<Utc>,
    list: Vec<PastState>,
}

/// `GET /history/api/v1/workspaces/{workspace_id}/devices?at=…`: the devices bound to the workspace
/// then, each as it was (online, nickname, model, firmware, …), by serial number.
#[tracing::instrument(skip(s))]
#[utoipa::path(
    get,
    path = "/history/api/v1/workspaces/{workspace_id}/devices",
    tag = "History",
    summary = "A workspace's device list as it was at a past time, from events",
    params(("workspace_id" = String, Path)),
)]
pub async fn devices(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    DjiQuery(q): DjiQuery<PointQuery>,
) -> ApiResult<Response> {
    let at = match q.point()? {
        Point::At(at) => at,
        Point::Latest => Utc::now(),
        Point::Sequence(_) => return Err(ApiError::failed("The device list is as of a time: give at, not sequence.")),
    };
    let list = history::devices_at(&s.pool, &workspace_id, at).await.map_err(history_error)?;
    Ok(ok(DevicesThen { at, list }))
}
