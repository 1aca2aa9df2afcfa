//! The Dock controller (`/control/api/v1/devices/{sn}/…`, reference `http-api.md` §6 and the PUT
//! shortcuts of `extensions.md`): remote debugging, fly-to-point and its stop, takeoff-to-point,
//! flight and payload authority, and payload (camera and gimbal) commands. Every command goes
//! through [`device_service`](crate::device_service); the device's answer is the HTTP answer.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared::auth::{Auth, Claims};
use shared::error::ok_empty;
use shared::http::DjiJson;
use shared::protocol::services::{remote_debug_data, DESTRUCTIVE, PAYLOAD_COMMANDS};
use shared::protocol::{as_i64, codes};
use shared::{ApiError, ApiResult};

use crate::device_service::{self, Call};
use crate::AppState;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(remote_debug))
        .routes(routes!(fly_to_point, fly_to_point_stop))
        .routes(routes!(takeoff_to_point))
        .routes(routes!(flight_authority))
        .routes(routes!(payload_authority))
        .routes(routes!(payload_command))
        .routes(routes!(cover_open))
        .routes(routes!(cover_close))
        .routes(routes!(cover_force_close))
        .routes(routes!(debug_mode_open))
        .routes(routes!(debug_mode_close))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::code(codes::INVALID_PARAMETER, message)
}

/// A number from the body (numbers as strings accepted), required and within `range`.
fn number(body: &Map<String, Value>, key: &str, range: std::ops::RangeInclusive<f64>) -> ApiResult<f64> {
    let v = body.get(key).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())));
    match v {
        Some(x) if range.contains(&x) => Ok(x),
        Some(_) => Err(invalid(format!("{key} must be between {} and {}.", range.start(), range.end()))),
        None => Err(invalid(format!("{key} is required."))),
    }
}

/// An integer from the body, required and one of `allowed`.
fn choice(body: &Map<String, Value>, key: &str, allowed: &[i64]) -> ApiResult<i64> {
    match body.get(key).and_then(as_i64) {
        Some(x) if allowed.contains(&x) => Ok(x),
        Some(_) => Err(invalid(format!("{key} must be one of {allowed:?}."))),
        None => Err(invalid(format!("{key} is required."))),
    }
}

fn optional_choice(body: &Map<String, Value>, key: &str, allowed: &[i64]) -> ApiResult<Option<i64>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => choice(body, key, allowed).map(Some),
    }
}

fn text<'a>(body: &'a Map<String, Value>, key: &str) -> ApiResult<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("{key} is required.")))
}

async fn send(s: &AppState, claims: &Claims, sn: &str, method: &str, data: Value) -> ApiResult<Value> {
    device_service::call(s, claims, Call::service(sn, method, data)).await
}

/// [`send`] to a gateway this request already checked.
async fn send_checked(s: &AppState, claims: &Claims, sn: &str, method: &str, data: Value) -> ApiResult<Value> {
    device_service::send_and_wait(s, claims, Call::service(sn, method, data)).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionBody {
    action: Option<Value>,
}

/// `POST /control/api/v1/devices/{sn}/jobs/{service_identifier}`: a remote-debug method with its
/// `action`. Whether the dock is in a state to do it is the dock's to say (its result code is the
/// answer), so a stale view of its state never refuses a command it would take.
#[tracing::instrument(skip_all, fields(sn = %sn, method = %method))]
#[utoipa::path(
    post,
    path = "/control/api/v1/devices/{sn}/jobs/{service_identifier}",
    tag = "DockController",
    summary = "创建远程调试任务。",
    params(("sn" = String, Path), ("service_identifier" = String, Path)),
)]
pub async fn remote_debug(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((sn, method)): Path<(String, String)>,
    DjiJson(body): DjiJson<ActionBody>,
) -> ApiResult<Response> {
    let data = remote_debug_data(&method, body.action.as_ref().and_then(as_i64)).map_err(invalid)?;
    if DESTRUCTIVE.contains(&method.as_str()) && !s.config.allow_destructive_commands {
        return Err(ApiError::code(
            codes::UNSUPPORTED,
            format!("{method} erases the device's storage; this installation does not send it (see HANGAR_ALLOW_DESTRUCTIVE_COMMANDS)."),
        ));
    }
    send(&s, &claims, &sn, &method, data).await?;
    Ok(ok_empty())
}

