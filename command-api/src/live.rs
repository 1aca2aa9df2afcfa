//! LiveStreamController writes: start, stop, quality and lens of a camera's live stream. Each is a
//! command to the camera's gateway (the dock or remote controller the aircraft flies with, or the
//! dock itself for its own camera) through [`crate::device_service`], so it is recorded and
//! answered with the device's code like every other command.
//!
//! A camera is named by a `video_id`, `<device sn>/<camera index>/<video type>-<n>` (for example
//! `1581F5BMD228Q00A82XX/39-0-7/normal-0`); the workspace is the token's. What the device accepted is
//! recorded on the video's [`shared::domain::live_stream`] aggregate: which streams run, and where
//! to watch them.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::auth::{Auth, Claims};
use shared::domain::live_stream::{self, LiveStreamCommand, Started};
use shared::error::{ok, ok_empty};
use shared::event_store::{execute, load, metadata};
use shared::http::DjiJson;
use shared::protocol::codes;
use shared::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::device_service::{self, Call};
use crate::AppState;

/// DJI's live methods have a longer answer time than other services (the device starts an encoder).
const LIVE_REPLY_TIMEOUT: Duration = Duration::from_secs(20);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(stop))
        .routes(routes!(quality))
        .routes(routes!(switch_lens))
}

/// A `video_id` taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoId {
    pub sn: String,
    /// `type-subtype-position` of the camera's payload.
    pub camera_index: String,
    pub video: String,
}

impl VideoId {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('/');
        let (sn, camera, video) = (parts.next()?, parts.next()?, parts.next()?);
        let numbers = |t: &str, n: usize| t.split('-').count() == n && t.split('-').all(|p| p.parse::<u32>().is_ok());
        let video_ok = video.rsplit_once('-').is_some_and(|(kind, n)| !kind.is_empty() && n.parse::<u32>().is_ok());
        (parts.next().is_none() && !sn.is_empty() && numbers(camera, 3) && video_ok).then(|| VideoId {
            sn: sn.to_string(),
            camera_index: camera.to_string(),
            video: video.to_string(),
        })
    }

    fn text(&self) -> String {
        format!("{}/{}/{}", self.sn, self.camera_index, self.video)
    }
}

fn bad(message: &str) -> ApiError {
    ApiError::code(codes::LIVE_BAD_PARAMETER, message)
}

fn video_id(raw: Option<&str>) -> ApiResult<VideoId> {
    raw.and_then(VideoId::parse).ok_or_else(|| bad("video_id must be <device sn>/<camera index>/<video type>-<n>."))
}

fn video_quality(raw: Option<i64>) -> ApiResult<i64> {
    match raw {
        Some(q @ 0..=4) => Ok(q),
        None => Ok(0),
        Some(_) => Err(bad("video_quality must be 0 (auto), 1 (smooth), 2 (standard), 3 (high) or 4 (ultra high).")),
    }
}

/// The gateway through which the camera's device is asked: its dock or remote controller, or the
/// device itself when it is one. The device must be known to the caller's workspace.
async fn gateway(s: &AppState, claims: &Claims, video: &VideoId) -> ApiResult<String> {
    let device = load(&s.devices, &video.sn).await.map_err(crate::command_error)?;
    if !device.is_known() || device.workspace_id() != Some(claims.workspace_id.as_str()) {
        return Err(ApiError::code(codes::LIVE_NO_AIRCRAFT, "The device of this video_id is not in this workspace."));
    }
    match (device.parent_sn(), device.model().map(|m| m.domain)) {
        (Some(parent), _) if !parent.is_empty() => Ok(parent.to_string()),
        (_, Some(2 | 3)) => Ok(video.sn.clone()),
        _ => Err(ApiError::code(codes::LIVE_NO_GATEWAY, "The device of this video_id has no gateway online.")),
    }
}

async fn ask(s: &AppState, claims: &Claims, video: &VideoId, method: &str, data: Value) -> ApiResult<Value> {
    let gateway = gateway(s, claims, video).await?;
    let mut call = Call::service(&gateway, method, data);
    call.timeout = Some(LIVE_REPLY_TIMEOUT.max(Duration::from_millis(s.config.device_reply_timeout_ms)));
    device_service::call(s, claims, call).await
}

