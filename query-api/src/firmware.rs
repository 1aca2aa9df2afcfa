//! DeviceFirmwareController reads: the workspace's firmware packages, and the latest enabled
//! release per device model.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use shared::auth::Auth;
use shared::error::ok;
use shared::http::{DjiQuery, Paginated};
use shared::ApiResult;
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(latest))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    device_name: Option<String>,
    product_version: Option<String>,
    status: Option<bool>,
}

#[derive(Debug, Serialize, FromRow)]
pub struct FirmwareDto {
    firmware_id: String,
    file_name: String,
    product_version: String,
    object_key: String,
    file_size: i64,
    file_md5: String,
    device_name: Vec<String>,
    release_note: String,
    released_time: String,
    firmware_status: bool,
    workspace_id: String,
    username: String,
}

/// `GET …/firmwares?page=&page_size=&device_name=&product_version=&status=`: newest release first.
#[utoipa::path(
    get,
    path = "/manage/api/v1/workspaces/{workspace_id}/firmwares",
    tag = "DeviceFirmwareController",
    summary = "Query firmware information based on parameters.",
    params(("workspace_id" = String, Path)),
)]
pub async fn list(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    DjiQuery(q): DjiQuery<ListQuery>,
) -> ApiResult<Response> {
    let (page, size) = shared::http::PageQuery { page: q.page, page_size: q.page_size }.resolve(50);
    let device_name = q.device_name.filter(|n| !n.trim().is_empty());
    let version = q.product_version.filter(|v| !v.trim().is_empty());
    let filter = "workspace_id = $1 AND ($2::text IS NULL OR $2 = ANY(device_names)) \
         AND ($3::text IS NULL OR strpos(product_version, $3) > 0) AND ($4::boolean IS NULL OR status = $4)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM rm_firmwares WHERE {filter}"))
        .bind(&workspace_id)
        .bind(&device_name)
        .bind(&version)
        .bind(q.status)
        .fetch_one(&s.pool)
        .await?;
    let list: Vec<FirmwareDto> = sqlx::query_as(&format!(
        "SELECT firmware_id, file_name, product_version, object_key, file_size, file_md5, device_names AS device_name, \
           release_note, to_char(released_time, 'YYYY-MM-DD') AS released_time, status AS firmware_status, \
           workspace_id, username FROM rm_firmwares WHERE {filter} \
         ORDER BY released_time DESC, create_time DESC LIMIT $5 OFFSET $6"
    ))
    .bind(&workspace_id)
    .bind(&device_name)
    .bind(&version)
    .bind(q.status)
    .bind(size)
    .bind((page - 1) * size)
    .fetch_all(&s.pool)
    .await?;
    Ok(ok(Paginated::new(list, page, size, total)))
}

#[derive(Debug, Serialize, FromRow)]
pub struct ReleaseNote {
    device_name: String,
    product_version: String,
    release_note: String,
    released_time: String,
}

/// `GET /manage/api/v1/workspaces/firmware-release-notes/latest?device_name=…&device_name=…`: the
/// newest enabled package of the token's workspace for each model named.
#[utoipa::path(
    get,
    path = "/manage/api/v1/workspaces/firmware-release-notes/latest",
    tag = "DeviceFirmwareController",
    summary = "Get the latest firmware version information for this device model."
)]
pub async fn latest(State(s): State<AppState>, Auth(claims): Auth, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let names: Vec<String> = form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "device_name")
        .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let notes: Vec<ReleaseNote> = sqlx::query_as(
        "SELECT DISTINCT ON (n.name) n.name AS device_name, f.product_version, f.release_note, \
           to_char(f.released_time, 'YYYY-MM-DD') AS released_time \
         FROM UNNEST($2::text[]) AS n(name) \
         JOIN rm_firmwares f ON f.workspace_id = $1 AND f.status AND n.name = ANY(f.device_names) \
         ORDER BY n.name, f.released_time DESC, f.product_version DESC",
    )
    .bind(&claims.workspace_id)
    .bind(&names)
    .fetch_all(&s.pool)
    .await?;
    Ok(ok(notes))
}
