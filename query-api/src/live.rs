//! LiveStreamController reads: which cameras of the workspace's aircraft and docks can stream, from
//! their gateways' `live_capacity` state (DJI's capacity, and the per-device and all-devices
//! extensions), and what a device streams now, as Hangar started it.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use shared::auth::Auth;
use shared::domain::derived_id;
use shared::error::ok;
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(capacity))
        .routes(routes!(capacity_of))
        .routes(routes!(devices))
        .routes(routes!(device))
        .routes(routes!(stream))
}

#[derive(Debug, Serialize)]
pub struct LiveDevice {
    sn: String,
    name: String,
    /// Only in the device lists (extensions), not in DJI's capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    online: Option<bool>,
    cameras_list: Vec<Camera>,
}

#[derive(Debug, Serialize)]
pub struct Camera {
    /// Stable for the device and camera (DJI's demo makes a new one on each call).
    id: String,
    name: String,
    index: String,
    videos_list: Vec<Video>,
}

#[derive(Debug, Serialize)]
pub struct Video {
    id: String,
    index: String,
    #[serde(rename = "type")]
    video_type: String,
    switch_video_types: Vec<String>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The aircraft and docks of a workspace that a gateway reported cameras for, with those cameras and
/// their video streams: online ones only (as DJI's capacity), or all of them with their state.
async fn live_devices(s: &AppState, workspace_id: &str, online_only: bool) -> ApiResult<Vec<LiveDevice>> {
    // the devices, with the name the web client shows
    let devices: HashMap<String, (String, i32, bool)> = sqlx::query_as::<_, (String, String, i32, bool)>(
        "SELECT d.device_sn, coalesce(nullif(d.nickname, ''), dict.device_name, d.device_sn), d.domain, d.online \
         FROM rm_devices d \
         LEFT JOIN device_dictionary dict ON dict.domain = d.domain AND dict.type = d.type AND dict.sub_type = d.sub_type \
         WHERE d.workspace_id = $1 AND (d.online OR NOT $2) AND d.domain IN (0, 3)",
    )
    .bind(workspace_id)
    .bind(online_only)
    .fetch_all(&s.pool)
    .await?
    .into_iter()
    .map(|(sn, name, domain, online)| (sn, (name, domain, online)))
    .collect();
    let capacities: Vec<Value> = sqlx::query_scalar(
        "SELECT live_capacity FROM rm_devices WHERE workspace_id = $1 AND (online OR NOT $2) \
           AND live_capacity IS NOT NULL ORDER BY device_sn",
    )
    .bind(workspace_id)
    .bind(online_only)
    .fetch_all(&s.pool)
    .await?;
    let payload_names: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT type || '-' || sub_type, device_name FROM device_dictionary WHERE domain = 1",
    )
    .fetch_all(&s.pool)
    .await?
    .into_iter()
    .collect();
    let mut out = Vec::new();
    for entry in capacities.iter().flat_map(|c| c["device_list"].as_array().into_iter().flatten()) {
        let sn = text(entry, "sn");
        let Some((name, domain, online)) = devices.get(&sn) else { continue };
        let cameras_list = entry["camera_list"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let index = text(c, "camera_index");
                let model = index.rsplit_once('-').map(|(m, _)| m.to_string()).unwrap_or_default();
                Camera {
                    id: derived_id(&["live", &sn, &index]),
                    name: payload_names.get(&model).cloned().unwrap_or_else(|| index.clone()),
                    videos_list: c["video_list"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| Video {
                            id: derived_id(&["live", &sn, &index, &text(v, "video_index")]),
                            index: text(v, "video_index"),
                            video_type: text(v, "video_type"),
                            switch_video_types: v["switchable_video_types"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect(),
                        })
                        .collect(),
                    index,
                }
            })
            .collect();
        let (domain, online) = if online_only { (None, None) } else { (Some(*domain), Some(*online)) };
        out.push(LiveDevice { sn, name: name.clone(), domain, online, cameras_list });
    }
    Ok(out)
}

