//! LiveStreamController reads: which cameras of the workspace's online aircraft and docks can
//! stream, from their gateways' `live_capacity` state.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use shared::auth::Auth;
use shared::domain::derived_id;
use shared::error::ok;
use shared::ApiResult;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(capacity))
}

#[derive(Debug, Serialize)]
pub struct LiveDevice {
    sn: String,
    name: String,
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

/// `GET /manage/api/v1/live/capacity`: every online aircraft and dock of the token's workspace that
/// a gateway reported cameras for, with those cameras and their video streams.
#[utoipa::path(
    get,
    path = "/manage/api/v1/live/capacity",
    tag = "LiveStreamController",
    summary = "获取当前直播流容量信息。"
)]
pub async fn capacity(State(s): State<AppState>, Auth(claims): Auth) -> ApiResult<Response> {
    // the workspace's online aircraft and docks, with the name the web client shows
    let devices: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT d.device_sn, coalesce(nullif(d.nickname, ''), dict.device_name, d.device_sn) FROM rm_devices d \
         LEFT JOIN device_dictionary dict ON dict.domain = d.domain AND dict.type = d.type AND dict.sub_type = d.sub_type \
         WHERE d.workspace_id = $1 AND d.online AND d.domain IN (0, 3)",
    )
    .bind(&claims.workspace_id)
    .fetch_all(&s.pool)
    .await?
    .into_iter()
    .collect();
    let capacities: Vec<Value> = sqlx::query_scalar(
        "SELECT live_capacity FROM rm_devices WHERE workspace_id = $1 AND online AND live_capacity IS NOT NULL \
         ORDER BY device_sn",
    )
    .bind(&claims.workspace_id)
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
        let Some(name) = devices.get(&sn) else { continue };
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
        out.push(LiveDevice { sn, name: name.clone(), cameras_list });
    }
    Ok(ok(out))
}