#[derive(Debug, Deserialize)]
pub struct StartBody {
    url_type: Option<i64>,
    /// The stream's URL as the client built it (DJI's web client does, from its own settings):
    /// used as it is when given.
    url: Option<String>,
    video_id: Option<String>,
    video_quality: Option<i64>,
}

/// `POST /manage/api/v1/live/streams/start`: `live_start_push` with the stream's URL: the one the
/// client sent, or else one built from this server's settings (the media server for RTMP, WHIP,
/// Agora and GB28181; the credentials the device serves RTSP with). Answers `{url}`, where the web
/// client plays it.
#[utoipa::path(
    post,
    path = "/manage/api/v1/live/streams/start",
    tag = "LiveStreamController",
    summary = "Live streaming according to the parameters passed in from the web side."
)]
pub async fn start(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiJson(body): DjiJson<StartBody>,
) -> ApiResult<Response> {
    let video = video_id(body.video_id.as_deref())?;
    let quality = video_quality(body.video_quality)?;
    let url_type = body.url_type.ok_or_else(|| bad("url_type is required."))?;
    let stream = format!("{}-{}", video.sn, video.camera_index);
    let unsupported = |what: &str| {
        ApiError::code(codes::LIVE_URL_TYPE_UNSUPPORTED, format!("{what} is not configured on this server."))
    };
    let c = &s.config;
    let given = body.url.filter(|u| !u.trim().is_empty());
    let url = match (url_type, given) {
        (0..=4, Some(url)) => url,
        (url_type, None) => match url_type {
            0 if !c.live_agora.is_empty() => format!("{}&sn={}", c.live_agora, video.sn),
            0 => return Err(unsupported("Agora (HANGAR_LIVE_AGORA)")),
            1 => format!("{}{stream}", c.live_rtmp_url),
            2 => {
                format!("userName={}&password={}&port={}", c.live_rtsp_username, c.live_rtsp_password, c.live_rtsp_port)
            }
            3 if !c.live_gb28181.is_empty() => c.live_gb28181.clone(),
            3 => return Err(unsupported("GB28181 (HANGAR_LIVE_GB28181)")),
            4 if !c.live_whip_url.is_empty() => format!("{}{stream}", c.live_whip_url),
            4 => return Err(unsupported("WHIP (HANGAR_LIVE_WHIP_URL)")),
            _ => return Err(bad("url_type must be 0 (Agora), 1 (RTMP), 2 (RTSP), 3 (GB28181) or 4 (WHIP).")),
        },
        _ => return Err(bad("url_type must be 0 (Agora), 1 (RTMP), 2 (RTSP), 3 (GB28181) or 4 (WHIP).")),
    };
    let data = json!({"url_type": url_type, "url": url, "video_id": video.text(), "video_quality": quality});
    let output = ask(&s, &claims, &video, "live_start_push", data).await?;
    let play = match url_type {
        1 => url.strip_prefix("rtmp").map_or(url.clone(), |rest| format!("webrtc{rest}")),
        4 => url.replace("whip", "whep"),
        2 => {
            output.as_str().map(str::to_owned).or_else(|| output["url"].as_str().map(str::to_owned)).unwrap_or_default()
        }
        3 => {
            let param = |name: &str| {
                form_urlencoded::parse(url.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
            };
            format!(
                "webrtc://{}/live/{}@{}",
                param("serverIP").unwrap_or_default(),
                param("agentID").unwrap_or_default(),
                param("channel").unwrap_or_default()
            )
        }
        _ => String::new(),
    };
    let started = Started {
        workspace_id: claims.workspace_id.clone(),
        sn: video.sn.clone(),
        video_id: video.text(),
        url_type,
        url: play.clone(),
        video_quality: quality,
        video_type: video.video.rsplit_once('-').map_or(video.video.clone(), |(kind, _)| kind.to_string()),
        username: claims.username.clone(),
    };
    record(&s, &claims, &video, LiveStreamCommand::Start(Box::new(started))).await?;
    if play.is_empty() {
        return Ok(ok(json!({})));
    }
    Ok(ok(json!({ "url": play })))
}

/// Records what the device accepted on the camera's stream.
async fn record(s: &AppState, claims: &Claims, video: &VideoId, command: LiveStreamCommand) -> ApiResult<()> {
    let meta = metadata(&claims.username, &claims.workspace_id, "http");
    execute(&s.live_streams, &live_stream::id(&video.text()), command, meta).await.map_err(crate::command_error)
}

#[derive(Debug, Deserialize)]
pub struct StopBody {
    video_id: Option<String>,
}

/// `POST /manage/api/v1/live/streams/stop`: `live_stop_push`.
#[utoipa::path(
    post,
    path = "/manage/api/v1/live/streams/stop",
    tag = "LiveStreamController",
    summary = "Stop live streaming according to the parameters passed in from the web side."
)]
pub async fn stop(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiJson(body): DjiJson<StopBody>,
) -> ApiResult<Response> {
    let video = video_id(body.video_id.as_deref())?;
    ask(&s, &claims, &video, "live_stop_push", json!({"video_id": video.text()})).await?;
    record(&s, &claims, &video, LiveStreamCommand::Stop).await?;
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct QualityBody {
    video_id: Option<String>,
    video_quality: Option<i64>,
}

/// `POST /manage/api/v1/live/streams/update`: `live_set_quality`.
#[utoipa::path(
    post,
    path = "/manage/api/v1/live/streams/update",
    tag = "LiveStreamController",
    summary = "Set the quality of the live streaming according to the parameters passed in from the web side."
)]
pub async fn quality(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiJson(body): DjiJson<QualityBody>,
) -> ApiResult<Response> {
    let video = video_id(body.video_id.as_deref())?;
    let quality = video_quality(Some(body.video_quality.ok_or_else(|| bad("video_quality is required."))?))?;
    ask(&s, &claims, &video, "live_set_quality", json!({"video_id": video.text(), "video_quality": quality})).await?;
    record(&s, &claims, &video, LiveStreamCommand::SetQuality { video_quality: quality }).await?;
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct SwitchBody {
    video_id: Option<String>,
    video_type: Option<String>,
}

/// `POST /manage/api/v1/live/streams/switch`: `live_lens_change` (`zoom`, `wide` or `ir`).
#[utoipa::path(
    post,
    path = "/manage/api/v1/live/streams/switch",
    tag = "LiveStreamController",
    summary = "liveLensChange"
)]
pub async fn switch_lens(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiJson(body): DjiJson<SwitchBody>,
) -> ApiResult<Response> {
    let video = video_id(body.video_id.as_deref())?;
    let lens = match body.video_type.as_deref() {
        Some(t @ ("zoom" | "wide" | "ir")) => t.to_string(),
        _ => return Err(bad("video_type must be zoom, wide or ir.")),
    };
    ask(&s, &claims, &video, "live_lens_change", json!({"video_id": video.text(), "video_type": lens.clone()})).await?;
    record(&s, &claims, &video, LiveStreamCommand::SwitchLens { video_type: lens }).await?;
    Ok(ok_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_ids_are_device_camera_and_video() {
        let v = VideoId::parse("1581F5BMD228Q00A82XX/39-0-7/normal-0").unwrap();
        assert_eq!(
            (v.sn.as_str(), v.camera_index.as_str(), v.video.as_str()),
            ("1581F5BMD228Q00A82XX", "39-0-7", "normal-0")
        );
        assert_eq!(v.text(), "1581F5BMD228Q00A82XX/39-0-7/normal-0");
        for bad in [
            "",
            "sn",
            "sn/39-0-7",
            "sn/39-0/normal-0",
            "sn/39-0-x/normal-0",
            "sn/39-0-7/normal",
            "/39-0-7/normal-0",
            "a/39-0-7/normal-0/x",
        ] {
            assert!(VideoId::parse(bad).is_none(), "{bad}");
        }
    }
}