/// `GET /manage/api/v1/live/capacity`: every online aircraft and dock of the token's workspace that
/// a gateway reported cameras for, with those cameras and their video streams.
#[utoipa::path(
    get,
    path = "/manage/api/v1/live/capacity",
    tag = "LiveStreamController",
    summary = "获取当前直播流容量信息。"
)]
pub async fn capacity(State(s): State<AppState>, Auth(claims): Auth) -> ApiResult<Response> {
    Ok(ok(live_devices(&s, &claims.workspace_id, true).await?))
}

fn one(list: Vec<LiveDevice>, sn: &str) -> ApiResult<LiveDevice> {
    list.into_iter().find(|d| d.sn == sn).ok_or_else(|| {
        ApiError::failed("No camera of this device can stream (unknown here, or its gateway reported none).")
    })
}

/// `GET /manage/api/v1/live/capacity/{sn}`: one online device's item of the capacity.
#[utoipa::path(
    get,
    path = "/manage/api/v1/live/capacity/{sn}",
    tag = "LiveStreamController",
    summary = "获取当前直播流容量信息。",
    params(("sn" = String, Path)),
)]
pub async fn capacity_of(State(s): State<AppState>, Auth(claims): Auth, Path(sn): Path<String>) -> ApiResult<Response> {
    Ok(ok(one(live_devices(&s, &claims.workspace_id, true).await?, &sn)?))
}

/// `GET /manage/api/v1/live/devices`: every device of the token's workspace with cameras that can
/// stream, online or not (`online`, `domain`), with its cameras and videos.
#[utoipa::path(
    get,
    path = "/manage/api/v1/live/devices",
    tag = "LiveStreamController",
    summary = "查询全部能进行直播的设备"
)]
pub async fn devices(State(s): State<AppState>, Auth(claims): Auth) -> ApiResult<Response> {
    Ok(ok(live_devices(&s, &claims.workspace_id, false).await?))
}

/// `GET /manage/api/v1/live/devices/{sn}`: one device's cameras and videos.
#[utoipa::path(
    get,
    path = "/manage/api/v1/live/devices/{sn}",
    tag = "LiveStreamController",
    summary = "根据设备sn查询设备直播信息",
    params(("sn" = String, Path)),
)]
pub async fn device(State(s): State<AppState>, Auth(claims): Auth, Path(sn): Path<String>) -> ApiResult<Response> {
    Ok(ok(one(live_devices(&s, &claims.workspace_id, false).await?, &sn)?))
}

#[derive(Debug, sqlx::FromRow)]
struct StreamRow {
    video_id: String,
    url_type: i32,
    url: String,
    video_quality: i32,
    video_type: String,
    pushing: bool,
    started_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /manage/api/v1/live/streams/{sn}`: the device's current stream as Hangar started it:
/// `{sn, pushing, video_id, url (to watch), url_type, video_quality, video_type (lens), started_at
/// (ms)}`, the one streaming (else the last one, stopped), or `{sn, pushing: false}` when none was.
#[utoipa::path(
    get,
    path = "/manage/api/v1/live/streams/{sn}",
    tag = "LiveStreamController",
    summary = "根据设备sn查询设备直播信息",
    params(("sn" = String, Path)),
)]
pub async fn stream(State(s): State<AppState>, Auth(claims): Auth, Path(sn): Path<String>) -> ApiResult<Response> {
    let row: Option<StreamRow> = sqlx::query_as(
        "SELECT video_id, url_type, url, video_quality, video_type, pushing, started_at FROM rm_live_streams \
         WHERE workspace_id = $1 AND sn = $2 ORDER BY pushing DESC, started_at DESC LIMIT 1",
    )
    .bind(&claims.workspace_id)
    .bind(&sn)
    .fetch_optional(&s.pool)
    .await?;
    Ok(ok(match row {
        None => serde_json::json!({"sn": sn, "pushing": false}),
        Some(r) => serde_json::json!({
            "sn": sn, "pushing": r.pushing, "video_id": r.video_id, "url": r.url, "url_type": r.url_type,
            "video_quality": r.video_quality, "video_type": r.video_type, "started_at": r.started_at.timestamp_millis(),
        }),
    }))
}
