//! DRC controller: flying a dock's aircraft by hand from the web client. The browser and the dock
//! talk over the DRC broker without Hangar in the path (`thing/product/<dock>/drc/down|up`);
//! Hangar hands out their MQTT credentials, tells the dock to join (`drc_mode_enter`) or leave
//! (`drc_mode_exit`), and records each session on the dock's [`shared::domain::drc`] aggregate,
//! which the broker asks ([`authorize`]) before a client may publish or subscribe there.
//!
//! Credentials are HS256 JWTs with this installation's secret (DJI's scheme), valid for
//! `expire_sec` (1,800 to 86,400 s; 3,600 by default).

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::auth::Auth;
use shared::domain::drc::{self, Action, DrcCommand, Session};
use shared::error::{ok, ok_empty};
use shared::event_store::{execute, load, metadata};
use shared::http::DjiJson;
use shared::protocol::as_i64;
use shared::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::device_service::{self, Call};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(connect)).routes(routes!(enter)).routes(routes!(exit))
}

/// Routes the broker calls (no user token): [`authorize`].
pub fn broker_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(authorize))
}

fn expire_sec(v: Option<&Value>) -> ApiResult<i64> {
    match v {
        None | Some(Value::Null) => Ok(3600),
        Some(v) => match as_i64(v) {
            Some(s @ 1800..=86400) => Ok(s),
            _ => Err(ApiError::failed("expire_sec must be between 1800 and 86400 seconds.")),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct ConnectBody {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    expire_sec: Option<Value>,
}

/// `POST /control/api/v1/workspaces/{workspace_id}/drc/connect`: the browser's credentials on the
/// DRC broker (DrcModeMqttBroker): its client id (the one given, or `<user id>-<ms>`), the token's
/// username, and a password valid for `expire_sec`. They let it connect; which topics it may use
/// follows from `drc/enter`.
#[utoipa::path(
    post,
    path = "/control/api/v1/workspaces/{workspace_id}/drc/connect",
    tag = "DrcController",
    summary = "建立DRC连接。",
    params(("workspace_id" = String, Path)),
)]
pub async fn connect(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiJson(body): DjiJson<ConnectBody>,
) -> ApiResult<Response> {
    let expire = expire_sec(body.expire_sec.as_ref())?;
    let now = chrono::Utc::now();
    let client_id = body
        .client_id
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("{}-{}", claims.id, now.timestamp_millis()));
    let expires_at = now.timestamp() + expire;
    let password = s.jwt.issue_mqtt(&claims.username, expires_at, None).map_err(ApiError::Internal)?;
    Ok(ok(json!({
        "address": s.config.drc_mqtt_url,
        "client_id": client_id,
        "username": claims.username,
        "password": password,
        "expire_time": expires_at,
        "enable_tls": false,
    })))
}

#[derive(Debug, Deserialize)]
pub struct ModeBody {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    dock_sn: Option<String>,
    #[serde(default)]
    expire_sec: Option<Value>,
    #[serde(default)]
    device_info: Option<Value>,
}

impl ModeBody {
    fn required(&self) -> ApiResult<(String, String)> {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        match (text(&self.client_id), text(&self.dock_sn)) {
            (Some(c), Some(d)) => Ok((c, d)),
            _ => Err(ApiError::failed("client_id and dock_sn are required.")),
        }
    }
}

/// A frequency of `device_info` (1 to 30 Hz), or its default.
fn frequency(info: Option<&Value>, key: &str, default: i64) -> ApiResult<i64> {
    match info.and_then(|i| i.get(key)).filter(|v| !v.is_null()) {
        None => Ok(default),
        Some(v) => match as_i64(v) {
            Some(f @ 1..=30) => Ok(f),
            _ => Err(ApiError::failed(format!("device_info.{key} must be between 1 and 30."))),
        },
    }
}

/// A field of a device's latest OSD message, if it says it.
async fn last_osd(s: &AppState, sn: &str, field: &str) -> Option<Value> {
    let stream = s.js.get_stream(s.names.telemetry_stream()).await.ok()?;
    let m = stream.get_last_raw_message_by_subject(&s.names.telemetry_subject(sn, "osd")).await.ok()?;
    let osd: Value = serde_json::from_slice(&m.payload).ok()?;
    osd.get("data")?.get(field).cloned()
}