/// The PUT shortcuts (`extensions.md`): the same as `POST …/jobs/{method}` without a body.
async fn shortcut(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
    method: &'static str,
) -> ApiResult<Response> {
    let data = remote_debug_data(method, None).map_err(invalid)?;
    send(&s, &claims, &sn, method, data).await?;
    Ok(ok_empty())
}

// The PUT shortcuts of `extensions.md`, each sending the dock method of its name: one function per
// route (rather than a table of closures) so that each is registered and documented by its own
// `#[utoipa::path]`.

#[utoipa::path(
    put,
    path = "/control/api/v1/devices/{sn}/cover/open",
    tag = "DockController",
    summary = "coverOpen",
    params(("sn" = String, Path)),
)]
pub async fn cover_open(s: State<AppState>, a: Auth, p: Path<String>) -> ApiResult<Response> {
    shortcut(s, a, p, "cover_open").await
}

#[utoipa::path(
    put,
    path = "/control/api/v1/devices/{sn}/cover/close",
    tag = "DockController",
    summary = "关闭舱盖",
    params(("sn" = String, Path)),
)]
pub async fn cover_close(s: State<AppState>, a: Auth, p: Path<String>) -> ApiResult<Response> {
    shortcut(s, a, p, "cover_close").await
}

#[utoipa::path(
    put,
    path = "/control/api/v1/devices/{sn}/cover/force-close",
    tag = "DockController",
    summary = "coverForceClose",
    params(("sn" = String, Path)),
)]
pub async fn cover_force_close(s: State<AppState>, a: Auth, p: Path<String>) -> ApiResult<Response> {
    shortcut(s, a, p, "cover_force_close").await
}

#[utoipa::path(
    put,
    path = "/control/api/v1/devices/{sn}/debug-mode/open",
    tag = "DockController",
    summary = "debugModeOpen",
    params(("sn" = String, Path)),
)]
pub async fn debug_mode_open(s: State<AppState>, a: Auth, p: Path<String>) -> ApiResult<Response> {
    shortcut(s, a, p, "debug_mode_open").await
}

#[utoipa::path(
    put,
    path = "/control/api/v1/devices/{sn}/debug-mode/close",
    tag = "DockController",
    summary = "debugModeClose",
    params(("sn" = String, Path)),
)]
pub async fn debug_mode_close(s: State<AppState>, a: Auth, p: Path<String>) -> ApiResult<Response> {
    shortcut(s, a, p, "debug_mode_close").await
}

/// Checks the gateway once and grabs flight authority for the dock unless it already has it
/// (`control_source` "A"); the caller's next command may then use [`send_checked`].
async fn ensure_flight_authority(s: &AppState, claims: &Claims, sn: &str) -> ApiResult<()> {
    let device = device_service::commandable(s, sn, &claims.workspace_id).await?;
    if device.flight_control() != Some("A") {
        send_checked(s, claims, sn, "flight_authority_grab", json!("")).await?;
    }
    Ok(())
}

/// `POST …/jobs/fly-to-point`: `{max_speed 1..15, points: [{latitude, longitude, height 2..10000}]}`.
#[utoipa::path(
    post,
    path = "/control/api/v1/devices/{sn}/jobs/fly-to-point",
    tag = "DockController",
    summary = "飞向指定点位。",
    params(("sn" = String, Path)),
)]
pub async fn fly_to_point(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
    DjiJson(body): DjiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let max_speed = number(&body, "max_speed", 1.0..=15.0)?;
    let points = body.get("points").and_then(Value::as_array).filter(|p| !p.is_empty());
    let points = points.ok_or_else(|| invalid("points must hold at least one point."))?;
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        let p = p.as_object().ok_or_else(|| invalid("each point is {latitude, longitude, height}."))?;
        out.push(json!({
            "latitude": number(p, "latitude", -90.0..=90.0)?,
            "longitude": number(p, "longitude", -180.0..=180.0)?,
            "height": number(p, "height", 2.0..=10000.0)?,
        }));
    }
    ensure_flight_authority(&s, &claims, &sn).await?;
    let data = json!({"fly_to_id": uuid::Uuid::new_v4().to_string(), "max_speed": max_speed, "points": out});
    send_checked(&s, &claims, &sn, "fly_to_point", data).await?;
    Ok(ok_empty())
}

