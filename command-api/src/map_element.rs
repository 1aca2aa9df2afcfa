//! WorkspaceElementController writes: map elements drawn in the web client or DJI Pilot 2 are
//! created, changed and deleted on their aggregates; the WebSocket tells the workspace
//! (`map_element_create`, `map_element_update`, `map_element_delete`, from the events).

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::auth::Auth;
use shared::domain::map_element::{self, MapElementCommand, NewMapElement};
use shared::error::{ok, ok_empty};
use shared::event_store::{execute, execute_new, metadata};
use shared::http::DjiJson;
use shared::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{command_error, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create)).routes(routes!(update, delete)).routes(routes!(delete_group))
}

#[derive(Debug, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    element_type: i32,
    content: Value,
}

#[derive(Debug, Deserialize)]
pub struct CreateElement {
    id: String,
    name: String,
    resource: Resource,
}

/// `POST …/element-groups/{group_id}/elements`: a new element in the group, drawn by the token's
/// user (whatever `resource.user_name` says). Answers `{id}`.
#[utoipa::path(
    post,
    path = "/map/api/v1/workspaces/{workspace_id}/element-groups/{group_id}/elements",
    tag = "WorkspaceElementController",
    summary = "create map element",
    params(("workspace_id" = String, Path), ("group_id" = String, Path)),
)]
pub async fn create(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, group_id)): Path<(String, String)>,
    DjiJson(body): DjiJson<CreateElement>,
) -> ApiResult<Response> {
    let id = body.id.trim().to_string();
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::failed("id must be a uuid."));
    }
    if body.name.trim().is_empty() {
        return Err(ApiError::failed("name is required."));
    }
    let new = NewMapElement {
        workspace_id: workspace_id.clone(),
        group_id,
        name: body.name,
        element_type: body.resource.element_type,
        user_name: claims.username.clone(),
        content: body.resource.content,
    };
    let meta = metadata(&claims.username, &workspace_id, "http");
    execute_new(&s.map_elements, &id, MapElementCommand::Create(new), meta).await.map_err(command_error)?;
    Ok(ok(json!({ "id": id })))
}

#[derive(Debug, Deserialize)]
pub struct UpdateElement {
    name: String,
    content: Value,
}

/// `PUT …/elements/{element_id}`: a new name and shape (of the same geometry type).
#[utoipa::path(
    put,
    path = "/map/api/v1/workspaces/{workspace_id}/elements/{element_id}",
    tag = "WorkspaceElementController",
    summary = "update map element",
    params(("workspace_id" = String, Path), ("element_id" = String, Path)),
)]
pub async fn update(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, element_id)): Path<(String, String)>,
    DjiJson(body): DjiJson<UpdateElement>,
) -> ApiResult<Response> {
    if body.name.trim().is_empty() {
        return Err(ApiError::failed("name is required."));
    }
    let cmd = MapElementCommand::Update { workspace_id: workspace_id.clone(), name: body.name, content: body.content };
    execute(&s.map_elements, &element_id, cmd, metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}

/// `DELETE …/elements/{element_id}`.
#[utoipa::path(
    delete,
    path = "/map/api/v1/workspaces/{workspace_id}/elements/{element_id}",
    tag = "WorkspaceElementController",
    summary = "delete map element",
    params(("workspace_id" = String, Path), ("element_id" = String, Path)),
)]
pub async fn delete(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, element_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let cmd = MapElementCommand::Delete { workspace_id: workspace_id.clone(), group_id: None };
    execute(&s.map_elements, &element_id, cmd, metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}

/// `DELETE …/element-groups/{group_id}/elements`: every element of the group. The group's members
/// are found in the event store, not in the read model, which may not hold an element just
/// created yet; each is deleted on its own aggregate.
#[utoipa::path(
    delete,
    path = "/map/api/v1/workspaces/{workspace_id}/element-groups/{group_id}/elements",
    tag = "WorkspaceElementController",
    summary = "Delete all the element information in this group based on the group id.",
    params(("workspace_id" = String, Path), ("group_id" = String, Path)),
)]
pub async fn delete_group(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, group_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    if map_element::group(&group_id).is_none() {
        return Err(ApiError::failed("The element group does not exist."));
    }
    // every element ever created in this workspace's group; each aggregate decides whether it is
    // still there, and still in this group
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events \
         WHERE aggregate_type = $1 AND event_type = 'MapElementCreated' \
           AND payload->'MapElementCreated'->>'workspace_id' = $2 \
           AND payload->'MapElementCreated'->>'group_id' = $3",
    )
    .bind(map_element::AGGREGATE_TYPE)
    .bind(&workspace_id)
    .bind(&group_id)
    .fetch_all(&s.pool)
    .await?;
    for id in ids {
        let cmd = MapElementCommand::Delete { workspace_id: workspace_id.clone(), group_id: Some(group_id.clone()) };
        match execute(&s.map_elements, &id, cmd, metadata(&claims.username, &workspace_id, "http")).await {
            // gone already, or moved on: nothing of this group to delete
            Err(cqrs_es::AggregateError::UserError(map_element::MapElementError::NotFound)) => {}
            other => other.map_err(command_error)?,
        }
    }
    Ok(ok_empty())
}
