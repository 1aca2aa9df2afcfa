//! WorkspaceElementController reads: the workspace's element groups with their map elements.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::map_element::GROUPS;
use shared::error::ok;
use shared::http::DjiQuery;
use shared::ApiResult;
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(groups))
}

#[derive(Debug, Deserialize)]
pub struct GroupsQuery {
    group_id: Option<String>,
    is_distributed: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ElementGroup {
    id: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    group_type: i32,
    is_lock: bool,
    elements: Vec<Element>,
}

/// A map element as the web client and DJI Pilot 2 read it (in lists and on the WebSocket).
#[derive(Debug, Serialize)]
pub struct Element {
    pub id: String,
    pub name: String,
    pub create_time: i64,
    pub update_time: i64,
    pub resource: ElementResource,
}

#[derive(Debug, Serialize)]
pub struct ElementResource {
    #[serde(rename = "type")]
    pub element_type: i32,
    pub user_name: String,
    pub content: Value,
}

#[derive(Debug, FromRow)]
pub struct ElementRow {
    pub element_id: String,
    pub group_id: String,
    pub name: String,
    pub element_type: i32,
    pub user_name: String,
    pub content: Value,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

pub const ELEMENT_SELECT: &str = "SELECT element_id, group_id, name, element_type, user_name, content, create_time, \
     update_time FROM rm_map_elements";

impl From<ElementRow> for Element {
    fn from(r: ElementRow) -> Self {
        Element {
            id: r.element_id,
            name: r.name,
            create_time: r.create_time.timestamp_millis(),
            update_time: r.update_time.timestamp_millis(),
            resource: ElementResource { element_type: r.element_type, user_name: r.user_name, content: r.content },
        }
    }
}

/// `GET …/element-groups?group_id=&is_distributed=`: the groups (all, one, or those handed to the
/// apps) with their elements in the order they were drawn.
#[utoipa::path(
    get,
    path = "/map/api/v1/workspaces/{workspace_id}/element-groups",
    tag = "WorkspaceElementController",
    summary = "get map elements",
    params(("workspace_id" = String, Path), ("group_id" = Option<String>, Query), ("is_distributed" = Option<bool>, Query)),
)]
pub async fn groups(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    DjiQuery(q): DjiQuery<GroupsQuery>,
) -> ApiResult<Response> {
    let group_id = q.group_id.filter(|g| !g.trim().is_empty());
    let chosen: Vec<_> = GROUPS
        .iter()
        .filter(|g| group_id.as_deref().is_none_or(|id| g.id == id))
        .filter(|g| q.is_distributed.is_none_or(|d| g.distributed == d))
        .collect();
    let ids: Vec<&str> = chosen.iter().map(|g| g.id).collect();
    let rows: Vec<ElementRow> = sqlx::query_as(&format!(
        "{ELEMENT_SELECT} WHERE workspace_id = $1 AND group_id = ANY($2) ORDER BY create_time, element_id"
    ))
    .bind(&workspace_id)
    .bind(&ids)
    .fetch_all(&s.pool)
    .await?;
    let mut out: Vec<ElementGroup> = chosen
        .iter()
        .map(|g| ElementGroup { id: g.id, name: g.name, group_type: g.group_type, is_lock: g.locked, elements: vec![] })
        .collect();
    for r in rows {
        if let Some(g) = out.iter_mut().find(|g| g.id == r.group_id) {
            g.elements.push(r.into());
        }
    }
    Ok(ok(out))
}