/// `POST /control/api/v1/workspaces/{workspace_id}/drc/enter` with `{client_id, dock_sn}`: the
/// dock joins the DRC broker with credentials of its own (`drc_mode_enter`), and the browser may
/// then publish its `drc/down` and subscribe to its `drc/up`, which are answered as
/// `{sub: [up], pub: [down]}`. The same browser entering again only renews the session.
///
/// As DJI's: the dock must be idle or working (OSD `mode_code` 0 or 4) and its aircraft in the air
/// (`elevation` > 0), as far as their latest OSD tells; a wayline job in progress is paused
/// (`flighttask_pause`) until leaving, and the flight authority is taken
/// (`flight_authority_grab`) when someone else holds it.
#[utoipa::path(
    post,
    path = "/control/api/v1/workspaces/{workspace_id}/drc/enter",
    tag = "DrcController",
    summary = "进入DRC模式。",
    params(("workspace_id" = String, Path)),
)]
pub async fn enter(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiJson(body): DjiJson<ModeBody>,
) -> ApiResult<Response> {
    let (client_id, dock_sn) = body.required()?;
    let expire = expire_sec(body.expire_sec.as_ref())?;
    let info = body.device_info.as_ref();
    let (osd_frequency, hsi_frequency) = (frequency(info, "osd_frequency", 10)?, frequency(info, "hsi_frequency", 1)?);
    let device = device_service::commandable(&s, &dock_sn, &claims.workspace_id).await?;
    if device.model().map(|m| m.domain) != Some(3) {
        return Err(ApiError::failed("DRC is for docks: this device is not one."));
    }
    let now = chrono::Utc::now();
    let expires_at = now.timestamp() + expire;
    let topics = json!({"sub": [drc::up_topic(&dock_sn)], "pub": [drc::down_topic(&dock_sn)]});
    let meta = || metadata(&claims.username, &claims.workspace_id, "http");
    let current = load(&s.drc, &dock_sn).await.map_err(crate::command_error)?;
    if let Some(open) = current.open(now.timestamp()).filter(|o| o.client_id == client_id) {
        // the same browser again: a longer session, nothing to tell the dock
        let renewed = Session { expires_at, ..open.clone() };
        execute(&s.drc, &dock_sn, DrcCommand::Enter(renewed), meta()).await.map_err(crate::command_error)?;
        return Ok(ok(topics));
    }
    if let Some(mode) =
        last_osd(&s, &dock_sn, "mode_code").await.as_ref().and_then(as_i64).filter(|m| *m != 0 && *m != 4)
    {
        return Err(ApiError::failed(format!(
            "The dock can enter DRC mode only when idle or working (its mode code is {mode})."
        )));
    }
    if let Some(aircraft) = device.sub_devices().first() {
        let elevation = last_osd(&s, aircraft, "elevation").await.as_ref().and_then(Value::as_f64);
        if elevation.is_some_and(|e| e <= 0.0) {
            return Err(ApiError::failed("The aircraft must be in the air to be flown by hand: take off first."));
        }
    }
    let paused_job = crate::wayline_job::pause_for_drc(&s, &claims, &dock_sn).await?;
    if device.flight_control().is_some_and(|c| c != "A") {
        let grab = Call::service(&dock_sn, "flight_authority_grab", Value::String(String::new()));
        if let Err(e) = device_service::send_and_wait(&s, &claims, grab).await {
            resume(&s, &claims, paused_job.as_deref()).await;
            return Err(e);
        }
    }
    let dock_client_id = format!("{dock_sn}-{}", now.timestamp_millis());
    let acl = json!({"pub": [drc::up_topic(&dock_sn)], "sub": [drc::down_topic(&dock_sn)]});
    let password = s.jwt.issue_mqtt(&dock_sn, expires_at, Some(acl)).map_err(ApiError::Internal)?;
    let session = Session {
        workspace_id: claims.workspace_id.clone(),
        client_id,
        dock_client_id: dock_client_id.clone(),
        username: claims.username.clone(),
        expires_at,
        paused_job: paused_job.clone(),
    };
    // granted before the dock is told, so that its first subscription is already allowed
    execute(&s.drc, &dock_sn, DrcCommand::Enter(session), meta()).await.map_err(crate::command_error)?;
    let data = json!({
        "mqtt_broker": {
            "address": s.config.drc_dock_mqtt_url,
            "client_id": dock_client_id,
            "username": dock_sn,
            "password": password,
            "expire_time": expires_at,
            "enable_tls": false,
        },
        "osd_frequency": osd_frequency,
        "hsi_frequency": hsi_frequency,
    });
    if let Err(e) = device_service::send_and_wait(&s, &claims, Call::service(&dock_sn, "drc_mode_enter", data)).await {
        let revoke = DrcCommand::Exit { workspace_id: claims.workspace_id.clone() };
        execute(&s.drc, &dock_sn, revoke, meta()).await.map_err(crate::command_error)?;
        resume(&s, &claims, paused_job.as_deref()).await;
        return Err(e);
    }
    Ok(ok(topics))
}

