//! DeviceController and DeviceHmsController writes: bind, unbind, update, property set, mark HMS
//! read. A device of another workspace answers exactly like a device that does not exist.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use cqrs_es::AggregateError;
use serde::Deserialize;
use serde_json::{Map, Value};
use shared::auth::Auth;
use shared::domain::device::{DeviceCommand, DeviceError};
use shared::error::ok_empty;
use shared::event_store::{execute, metadata};
use shared::http::DjiJson;
use shared::protocol::services::property_messages;
use shared::protocol::{as_i64, codes};
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::device_service::{self, Call};
use crate::{command_error, AppState};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BindBody {
    workspace_id: Option<String>,
    user_id: Option<String>,
    nickname: Option<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bind))
        .routes(routes!(unbind))
        .routes(routes!(update))
        .routes(routes!(property_set))
        .routes(routes!(hms_read))
}

/// `POST /manage/api/v1/devices/{device_sn}/binding`: binds an online device to the caller's
/// workspace (the body's `workspace_id`, when given, must be that workspace).
#[tracing::instrument(skip_all, fields(sn = %sn))]
#[utoipa::path(
    post,
    path = "/manage/api/v1/devices/{device_sn}/binding",
    tag = "DeviceController",
    summary = "将设备绑定到工作空间后,设备数据只能在 Web 上看到。",
    params(("device_sn" = String, Path)),
)]
pub async fn bind(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
    DjiJson(body): DjiJson<BindBody>,
) -> ApiResult<Response> {
    if body.workspace_id.as_deref().is_some_and(|w| !w.is_empty() && w != claims.workspace_id) {
        return Err(ApiError::Forbidden("The workspace in the body is not the workspace of this token.".into()));
    }
    let cmd = DeviceCommand::Bind {
        workspace_id: claims.workspace_id.clone(),
        user_id: body.user_id.filter(|u| !u.is_empty()).unwrap_or(claims.id.clone()),
        nickname: body.nickname.filter(|n| !n.is_empty()),
        model: None,
        by_user: true,
    };
    // DJI Pilot 2 binds its RC right after publishing `update_topo`; the device inbox may not have
    // recorded that yet. The aggregate decides; a device not (yet) online is asked again for a
    // moment before the answer is no.
    let deadline = tokio::time::Instant::now() + BIND_WAIT;
    loop {
        let meta = metadata(&claims.username, &claims.workspace_id, "http");
        match execute(&s.devices, &sn, cmd.clone(), meta).await {
            Err(AggregateError::UserError(DeviceError::Offline | DeviceError::NotFound))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(AggregateError::UserError(DeviceError::NotFound)) => {
                return Err(ApiError::code(codes::DEVICE_OFFLINE, "The device is offline."))
            }
            other => return other.map(|()| ok_empty()).map_err(command_error),
        }
    }
}

/// How long a bind waits for a device that has just announced itself.
const BIND_WAIT: Duration = Duration::from_secs(3);

/// `DELETE /manage/api/v1/devices/{device_sn}/unbinding`.
#[utoipa::path(
    delete,
    path = "/manage/api/v1/devices/{device_sn}/unbinding",
    tag = "DeviceController",
    summary = "移除设备的绑定状态。",
    params(("device_sn" = String, Path)),
)]
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
#[utoipa::path(
    put,
    path = "/manage/api/v1/devices/{workspace_id}/devices/{device_sn}",
    tag = "DeviceController",
    summary = "更新设备信息。",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
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
#[utoipa::path(
    put,
    path = "/manage/api/v1/devices/{workspace_id}/devices/hms/{device_sn}",
    tag = "DeviceHmsController",
    summary = "Update unread hms messages to read status.",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn hms_read(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, sn)): Path<(String, String)>,
) -> ApiResult<Response> {
    let cmd = DeviceCommand::MarkHmsRead { workspace_id: workspace_id.clone() };
    execute(&s.devices, &sn, cmd, metadata(&claims.username, &workspace_id, "http")).await.map_err(command_error)?;
    Ok(ok_empty())
}

/// The properties DJI's demo lets the web client set (reference §9.8), each with its check.
fn check_property(key: &str, value: &Value) -> bool {
    let int_in = |v: &Value, lo: i64, hi: i64| as_i64(v).is_some_and(|x| (lo..=hi).contains(&x));
    let fields_in = |v: &Value, allowed: &[(&str, i64, i64)]| {
        v.as_object().is_some_and(|o| {
            !o.is_empty()
                && o.iter().all(|(k, v)| allowed.iter().any(|(name, lo, hi)| name == k && int_in(v, *lo, *hi)))
        })
    };
    match key {
        "night_lights_state" => int_in(value, 0, 1),
        "height_limit" => int_in(value, 20, 1500),
        "distance_limit_status" => fields_in(value, &[("state", 0, 1), ("distance_limit", 15, 8000)]),
        "obstacle_avoidance" => fields_in(value, &[("horizon", 0, 1), ("upside", 0, 1), ("downside", 0, 1)]),
        "rth_altitude" => int_in(value, 20, 500),
        "rc_lost_action" => int_in(value, 0, 2),
        _ => false,
    }
}

/// `PUT /manage/api/v1/devices/{workspace_id}/devices/{device_sn}/property`: exactly one property,
/// sent as MQTT `property/set` to the dock through the device service path (a nested object goes
/// one field per message, as DJI's demo sends it), answered with the dock's result.
#[tracing::instrument(skip_all, fields(sn = %sn))]
#[utoipa::path(
    put,
    path = "/manage/api/v1/devices/{workspace_id}/devices/{device_sn}/property",
    tag = "DeviceController",
    summary = "设置无人机的属性参数。",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn property_set(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((_workspace_id, sn)): Path<(String, String)>,
    DjiJson(body): DjiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let invalid = || ApiError::code(codes::INVALID_PARAMETER, "Invalid parameter.");
    if body.len() != 1 {
        return Err(invalid());
    }
    let (key, value) = body.iter().next().ok_or_else(invalid)?;
    if !check_property(key, value) {
        return Err(invalid());
    }
    device_service::commandable(&s, &sn, &claims.workspace_id).await?;
    for data in property_messages(key, value) {
        device_service::send_and_wait(&s, &claims, Call::property_set(&sn, data)).await?;
    }
    Ok(ok_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn properties_are_checked_as_dji_documents_them() {
        assert!(check_property("height_limit", &json!(120)));
        assert!(!check_property("height_limit", &json!(10)));
        assert!(check_property("distance_limit_status", &json!({"state": 1, "distance_limit": "500"})));
        assert!(!check_property("distance_limit_status", &json!({"state": 3})));
        assert!(!check_property("obstacle_avoidance", &json!({})));
        assert!(!check_property("speed", &json!(1)));
    }
}