/// `DELETE …/jobs/fly-to-point`.
#[utoipa::path(
    delete,
    path = "/control/api/v1/devices/{sn}/jobs/fly-to-point",
    tag = "DockController",
    summary = "停止飞向点位任务。",
    params(("sn" = String, Path)),
)]
pub async fn fly_to_point_stop(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
) -> ApiResult<Response> {
    send(&s, &claims, &sn, "fly_to_point_stop", json!("")).await?;
    Ok(ok_empty())
}

/// `POST …/jobs/takeoff-to-point` (reference §6.4).
#[utoipa::path(
    post,
    path = "/control/api/v1/devices/{sn}/jobs/takeoff-to-point",
    tag = "DockController",
    summary = "从指定点位起飞。",
    params(("sn" = String, Path)),
)]
pub async fn takeoff_to_point(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
    DjiJson(body): DjiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let mut data = json!({
        "flight_id": uuid::Uuid::new_v4().to_string(),
        "target_longitude": number(&body, "target_longitude", -180.0..=180.0)?,
        "target_latitude": number(&body, "target_latitude", -90.0..=90.0)?,
        "target_height": number(&body, "target_height", 2.0..=10000.0)?,
        "security_takeoff_height": number(&body, "security_takeoff_height", 2.0..=1500.0)?,
        "rth_altitude": number(&body, "rth_altitude", 2.0..=1500.0)?,
        "rc_lost_action": choice(&body, "rc_lost_action", &[0, 1, 2])?,
        "exit_wayline_when_rc_lost": choice(&body, "exit_wayline_when_rc_lost", &[0, 1])?,
        "max_speed": number(&body, "max_speed", 1.0..=15.0)?,
    });
    // required by docks of cloud API 1.0 and later; sent when given
    for (key, allowed) in
        [("rth_mode", &[0, 1]), ("commander_mode_lost_action", &[0, 1]), ("commander_flight_mode", &[0, 1])]
    {
        if let Some(v) = optional_choice(&body, key, allowed)? {
            data[key] = json!(v);
        }
    }
    if body.get("commander_flight_height").is_some_and(|v| !v.is_null()) {
        data["commander_flight_height"] = json!(number(&body, "commander_flight_height", 2.0..=3000.0)?);
    }
    if let Some(sim) = body.get("simulate_mission").filter(|v| v.is_object()) {
        data["simulate_mission"] = sim.clone();
    }
    ensure_flight_authority(&s, &claims, &sn).await?;
    send_checked(&s, &claims, &sn, "takeoff_to_point", data).await?;
    Ok(ok_empty())
}

/// `POST …/authority/flight`: `flight_authority_grab`, unless the dock already controls the flight.
#[utoipa::path(
    post,
    path = "/control/api/v1/devices/{sn}/authority/flight",
    tag = "DockController",
    summary = "夺取飞行控制权限。",
    params(("sn" = String, Path)),
)]
pub async fn flight_authority(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
) -> ApiResult<Response> {
    ensure_flight_authority(&s, &claims, &sn).await?;
    Ok(ok_empty())
}

/// `"<type>-<sub_type>-<position>"`.
fn valid_payload_index(p: &str) -> bool {
    let parts: Vec<&str> = p.split('-').collect();
    parts.len() == 3 && parts.iter().all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
}

/// `POST …/authority/payload` `{payload_index}`: `payload_authority_grab`, unless the dock already
/// controls that payload.
#[utoipa::path(
    post,
    path = "/control/api/v1/devices/{sn}/authority/payload",
    tag = "DockController",
    summary = "夺取负载设备控制权限。",
    params(("sn" = String, Path)),
)]
pub async fn payload_authority(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
    DjiJson(body): DjiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let index = text(&body, "payload_index")?;
    if !valid_payload_index(index) {
        return Err(invalid("payload_index must be <type>-<sub_type>-<position>, e.g. 52-0-0."));
    }
    let device = device_service::commandable(&s, &sn, &claims.workspace_id).await?;
    if device.payload_control(index) != Some("A") {
        send_checked(&s, &claims, &sn, "payload_authority_grab", json!({ "payload_index": index })).await?;
    }
    Ok(ok_empty())
}

