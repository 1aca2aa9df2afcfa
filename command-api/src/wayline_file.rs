//! WaylineFileController writes (reference `http-api.md` §3): import a `.kmz` from the web client,
//! DJI Pilot 2's upload callback, batch favorite and unfavorite, delete. A file is checked as WPML
//! before anything is stored (not a zip, no WPML, oversized or a zip bomb: a clear error, nothing
//! kept), and a second file of the same name in a workspace is refused by its aggregate.

use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use md5::Digest as _;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore as _;
use serde::Deserialize;
use shared::auth::{Auth, Claims};
use shared::domain::wayline_file::{self, NewWaylineFile, WaylineFileCommand};
use shared::error::{ok, ok_empty};
use shared::event_store::{execute, load, metadata};
use shared::http::DjiJson;
use shared::protocol::codes;
use shared::{ApiError, ApiResult};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::{command_error, AppState};

/// Largest `.kmz` accepted (DJI's mapping routes with DSM resources run to tens of MiB).
const MAX_KMZ_BYTES: usize = 64 << 20;

pub fn router() -> OpenApiRouter<AppState> {
    // Multipart uploads of a whole `.kmz` need more than axum's default 2 MiB body limit; the layer
    // goes on the method router that `routes!` builds, so the route stays registered and documented
    // by its one `#[utoipa::path]`.
    let kmz_limit = || DefaultBodyLimit::max(MAX_KMZ_BYTES + (1 << 20));
    OpenApiRouter::new()
        .routes(routes!(import).layer(kmz_limit()))
        .routes(routes!(upload_callback))
        .routes(routes!(generate))
        .routes(routes!(kmz_to_json).layer(kmz_limit()))
        .routes(routes!(favorite, unfavorite))
        .routes(routes!(remove))
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(md5::Md5::digest(bytes))
}

/// What WPML says about a file, or DJI's error for it.
fn inspect(bytes: &[u8]) -> ApiResult<wpml::Kmz> {
    wpml::read_kmz(bytes).map_err(|e| match e {
        wpml::WpmlError::NotZip | wpml::WpmlError::MissingWpml => ApiError::failed("The file format is incorrect."),
        wpml::WpmlError::Xml(_) => ApiError::failed("The file encoding format is incorrect."),
        other => ApiError::failed(other.to_string()),
    })
}

/// The multipart part `file`: its own name (a client's path never becomes part of an object key)
/// and its bytes.
async fn kmz_part(mut form: Multipart) -> ApiResult<(String, Bytes)> {
    while let Some(field) =
        form.next_field().await.map_err(|e| ApiError::failed(format!("Invalid multipart body: {e}")))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| ApiError::failed(format!("Could not read the file: {e}")))?;
        if bytes.is_empty() {
            break;
        }
        let name = name.rsplit(['/', '\\']).next().unwrap_or_default().to_string();
        return Ok((name, bytes));
    }
    Err(ApiError::failed("No file received."))
}

/// Stores a new `.kmz` of the workspace under a key of its own and registers it; a name already
/// taken is refused before anything is stored.
async fn store_and_register(
    s: &AppState,
    claims: &Claims,
    file_name: &str,
    bytes: Bytes,
    mut new: NewWaylineFile,
) -> ApiResult<()> {
    let id = wayline_file::id(&new.workspace_id, &new.name);
    if load(&s.wayline_files, &id).await.map_err(command_error)?.file().is_some() {
        return Err(ApiError::failed("A wayline file with this name already exists."));
    }
    new.object_key = format!(
        "{}/wayline/{}/{}",
        s.storage.workspace_prefix(&new.workspace_id),
        uuid::Uuid::new_v4().simple(),
        file_name.replace(|c: char| c.is_control(), "_")
    );
    new.sign = md5_hex(&bytes);
    new.size = bytes.len() as u64;
    s.storage
        .store()
        .put(&ObjectPath::from(new.object_key.as_str()), bytes.into())
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("storing a wayline file")))?;
    register(s, claims, new).await
}

/// Registers a file already stored; the object goes again if the name is taken meanwhile.
async fn register(s: &AppState, claims: &Claims, new: NewWaylineFile) -> ApiResult<()> {
    let id = wayline_file::id(&new.workspace_id, &new.name);
    let object_key = new.object_key.clone();
    let meta = metadata(&claims.username, &claims.workspace_id, "http");
    if let Err(e) = execute(&s.wayline_files, &id, WaylineFileCommand::Register(new), meta).await {
        if let Err(del) = s.storage.store().delete(&ObjectPath::from(object_key.as_str())).await {
            tracing::warn!(object_key, error = %del, "object of a refused wayline file not removed");
        }
        return Err(command_error(e));
    }
    Ok(())
}

