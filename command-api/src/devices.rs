//! DeviceController and DeviceHmsController writes: bind, unbind, update, property set, mark HMS
//! read. A device of another workspace answers exactly like a device that does not exist.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared::auth::Auth;
use shared::domain::device::DeviceCommand;
use shared::error::ok_empty;
use shared::event_store::{execute, metadata};
use shared::http::DjiJson;
use shared::protocol::{self, H_MQTT_TOPIC};
use shared::{ApiError, ApiResult};

use crate::{command_error, AppState};

const NOT_FOUND: &str = "device not found.";

/// `(online, domain)` of a device bound to this workspace.
async fn device_in(s: &AppState, sn: &str, workspace_id: &str) -> ApiResult<(bool, i32)> {
    sqlx::query_as("SELECT online, domain FROM rm_devices WHERE device_sn = $1 AND workspace_id = $2 AND bound")
        .bind(sn)
        .bind(workspace_id)
        .fetch_optional(&s.pool)
        .await?
        .ok_or_else(|| ApiError::failed(NOT_FOUND))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BindBody {
    workspace_id: Option<String>,
    user_id: Option<String>,
    nickname: Option<String>,
}

/// `POST /manage/api/v1/devices/{device_sn}/binding`: binds an online device to the caller's
/// workspace (the body's `workspace_id`, when given, must be that workspace).
#[tracing::instrument(skip_all, fields(sn = %sn))]
pub async fn bind(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
    DjiJson(body): DjiJson<BindBody>,
) -> ApiResult<Response> {
    if body.workspace_id.as_deref().is_some_and(|w| !w.is_empty() && w != claims.workspace_id) {
        return Err(ApiError::Forbidden("The workspace in the body is not the workspace of this token.".into()));
    }
    let row: Option<(bool, String, bool)> =
        sqlx::query_as("SELECT online, workspace_id, bound FROM rm_devices WHERE device_sn = $1")
            .bind(&sn)
            .fetch_optional(&s.pool)
            .await?;
    match row {
        Some((_, ws, true)) if ws != claims.workspace_id => {
            return Err(ApiError::code(210232, "The device is bound to another organization."))
        }
        Some((true, _, _)) => {}
        _ => return Err(ApiError::failed("The device is offline.")),
    }
    let cmd = DeviceCommand::Bind {
        workspace_id: claims.workspace_id.clone(),
        user_id: body.user_id.filter(|u| !u.is_empty()).unwrap_or(claims.id.clone()),
        nickname: body.nickname.filter(|n| !n.is_empty()),
        model: None,
    };
    execute(&s.devices, &sn, cmd, metadata(&claims.username, &claims.workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}

/// `DELETE /manage/api/v1/devices/{device_sn}/unbinding`.
pub async fn unbind(State(s): State<AppState>, Auth(claims): Auth, Path(sn): Path<String>) -> ApiResult<Response> {
    let cmd = DeviceCommand::Unbind { workspace_id: claims.workspace_id.clone() };
    execute(&s.devices, &sn, cmd, metadata(&claims.username, &claims.workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpdateBody {
    nickname: Option<String>,
    device_desc: Option<String>,
}

/// `PUT /manage/api/v1/devices/{workspace_id}/devices/{device_sn}` (the web client sends `nickname`).
pub async fn update(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, sn)): Path<(String, String)>,
    DjiJson(body): DjiJson<UpdateBody>,
) -> ApiResult<Response> {
    let cmd = DeviceCommand::Update {
        workspace_id: workspace_id.clone(),
        nickname: body.nickname,
        device_desc: body.device_desc,
    };
    execute(&s.devices, &sn, cmd, metadata(&claims.username, &workspace_id, "http")).await.map_err(command_error)?;
    Ok(ok_empty())
}

/// `PUT /manage/api/v1/devices/{workspace_id}/devices/hms/{device_sn}`: every unread alert is read.
pub async fn hms_read(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, sn)): Path<(String, String)>,
) -> ApiResult<Response> {
    let cmd = DeviceCommand::MarkHmsRead { workspace_id: workspace_id.clone() };
    execute(&s.devices, &sn, cmd, metadata(&claims.username, &workspace_id, "http")).await.map_err(command_error)?;
    Ok(ok_empty())
}

const PROPERTIES: [&str; 6] = [
    "night_lights_state",
    "height_limit",
    "distance_limit_status",
    "obstacle_avoidance",
    "rth_altitude",
    "rc_lost_action",
];
const TRIES: usize = 3;
const REPLY_WAIT: Duration = Duration::from_secs(3);

/// `PUT /manage/api/v1/devices/{workspace_id}/devices/{device_sn}/property`: exactly one property;
/// sent as MQTT `property/set` to the dock, answered with the dock's result (3 tries of 3 s).
#[tracing::instrument(skip_all, fields(sn = %sn))]
pub async fn property_set(
    State(s): State<AppState>,
    Path((workspace_id, sn)): Path<(String, String)>,
    DjiJson(body): DjiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let invalid = || ApiError::code(210002, "Invalid parameter.");
    if body.len() != 1 {
        return Err(invalid());
    }
    let (key, value) = body.iter().next().ok_or_else(invalid)?;
    if !PROPERTIES.contains(&key.as_str()) || value.is_null() {
        return Err(invalid());
    }
    let (online, _) = device_in(&s, &sn, &workspace_id).await?;
    if !online {
        return Err(ApiError::code(212015, "The device is offline."));
    }
    let topic = protocol::thing_topic(&sn, "property/set");
    let mut replies =
        s.js.client()
            .subscribe(s.names.device_in_subject(&sn, "property_set_reply"))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let bid = uuid::Uuid::new_v4().to_string();
    for _ in 0..TRIES {
        let (tid, payload) = protocol::command(None, &bid, json!({ key.clone(): value.clone() }));
        crate::device_inbox::send(&s, &sn, &topic, &tid, payload).await.map_err(ApiError::Internal)?;
        let deadline = tokio::time::Instant::now() + REPLY_WAIT;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, replies.next()).await {
            let same_topic = m.headers.as_ref().and_then(|h| h.get(H_MQTT_TOPIC)).is_some();
            let Some(env) = protocol::Envelope::parse(&m.payload) else { continue };
            if !same_topic || env.tid != tid {
                continue;
            }
            // `{<key>: {result}}`; some firmware answers `{result}` directly
            let result = env.data.get(key).and_then(|v| v.get("result")).or_else(|| env.data.get("result"));
            return match result.and_then(protocol::as_i64) {
                Some(0) => Ok(ok_empty()),
                Some(code) => Err(ApiError::code(code, code.to_string())),
                None => Err(ApiError::failed("The device answered without a result.")),
            };
        }
    }
    Err(ApiError::code(211001, "No message reply received."))
}