/// The `data` of a payload command (reference §6.7, §9.4), checked for what each method needs.
pub fn payload_data(cmd: &str, body: &Map<String, Value>) -> ApiResult<Value> {
    if !PAYLOAD_COMMANDS.contains(&cmd) {
        return Err(invalid(format!("cmd must be one of {}.", PAYLOAD_COMMANDS.join(", "))));
    }
    let index = text(body, "payload_index")?;
    if !valid_payload_index(index) {
        return Err(invalid("payload_index must be <type>-<sub_type>-<position>, e.g. 52-0-0."));
    }
    let camera_type = |allowed: &[&str]| -> ApiResult<String> {
        match body.get("camera_type").and_then(Value::as_str) {
            Some(t) if allowed.contains(&t) => Ok(t.to_string()),
            _ => Err(invalid(format!("camera_type must be one of {allowed:?} for {cmd}."))),
        }
    };
    let locked = || -> ApiResult<bool> {
        match body.get("locked") {
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) if as_i64(v).is_some() => Ok(as_i64(v) != Some(0)),
            _ => Err(invalid(format!("locked is required for {cmd}."))),
        }
    };
    Ok(match cmd {
        "camera_mode_switch" => {
            json!({"payload_index": index, "camera_mode": choice(body, "camera_mode", &[0, 1, 2, 3])?})
        }
        "camera_photo_take" | "camera_photo_stop" | "camera_recording_start" | "camera_recording_stop" => {
            json!({ "payload_index": index })
        }
        "camera_aim" => json!({
            "payload_index": index,
            "camera_type": camera_type(&["zoom", "wide", "ir"])?,
            "locked": locked()?,
            "x": number(body, "x", 0.0..=1.0)?,
            "y": number(body, "y", 0.0..=1.0)?,
        }),
        "camera_focal_length_set" => json!({
            "payload_index": index,
            "camera_type": camera_type(&["zoom", "ir"])?,
            "zoom_factor": number(body, "zoom_factor", 2.0..=200.0)?,
        }),
        "gimbal_reset" => json!({"payload_index": index, "reset_mode": choice(body, "reset_mode", &[0, 1, 2, 3])?}),
        "camera_look_at" => json!({
            "payload_index": index,
            "locked": locked()?,
            "latitude": number(body, "latitude", -90.0..=90.0)?,
            "longitude": number(body, "longitude", -180.0..=180.0)?,
            "height": number(body, "height", -2000.0..=10000.0)?,
        }),
        // the SDK's other payload methods: their fields are the device's to judge
        _ => Value::Object(body.clone()),
    })
}

/// `POST …/payload/commands` `{cmd, data}`.
#[utoipa::path(
    post,
    path = "/control/api/v1/devices/{sn}/payload/commands",
    tag = "DockController",
    summary = "发送负载设备命令。",
    params(("sn" = String, Path)),
)]
pub async fn payload_command(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(sn): Path<String>,
    DjiJson(body): DjiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let cmd = text(&body, "cmd")?;
    let empty = Map::new();
    let params = body.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let data = payload_data(cmd, params)?;
    send(&s, &claims, &sn, cmd, data).await?;
    Ok(ok_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn payload_commands_carry_what_their_method_takes() {
        let d = payload_data(
            "camera_aim",
            &obj(json!({"payload_index": "52-0-0", "camera_type": "zoom", "locked": true, "x": 0.5, "y": "0.25"})),
        )
        .unwrap();
        assert_eq!(d, json!({"payload_index": "52-0-0", "camera_type": "zoom", "locked": true, "x": 0.5, "y": 0.25}));
        assert!(payload_data(
            "camera_aim",
            &obj(json!({"payload_index": "52-0-0", "camera_type": "zoom", "x": 2, "y": 0, "locked": true}))
        )
        .is_err());
        assert!(payload_data(
            "camera_focal_length_set",
            &obj(json!({"payload_index": "52-0-0", "camera_type": "wide", "zoom_factor": 5}))
        )
        .is_err());
        assert!(payload_data("self_destruct", &obj(json!({"payload_index": "52-0-0"}))).is_err());
        assert!(payload_data("camera_photo_take", &obj(json!({"payload_index": "52-0"}))).is_err());
        assert_eq!(
            payload_data("gimbal_reset", &obj(json!({"payload_index": "52-0-0", "reset_mode": 1, "extra": 1})))
                .unwrap(),
            json!({"payload_index": "52-0-0", "reset_mode": 1})
        );
    }
}