/// `POST …/waylines/file/upload` (multipart part `file`): the web client's import. Workspace and
/// creator come from the token.
#[tracing::instrument(skip_all, fields(workspace_id = %claims.workspace_id))]
#[utoipa::path(
    post,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/file/upload",
    tag = "WaylineFileController",
    summary = "Import kmz wayline files.",
    params(("workspace_id" = String, Path)),
)]
pub async fn import(State(s): State<AppState>, Auth(claims): Auth, form: Multipart) -> ApiResult<Response> {
    let (file_name, bytes) = kmz_part(form).await?;
    let Some(name) = file_name.strip_suffix(".kmz").or_else(|| file_name.strip_suffix(".KMZ")) else {
        return Err(ApiError::failed("The file format is incorrect."));
    };
    if name.trim().is_empty() {
        return Err(ApiError::failed("The file format is incorrect."));
    }
    let kmz = inspect(&bytes)?;
    let new = NewWaylineFile {
        workspace_id: claims.workspace_id.clone(),
        name: name.to_string(),
        drone_model_key: kmz.drone_model_key().unwrap_or_default(),
        payload_model_keys: kmz.payload_model_keys(),
        template_types: kmz.template_types(),
        user_name: claims.username.clone(),
        ..Default::default()
    };
    store_and_register(&s, &claims, &file_name, bytes, new).await?;
    Ok(ok_empty())
}

/// `POST …/waylines/generate` (`extensions.md`): a waypoint mission becomes a valid WPML `.kmz`,
/// stored as a wayline file of the workspace; `data {wayline_id, name}`.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
#[utoipa::path(
    post,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/generate",
    tag = "WaylineGenerateController",
    summary = "生成航线",
    params(("workspace_id" = String, Path)),
)]
pub async fn generate(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    DjiJson(mission): DjiJson<wpml::Mission>,
) -> ApiResult<Response> {
    let name = mission.name.trim().to_string();
    if name.is_empty() || name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err(ApiError::failed("name must be a plain, non-empty file name."));
    }
    let bytes = wpml::write_kmz(&mission).map_err(|e| ApiError::code(codes::INVALID_PARAMETER, e.to_string()))?;
    let new = NewWaylineFile {
        workspace_id: workspace_id.clone(),
        name: name.clone(),
        drone_model_key: mission.drone_model_key.clone(),
        payload_model_keys: Some(mission.payload_model_key.clone()).filter(|p| !p.is_empty()).into_iter().collect(),
        template_types: vec![0],
        user_name: claims.username.clone(),
        ..Default::default()
    };
    store_and_register(&s, &claims, &format!("{name}.kmz"), Bytes::from(bytes), new).await?;
    Ok(ok(serde_json::json!({"wayline_id": wayline_file::id(&workspace_id, &name), "name": name})))
}

/// `POST …/waylines/kmz-to-json` (multipart part `file`): the parsed template and waylines, every
/// waypoint with its coordinates, height, speed and actions. Nothing is stored.
#[utoipa::path(
    post,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/kmz-to-json",
    tag = "WaylineGenerateController",
    summary = "KMZ文件转JSON",
    params(("workspace_id" = String, Path)),
)]
pub async fn kmz_to_json(Auth(_claims): Auth, form: Multipart) -> ApiResult<Response> {
    let (_, bytes) = kmz_part(form).await?;
    Ok(ok(inspect(&bytes)?.to_json()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CallbackMetadata {
    drone_model_key: String,
    payload_model_keys: Vec<String>,
    template_types: Vec<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CallbackBody {
    object_key: String,
    name: String,
    metadata: CallbackMetadata,
}

/// `POST …/upload-callback`: DJI Pilot 2 uploaded a `.kmz` into the workspace's folder with its
/// temporary credentials. The sign is the MD5 of the stored object.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
#[utoipa::path(
    post,
    path = "/wayline/api/v1/workspaces/{workspace_id}/upload-callback",
    tag = "WaylineFileController",
    summary = "file upload result report",
    params(("workspace_id" = String, Path)),
)]
pub async fn upload_callback(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<CallbackBody>,
) -> ApiResult<Response> {
    if body.name.trim().is_empty() {
        return Err(ApiError::failed("name must not be empty."));
    }
    if body.metadata.drone_model_key.is_empty()
        || body.metadata.payload_model_keys.is_empty()
        || body.metadata.template_types.is_empty()
    {
        return Err(ApiError::failed("metadata must give drone_model_key, payload_model_keys and template_types."));
    }
    s.storage.check_object_key(&workspace_id, &body.object_key).map_err(|e| ApiError::failed(e.to_string()))?;
    let id = wayline_file::id(&workspace_id, &body.name);
    if load(&s.wayline_files, &id).await.map_err(command_error)?.file().is_some() {
        return Err(ApiError::failed("A wayline file with this name already exists."));
    }
    let stored = s
        .storage
        .store()
        .get(&ObjectPath::from(body.object_key.as_str()))
        .await
        .map_err(|_| ApiError::failed("The wayline file is not in object storage."))?
        .bytes()
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("reading a wayline file")))?;
    let new = NewWaylineFile {
        workspace_id: workspace_id.clone(),
        name: body.name,
        object_key: body.object_key,
        sign: md5_hex(&stored),
        drone_model_key: body.metadata.drone_model_key,
        payload_model_keys: body.metadata.payload_model_keys,
        template_types: body.metadata.template_types,
        user_name: claims.username.clone(),
        size: stored.len() as u64,
    };
    // Pilot's own upload: a refused name keeps the object the client stored
    let meta = metadata(&claims.username, &workspace_id, "http");
    execute(&s.wayline_files, &id, WaylineFileCommand::Register(new), meta).await.map_err(command_error)?;
    Ok(ok_empty())
}