/// Resumes the job entering paused, when entering fails after all (the failure is what the caller
/// hears; this one is logged).
async fn resume(s: &AppState, claims: &shared::auth::Claims, job: Option<&str>) {
    if let Some(job) = job {
        if let Err(e) = crate::wayline_job::resume_after_drc(s, claims, job).await {
            tracing::warn!(error = %e, job, "a job paused for DRC was not resumed");
        }
    }
}

/// `POST /control/api/v1/workspaces/{workspace_id}/drc/exit` with `{client_id, dock_sn}`: the dock
/// leaves (`drc_mode_exit`) and the session's grants end, whatever the dock answers; a job that
/// entering paused is resumed (`flighttask_recovery`). A dock whose OSD says it is still in DRC
/// (`drc_state` ≠ 0) is told to leave even when Hangar holds no session for it.
#[utoipa::path(
    post,
    path = "/control/api/v1/workspaces/{workspace_id}/drc/exit",
    tag = "DrcController",
    summary = "退出DRC模式。",
    params(("workspace_id" = String, Path)),
)]
pub async fn exit(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiJson(body): DjiJson<ModeBody>,
) -> ApiResult<Response> {
    let (_client_id, dock_sn) = body.required()?;
    device_service::commandable(&s, &dock_sn, &claims.workspace_id).await?;
    let current = load(&s.drc, &dock_sn).await.map_err(crate::command_error)?;
    // a session not closed yet (even if it expired), or a dock that says it is still in DRC
    let session = current.session().filter(|o| o.workspace_id == claims.workspace_id).cloned();
    let dock_in_drc = last_osd(&s, &dock_sn, "drc_state").await.as_ref().and_then(as_i64).is_some_and(|d| d != 0);
    if session.is_none() && !dock_in_drc {
        return Err(ApiError::failed("The dock is not in DRC mode."));
    }
    let answer = device_service::send_and_wait(
        &s,
        &claims,
        Call::service(&dock_sn, "drc_mode_exit", Value::String(String::new())),
    )
    .await;
    let paused_job = session.as_ref().and_then(|o| o.paused_job.clone());
    if session.is_some() {
        let meta = metadata(&claims.username, &claims.workspace_id, "http");
        execute(&s.drc, &dock_sn, DrcCommand::Exit { workspace_id: claims.workspace_id.clone() }, meta)
            .await
            .map_err(crate::command_error)?;
    }
    answer?;
    if let Some(job) = paused_job {
        crate::wayline_job::resume_after_drc(&s, &claims, &job).await?;
    }
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct AuthorizeBody {
    #[serde(default, alias = "client_id")]
    clientid: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    action: String,
}

/// `POST /control/api/v1/drc/authorize`, for the DRC broker (EMQX's HTTP authorization source,
/// body `{"clientid": "${clientid}", "topic": "${topic}", "action": "${action}"}`): `{"result":
/// "allow"}` when an open DRC session lets this client publish or subscribe there, `"deny"` for
/// any other DRC topic, `"ignore"` for every other topic (the broker's other rules decide).
#[utoipa::path(
    post,
    path = "/control/api/v1/drc/authorize",
    tag = "DrcController",
    summary = "Whether an MQTT client may use a DRC topic now (for the broker)."
)]
pub async fn authorize(State(s): State<AppState>, DjiJson(body): DjiJson<AuthorizeBody>) -> Response {
    use axum::response::IntoResponse as _;
    let answer = |r: &str| Json(json!({ "result": r })).into_response();
    let parts: Vec<&str> = body.topic.split('/').collect();
    let ["thing", "product", dock_sn, "drc", "up" | "down"] = parts[..] else { return answer("ignore") };
    let action = match body.action.as_str() {
        "publish" => Action::Publish,
        "subscribe" => Action::Subscribe,
        _ => return answer("deny"),
    };
    match load(&s.drc, dock_sn).await {
        Ok(session) if session.allows(dock_sn, &body.clientid, &body.topic, action, chrono::Utc::now().timestamp()) => {
            answer("allow")
        }
        Ok(_) => answer("deny"),
        Err(e) => {
            tracing::warn!(error = %e, dock_sn, "DRC authorization not decided");
            answer("deny")
        }
    }
}
