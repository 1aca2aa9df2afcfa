//! FileController: the workspace's media library and download links; plus the signed links of the
//! local object store.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::error::ok;
use shared::http::{DjiQuery, PageQuery, Paginated};
use shared::time::datetime_string;
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

/// MediaFileDTO.
#[derive(Debug, Serialize)]
pub struct MediaFileDto {
    file_id: String,
    file_name: String,
    file_path: String,
    object_key: String,
    is_original: bool,
    drone: String,
    payload: String,
    tinny_fingerprint: String,
    fingerprint: String,
    create_time: String,
    job_id: String,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    file_id: String,
    file_name: String,
    file_path: String,
    object_key: String,
    is_original: bool,
    drone: String,
    payload_model_key: String,
    payload_name: Option<String>,
    tinny_fingerprint: String,
    fingerprint: String,
    create_time: chrono::DateTime<chrono::Utc>,
    job_id: String,
}

/// The signed links of the local object store: public, the signature is the authorization.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(local_object))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(url))
}

/// `GET /media/api/v1/files/{workspace_id}/files?page=1&page_size=10`, newest first.
#[utoipa::path(
    get,
    path = "/media/api/v1/files/{workspace_id}/files",
    tag = "FileController",
    summary = "Get information about all the media files in this workspace based on the workspace id.",
    params(("workspace_id" = String, Path)),
)]
pub async fn list(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    DjiQuery(q): DjiQuery<PageQuery>,
) -> ApiResult<Response> {
    let (page, size) = q.resolve(10);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_media_files WHERE workspace_id = $1")
        .bind(&workspace_id)
        .fetch_one(&s.pool)
        .await?;
    // `payload` is the payload's dictionary name, or its model key when the model is unknown.
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT f.file_id, f.file_name, f.file_path, f.object_key, f.is_original, f.drone, f.payload_model_key, \
                d.device_name AS payload_name, f.tinny_fingerprint, f.fingerprint, f.create_time, f.job_id \
         FROM rm_media_files f \
         LEFT JOIN device_dictionary d ON f.payload_model_key ~ '^[0-9]{1,9}-[0-9]{1,9}-[0-9]{1,9}$' \
              AND d.domain = (CASE WHEN f.payload_model_key ~ '^[0-9]{1,9}-[0-9]{1,9}-[0-9]{1,9}$' THEN split_part(f.payload_model_key, '-', 1)::int END) \
              AND d.type = (CASE WHEN f.payload_model_key ~ '^[0-9]{1,9}-[0-9]{1,9}-[0-9]{1,9}$' THEN split_part(f.payload_model_key, '-', 2)::int END) \
              AND d.sub_type = (CASE WHEN f.payload_model_key ~ '^[0-9]{1,9}-[0-9]{1,9}-[0-9]{1,9}$' THEN split_part(f.payload_model_key, '-', 3)::int END) \
         WHERE f.workspace_id = $1 ORDER BY f.position DESC LIMIT $2 OFFSET $3",
    )
    .bind(&workspace_id)
    .bind(size)
    .bind((page - 1) * size)
    .fetch_all(&s.pool)
    .await?;
    let list = rows
        .into_iter()
        .map(|r| MediaFileDto {
            file_id: r.file_id,
            file_name: r.file_name,
            file_path: r.file_path,
            object_key: r.object_key,
            is_original: r.is_original,
            drone: r.drone,
            payload: r.payload_name.unwrap_or(r.payload_model_key),
            tinny_fingerprint: r.tinny_fingerprint,
            fingerprint: r.fingerprint,
            create_time: datetime_string(r.create_time),
            job_id: r.job_id,
        })
        .collect();
    Ok(ok(Paginated::new(list, page, size, total)))
}

/// `GET /media/api/v1/files/{workspace_id}/file/{file_id}/url`: a 302 to the object.
#[utoipa::path(
    get,
    path = "/media/api/v1/files/{workspace_id}/file/{file_id}/url",
    tag = "FileController",
    summary = "Query the download address of the file according to the media file id,",
    params(("workspace_id" = String, Path), ("file_id" = String, Path)),
)]
pub async fn url(
    State(s): State<AppState>,
    Path((workspace_id, file_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let key: String =
        sqlx::query_scalar("SELECT object_key FROM rm_media_files WHERE workspace_id = $1 AND file_id = $2")
            .bind(&workspace_id)
            .bind(&file_id)
            .fetch_optional(&s.pool)
            .await?
            .ok_or_else(|| ApiError::failed("The file does not exist."))?;
    let url =
        s.storage.download_url(&key).await.map_err(|e| ApiError::Internal(e.context("signing a download link")))?;
    // DJI's clients expect 302 Found (axum's Redirect::to is 303)
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    expires: i64,
    signature: String,
}

/// Serves an object of the local store behind a signed, expiring link.
#[utoipa::path(
    get,
    path = "/storage/api/v1/objects/{*key}",
    tag = "Storage",
    summary = "An object of the local object store, by the signed link that storage hands out",
    params(("key" = String, Path)),
    security(()),
)]
pub async fn local_object(
    State(s): State<AppState>,
    Path(key): Path<String>,
    q: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return (StatusCode::FORBIDDEN, "missing signature").into_response();
    };
    if !s.storage.is_local() || !s.storage.verify_local_link(&key, q.expires, &q.signature) {
        return (StatusCode::FORBIDDEN, "invalid or expired link").into_response();
    }
    let Ok(path) = object_store::path::Path::parse(&key) else {
        return (StatusCode::BAD_REQUEST, "invalid key").into_response();
    };
    match s.storage.store().get(&path).await {
        Ok(r) => {
            let len = r.meta.size;
            let body = Body::from_stream(r.into_stream());
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                body,
            )
                .into_response()
        }
        Err(object_store::Error::NotFound { .. }) => (StatusCode::NOT_FOUND, "no such object").into_response(),
        Err(e) => {
            tracing::error!(error = ?e, "reading a local object");
            (StatusCode::SERVICE_UNAVAILABLE, "object store unavailable").into_response()
        }
    }
}