/// `id` values of the query (`?id=a&id=b`, or `?id=a,b`).
fn ids(query: &Option<String>) -> Vec<String> {
    query_ids(query, "id")
}

/// The values of a query parameter given repeatedly or comma-separated (`id=a&id=b,c`).
pub(crate) fn query_ids(query: &Option<String>, name: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

async fn each(
    s: &AppState,
    claims: &Claims,
    workspace_id: &str,
    query: &Option<String>,
    favorite: bool,
) -> ApiResult<Response> {
    for id in ids(query) {
        let cmd = if favorite {
            WaylineFileCommand::Favorite { workspace_id: workspace_id.to_string() }
        } else {
            WaylineFileCommand::Unfavorite { workspace_id: workspace_id.to_string() }
        };
        execute(&s.wayline_files, &id, cmd, metadata(&claims.username, workspace_id, "http"))
            .await
            .map_err(command_error)?;
    }
    Ok(ok_empty())
}

/// `POST …/favorites?id=…&id=…`.
#[utoipa::path(
    post,
    path = "/wayline/api/v1/workspaces/{workspace_id}/favorites",
    tag = "WaylineFileController",
    summary = "batch favorites wayline",
    params(("workspace_id" = String, Path)),
)]
pub async fn favorite(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    each(&s, &claims, &workspace_id, &q, true).await
}

/// `DELETE …/favorites?id=…&id=…`.
#[utoipa::path(
    delete,
    path = "/wayline/api/v1/workspaces/{workspace_id}/favorites",
    tag = "WaylineFileController",
    summary = "batch unfavorites wayline",
    params(("workspace_id" = String, Path)),
)]
pub async fn unfavorite(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    each(&s, &claims, &workspace_id, &q, false).await
}

/// `DELETE …/waylines/{wayline_id}`: the file and its object go; a file that does not exist is
/// already gone (DJI answers success).
#[utoipa::path(
    delete,
    path = "/wayline/api/v1/workspaces/{workspace_id}/waylines/{wayline_id}",
    tag = "WaylineFileController",
    summary = "Delete the wayline file in the workspace according to the wayline id.",
    params(("workspace_id" = String, Path), ("wayline_id" = String, Path)),
)]
pub async fn remove(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, wayline_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let before = load(&s.wayline_files, &wayline_id).await.map_err(command_error)?;
    let object_key = before.file().filter(|f| f.workspace_id == workspace_id).map(|f| f.object_key.clone());
    let cmd = WaylineFileCommand::Delete { workspace_id: workspace_id.clone() };
    execute(&s.wayline_files, &wayline_id, cmd, metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(|_| ApiError::failed("Failed to delete wayline."))?;
    if let Some(key) = object_key {
        if let Err(e) = s.storage.store().delete(&ObjectPath::from(key.as_str())).await {
            tracing::warn!(key, error = %e, "object of a deleted wayline file not removed");
        }
    }
    Ok(ok_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_repeated_or_comma_separated_parameters() {
        assert_eq!(ids(&Some("id=a&id=b,c&x=1".into())), ["a", "b", "c"]);
        assert!(ids(&None).is_empty());
    }
}
