//! MediaController: how DJI Pilot 2 reports media it uploaded to object storage
//! (`/media/api/v1/workspaces/{workspace_id}/…`).

use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use shared::auth::Auth;
use shared::domain::file_group::{self, FileGroupCommand};
use shared::domain::media::{self, MediaCommand, MediaUpload};
use shared::error::{ok, ok_empty};
use shared::event_store::{execute, execute_new, metadata};
use shared::http::DjiJson;
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{command_error, AppState};

/// `ext` of a media callback (MediaFileExtension). Every field is optional on input: DJI's clients
/// leave some out depending on device and firmware.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MediaExt {
    drone_model_key: Option<String>,
    file_group_id: Option<String>,
    #[serde(deserialize_with = "opt_bool")]
    is_original: Option<bool>,
    payload_model_key: Option<String>,
    tinny_fingerprint: Option<String>,
    sn: Option<String>,
}

fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(with = "shared::http::lenient_bool")] bool);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// `sub_file_type`: the seed sends the name (`"NORMAL"`, `"PANORAMA"`), DJI's demo an integer.
fn sub_file_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum T {
        N(i32),
        S(String),
    }
    match Option::<T>::deserialize(d)? {
        None => Ok(None),
        Some(T::N(n)) => Ok(Some(n)),
        Some(T::S(s)) => match s.trim().to_ascii_uppercase().as_str() {
            "NORMAL" | "0" => Ok(Some(0)),
            "PANORAMA" | "1" => Ok(Some(1)),
            "" => Ok(None),
            other => Err(serde::de::Error::custom(format!(
                "sub_file_type must be 0, 1, \"NORMAL\" or \"PANORAMA\", not \"{other}\""
            ))),
        },
    }
}

/// MediaUploadCallbackRequest.
#[derive(Debug, Deserialize)]
pub struct UploadCallback {
    object_key: String,
    name: String,
    #[serde(default)]
    path: Option<String>,
    fingerprint: String,
    #[serde(default, deserialize_with = "sub_file_type")]
    sub_file_type: Option<i32>,
    #[serde(default)]
    ext: Option<MediaExt>,
    #[serde(default)]
    metadata: Option<Value>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fast_upload))
        .routes(routes!(upload_callback))
        .routes(routes!(tiny_fingerprints))
        .routes(routes!(group_upload_callback))
}

/// `POST …/upload-callback`: records the file; the same file reported again (Pilot 2 retries) is the
/// same file. Answers the object key, as DJI's demo does.
#[tracing::instrument(level = "debug", skip_all, fields(workspace_id = %workspace_id))]
#[utoipa::path(
    post,
    path = "/media/api/v1/workspaces/{workspace_id}/upload-callback",
    tag = "MediaController",
    summary = "app reports file upload result",
    params(("workspace_id" = String, Path)),
)]
pub async fn upload_callback(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<UploadCallback>,
) -> ApiResult<Response> {
    // a key outside the workspace's folder would later be read on this workspace's behalf
    s.storage.check_object_key(&workspace_id, &body.object_key).map_err(|e| ApiError::failed(e.to_string()))?;
    let ext = body.ext.unwrap_or_default();
    let metadata_value = match body.metadata {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::failed("metadata must be an object.")),
    };
    let upload = MediaUpload {
        file_id: media::file_id(&workspace_id, &body.fingerprint),
        workspace_id: workspace_id.clone(),
        name: body.name,
        path: body.path.unwrap_or_default(),
        object_key: body.object_key.clone(),
        fingerprint: body.fingerprint,
        tinny_fingerprint: ext.tinny_fingerprint.unwrap_or_default(),
        sub_file_type: body.sub_file_type,
        is_original: ext.is_original.unwrap_or(true),
        drone_sn: ext.sn.unwrap_or_default(),
        drone_model_key: ext.drone_model_key.unwrap_or_default(),
        payload_model_key: ext.payload_model_key.unwrap_or_default(),
        file_group_id: ext.file_group_id.unwrap_or_default(),
        metadata: metadata_value,
        username: claims.username.clone(),
    };
    let id = upload.file_id.clone();
    // A callback usually reports a file for the first time.
    execute_new(&s.media, &id, MediaCommand::ReportUpload(upload), metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok(body.object_key))
}

#[derive(Debug, Deserialize)]
pub struct FastUpload {
    fingerprint: String,
}

/// `POST …/fast-upload`: success when a file with this fingerprint is already stored, so Pilot 2 can
/// skip the upload; otherwise `<fingerprint>don't exist.` and Pilot 2 uploads.
#[utoipa::path(
    post,
    path = "/media/api/v1/workspaces/{workspace_id}/fast-upload",
    tag = "MediaController",
    summary = "media fast upload",
    params(("workspace_id" = String, Path)),
)]
pub async fn fast_upload(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<FastUpload>,
) -> ApiResult<Response> {
    // the file's id is derived from the workspace and the fingerprint: one probe of the primary key
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rm_media_files WHERE file_id = $1)")
        .bind(media::file_id(&workspace_id, &body.fingerprint))
        .fetch_one(&s.pool)
        .await?;
    if exists {
        Ok(ok_empty())
    } else {
        Err(ApiError::failed(format!("{}don't exist.", body.fingerprint)))
    }
}

#[derive(Debug, Deserialize, Serialize)]
pub struct TinyFingerprints {
    tiny_fingerprints: Vec<String>,
}

/// `POST …/files/tiny-fingerprints`: the subset of the given tiny fingerprints already stored.
#[utoipa::path(
    post,
    path = "/media/api/v1/workspaces/{workspace_id}/files/tiny-fingerprints",
    tag = "MediaController",
    summary = "checks whether the file fingerprint exists",
    params(("workspace_id" = String, Path)),
)]
pub async fn tiny_fingerprints(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<TinyFingerprints>,
) -> ApiResult<Response> {
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT tinny_fingerprint FROM rm_media_files WHERE workspace_id = $1 AND tinny_fingerprint = ANY($2)",
    )
    .bind(&workspace_id)
    .bind(&body.tiny_fingerprints)
    .fetch_all(&s.pool)
    .await?;
    // keep the client's order
    let list = body.tiny_fingerprints.into_iter().filter(|t| found.contains(t)).collect();
    Ok(ok(TinyFingerprints { tiny_fingerprints: list }))
}

#[derive(Debug, Deserialize)]
pub struct GroupUploadCallback {
    file_group_id: String,
    file_count: i64,
    file_uploaded_count: i64,
}

/// `POST …/group-upload-callback`: Pilot 2 reports that a wayline job's media finished uploading.
/// (DJI's demo leaves this unimplemented and answers an error.)
#[utoipa::path(
    post,
    path = "/media/api/v1/workspaces/{workspace_id}/group-upload-callback",
    tag = "MediaController",
    summary = "callback after the file group upload complete",
    params(("workspace_id" = String, Path)),
)]
pub async fn group_upload_callback(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<GroupUploadCallback>,
) -> ApiResult<Response> {
    let id = file_group::group_id(&workspace_id, &body.file_group_id);
    let cmd = FileGroupCommand::ReportGroupUpload {
        workspace_id: workspace_id.clone(),
        file_group_id: body.file_group_id,
        file_count: body.file_count,
        file_uploaded_count: body.file_uploaded_count,
    };
    execute(&s.file_groups, &id, cmd, metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}
