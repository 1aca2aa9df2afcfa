//! FlightAreaController and DeviceDataController reads: the workspace's custom flight areas, and
//! how far each dock got with synchronising them.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use shared::error::ok;
use shared::{ApiError, ApiResult};
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(areas)).routes(routes!(device_status))
}

#[derive(Debug, FromRow)]
pub struct AreaRow {
    pub area_id: String,
    pub name: String,
    #[sqlx(rename = "type")]
    pub area_type: String,
    pub content: Value,
    pub status: bool,
    pub username: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

pub const AREA_SELECT: &str =
    "SELECT area_id, name, type, content, status, username, create_time, update_time FROM rm_flight_areas";

/// An area as the web client reads it (in the list and on the WebSocket).
#[derive(Debug, Serialize)]
pub struct Area {
    pub area_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub area_type: String,
    pub content: Value,
    pub status: bool,
    pub username: String,
    pub create_time: i64,
    pub update_time: i64,
}

impl From<AreaRow> for Area {
    fn from(r: AreaRow) -> Self {
        Area {
            area_id: r.area_id,
            name: r.name,
            area_type: r.area_type,
            content: r.content,
            status: r.status,
            username: r.username,
            create_time: r.create_time.timestamp_millis(),
            update_time: r.update_time.timestamp_millis(),
        }
    }
}

/// `GET …/flight-areas`: every area of the workspace, in the order they were drawn.
#[utoipa::path(
    get,
    path = "/map/api/v1/workspaces/{workspace_id}/flight-areas",
    tag = "FlightAreaController",
    summary = "getFlightAreas",
    params(("workspace_id" = String, Path)),
)]
pub async fn areas(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    let rows: Vec<AreaRow> =
        sqlx::query_as(&format!("{AREA_SELECT} WHERE workspace_id = $1 ORDER BY create_time, area_id"))
            .bind(&workspace_id)
            .fetch_all(&s.pool)
            .await?;
    Ok(ok(rows.into_iter().map(Area::from).collect::<Vec<_>>()))
}

#[derive(Debug, Serialize)]
pub struct DeviceStatus {
    device_sn: String,
    nickname: String,
    device_name: String,
    online: bool,
    flight_area_status: SyncStatus,
}

#[derive(Debug, Serialize)]
pub struct SyncStatus {
    sync_status: String,
    sync_code: i64,
    sync_msg: String,
}

/// What a dock's `reason` means, as far as DJI documents it.
pub fn sync_message(status: &str, code: i64) -> String {
    match (status, code) {
        (_, 0) => String::new(),
        (_, c) => format!("The dock could not synchronise the flight areas (reason {c})."),
    }
}

/// `GET …/device-status`: the workspace's docks that have reported a synchronisation of the
/// areas, with its state; an illegal argument when the workspace has no dock at all.
#[utoipa::path(
    get,
    path = "/map/api/v1/workspaces/{workspace_id}/device-status",
    tag = "DeviceDataController",
    summary = "getDeviceFlightAreaStatus",
    params(("workspace_id" = String, Path)),
)]
pub async fn device_status(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, String, Option<String>, bool, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT d.device_sn, d.nickname, dict.device_name, d.online, d.flight_area_status, d.flight_area_code \
         FROM rm_devices d LEFT JOIN device_dictionary dict \
           ON dict.domain = d.domain AND dict.type = d.type AND dict.sub_type = d.sub_type \
         WHERE d.workspace_id = $1 AND d.domain = 3 ORDER BY d.device_sn",
    )
    .bind(&workspace_id)
    .fetch_all(&s.pool)
    .await?;
    if rows.is_empty() {
        return Err(ApiError::failed("illegal argument"));
    }
    let list: Vec<DeviceStatus> = rows
        .into_iter()
        .filter_map(|(device_sn, nickname, device_name, online, status, code)| {
            let status = status?;
            let code = code.unwrap_or(0);
            Some(DeviceStatus {
                device_sn,
                nickname,
                device_name: device_name.unwrap_or_default(),
                online,
                flight_area_status: SyncStatus {
                    sync_msg: sync_message(&status, code),
                    sync_status: status,
                    sync_code: code,
                },
            })
        })
        .collect();
    Ok(ok(list))
}
