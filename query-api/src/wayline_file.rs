//! WaylineFileController reads (reference `http-api.md` §3, `extensions.md`): the wayline list DJI
//! Pilot 2 and the web client page through, duplicate names, the download link (302, and its JSON
//! form `download-url`), and a stored file as JSON.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore as _;
use serde::Serialize;
use shared::error::ok;
use shared::http::Paginated;
use shared::{ApiError, ApiResult};
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::devices::{page_query, query_value, query_values};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(duplicate_names))
        .routes(routes!(url))
        .routes(routes!(download_url))
        .routes(routes!(as_json))
}

#[derive(Debug, FromRow)]
struct Row {
    wayline_id: String,
    name: String,
    object_key: String,
    sign: String,
    drone_model_key: String,
    payload_model_keys: Vec<String>,
    template_types: Vec<i32>,
    favorited: bool,
    user_name: String,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

/// GetWaylineListResponse (reference §3.1); times in epoch milliseconds.
#[derive(Debug, Serialize)]
struct WaylineDto {
    id: String,
    name: String,
    drone_model_key: String,
    payload_model_keys: Vec<String>,
    template_types: Vec<i32>,
    favorited: bool,
    sign: String,
    object_key: String,
    user_name: String,
    create_time: i64,
    update_time: i64,
}

impl From<Row> for WaylineDto {
    fn from(r: Row) -> Self {
        Self {
            id: r.wayline_id,
            name: r.name,
            drone_model_key: r.drone_model_key,
            payload_model_keys: r.payload_model_keys,
            template_types: r.template_types,
            favorited: r.favorited,
            sign: r.sign,
            object_key: r.object_key,
            user_name: r.user_name,
            create_time: r.create_time.timestamp_millis(),
            update_time: r.update_time.timestamp_millis(),
        }
    }
}

/// `order_by`: `"<name|update_time|create_time> [asc|desc]"`; anything else is refused rather
/// than guessed (it becomes SQL, so only these words pass).
fn order_by(q: &Option<String>) -> ApiResult<&'static str> {
    let Some(v) = query_values(q, "order_by").into_iter().next() else { return Ok("update_time DESC") };
    let mut parts = v.split_whitespace();
    let column = match parts.next() {
        Some("name") => "name",
        Some("update_time") => "update_time",
        Some("create_time") => "create_time",
        _ => return Err(ApiError::failed(format!("order_by must name name, update_time or create_time: {v:?}"))),
    };
    let desc = match parts.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(ApiError::failed(format!("order_by direction must be asc or desc: {other:?}"))),
    };
    Ok(match (column, desc) {
        ("name", false) => "name ASC",
        ("name", true) => "name DESC",
        ("create_time", false) => "create_time ASC",
        ("create_time", true) => "create_time DESC",
        ("update_time", false) => "update_time ASC",
        _ => "update_time DESC",
    })
}

const SELECT: &str = "SELECT wayline_id, name, object_key, sign, drone_model_key, payload_model_keys, template_types, \
    favorited, user_name, create_time, update_time FROM rm_wayline_files";

/// `GET …/waylines?order_by=&page=&page_size=&favorited=&template_type=&drone_model_keys=&payload_model_key=&key=`.
#[utoipa::path(
    get,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines",
    tag = "WaylineFileController",
    summary = "get wayline list",
    params(("workspace_id" = String, Path)),
)]
pub async fn list(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let (page, size) = page_query(&q)?.resolve(10);
    let order = order_by(&q)?;
    let favorited = query_value::<bool>(&q, "favorited")?;
    let mut template_types = Vec::new();
    for t in query_values(&q, "template_type") {
        template_types.push(t.parse::<i32>().map_err(|_| ApiError::failed(format!("Invalid template_type {t:?}")))?);
    }
    let drones = query_values(&q, "drone_model_keys");
    let payloads = query_values(&q, "payload_model_key");
    let key = query_values(&q, "key").into_iter().next();
    let filter = "workspace_id = $1 AND ($2::bool IS NULL OR favorited = $2) \
        AND (cardinality($3::int[]) = 0 OR template_types && $3) \
        AND (cardinality($4::text[]) = 0 OR drone_model_key = ANY($4)) \
        AND (cardinality($5::text[]) = 0 OR payload_model_keys && $5) \
        AND ($6::text IS NULL OR strpos(lower(name), lower($6)) > 0)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM rm_wayline_files WHERE {filter}"))
        .bind(&workspace_id)
        .bind(favorited)
        .bind(&template_types)
        .bind(&drones)
        .bind(&payloads)
        .bind(&key)
        .fetch_one(&s.pool)
        .await?;
    let rows: Vec<Row> =
        sqlx::query_as(&format!("{SELECT} WHERE {filter} ORDER BY {order}, wayline_id LIMIT $7 OFFSET $8"))
            .bind(&workspace_id)
            .bind(favorited)
            .bind(&template_types)
            .bind(&drones)
            .bind(&payloads)
            .bind(&key)
            .bind(size)
            .bind((page - 1) * size)
            .fetch_all(&s.pool)
            .await?;
    Ok(ok(Paginated::new(rows.into_iter().map(WaylineDto::from).collect(), page, size, total)))
}

/// `GET …/waylines/duplicate-names?name=a&name=b`: the given names already used in the workspace.
#[utoipa::path(
    get,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/duplicate-names",
    tag = "WaylineFileController",
    summary = "get duplicated wayline name",
    params(("workspace_id" = String, Path)),
)]
pub async fn duplicate_names(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let names: Vec<String> = form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "name")
        .map(|(_, v)| v.into_owned())
        .collect();
    if names.is_empty() {
        return Err(ApiError::failed("name is required."));
    }
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM rm_wayline_files WHERE workspace_id = $1 AND name = ANY($2) ORDER BY name",
    )
    .bind(&workspace_id)
    .bind(&names)
    .fetch_all(&s.pool)
    .await?;
    Ok(ok(taken))
}

async fn object_key(s: &AppState, workspace_id: &str, wayline_id: &str) -> ApiResult<String> {
    sqlx::query_scalar("SELECT object_key FROM rm_wayline_files WHERE workspace_id = $1 AND wayline_id = $2")
        .bind(workspace_id)
        .bind(wayline_id)
        .fetch_optional(&s.pool)
        .await?
        .ok_or_else(|| ApiError::failed("The wayline file does not exist."))
}

async fn signed(s: &AppState, workspace_id: &str, wayline_id: &str) -> ApiResult<String> {
    let key = object_key(s, workspace_id, wayline_id).await?;
    s.storage.download_url(&key).await.map_err(|e| ApiError::Internal(e.context("signing a download link")))
}

/// `GET …/waylines/{wayline_id}/url`: a 302 to the `.kmz`.
#[utoipa::path(
    get,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/{wayline_id}/url",
    tag = "WaylineFileController",
    summary = "get wayline file download address",
    params(("workspace_id" = String, Path), ("wayline_id" = String, Path)),
)]
pub async fn url(
    State(s): State<AppState>,
    Path((workspace_id, wayline_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let url = signed(&s, &workspace_id, &wayline_id).await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

/// `GET …/waylines/{wayline_id}/download-url`: `{url, expire_at}` for clients that cannot follow a
/// redirect.
#[utoipa::path(
    get,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/{wayline_id}/download-url",
    tag = "WaylineFileController",
    summary = "get wayline file download address",
    params(("workspace_id" = String, Path), ("wayline_id" = String, Path)),
)]
pub async fn download_url(
    State(s): State<AppState>,
    Path((workspace_id, wayline_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let url = signed(&s, &workspace_id, &wayline_id).await?;
    let expire_at = Utc::now().timestamp_millis() + (s.config.url_expiry_secs as i64) * 1000;
    Ok(ok(serde_json::json!({"url": url, "expire_at": expire_at})))
}

/// `GET …/waylines/{wayline_id}/json`: the stored file's template and waylines as JSON.
#[utoipa::path(
    get,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/{wayline_id}/json",
    tag = "WaylineGenerateController",
    summary = "云端KMZ文件转JSON",
    params(("workspace_id" = String, Path), ("wayline_id" = String, Path)),
)]
pub async fn as_json(
    State(s): State<AppState>,
    Path((workspace_id, wayline_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let key = object_key(&s, &workspace_id, &wayline_id).await?;
    let bytes = s
        .storage
        .store()
        .get(&ObjectPath::from(key.as_str()))
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("reading a wayline file")))?
        .bytes()
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("reading a wayline file")))?;
    let kmz = wpml::read_kmz(&bytes).map_err(|e| ApiError::failed(e.to_string()))?;
    Ok(ok(kmz.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_takes_only_known_columns() {
        assert_eq!(order_by(&Some("order_by=update_time%20desc".into())).unwrap(), "update_time DESC");
        assert_eq!(order_by(&Some("order_by=name".into())).unwrap(), "name ASC");
        assert_eq!(order_by(&None).unwrap(), "update_time DESC");
        assert!(order_by(&Some("order_by=name;drop".into())).is_err());
        assert!(order_by(&Some("order_by=name%20sideways".into())).is_err());
    }
}
