//! FlightAreaController writes and the docks' side of custom flight areas: areas are created,
//! changed and deleted on their aggregates (the WebSocket says `flight_areas_update`); `sync` tells
//! docks (`flight_areas_update`), each dock then asks for the areas (`flight_areas_get`), gets
//! the workspace's enabled areas as one GeoJSON file in object storage, and reports how it went
//! (`flight_areas_sync_progress`, recorded on the dock).

use axum::extract::{Path, State};
use axum::response::Response;
use md5::Digest as _;
use object_store::ObjectStore as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest as _;
use shared::auth::Auth;
use shared::domain::flight_area::{FlightAreaCommand, NewFlightArea};
use shared::error::ok_empty;
use shared::event_store::{execute, execute_new, metadata};
use shared::http::DjiJson;
use shared::protocol::codes;
use shared::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::device_service::{self, Call};
use crate::{command_error, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create)).routes(routes!(update, delete)).routes(routes!(sync))
}

#[derive(Debug, Deserialize)]
pub struct CreateArea {
    id: String,
    name: String,
    #[serde(rename = "type")]
    area_type: String,
    content: Value,
}

/// `POST …/flight-area`: a new area, enabled, drawn by the token's user.
#[utoipa::path(
    post,
    path = "/map/api/v1/workspaces/{workspace_id}/flight-area",
    tag = "FlightAreaController",
    summary = "createFlightArea",
    params(("workspace_id" = String, Path)),
)]
pub async fn create(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<CreateArea>,
) -> ApiResult<Response> {
    let id = body.id.trim().to_string();
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::failed("id must be a uuid."));
    }
    let new = NewFlightArea {
        workspace_id: workspace_id.clone(),
        name: body.name,
        area_type: body.area_type,
        content: body.content,
        username: claims.username.clone(),
    };
    let meta = metadata(&claims.username, &workspace_id, "http");
    execute_new(&s.flight_areas, &id, FlightAreaCommand::Create(new), meta).await.map_err(command_error)?;
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct UpdateArea {
    name: Option<String>,
    content: Option<Value>,
    status: Option<bool>,
}

/// `PUT …/flight-area/{area_id}`: any of name, shape (of the same geometry type) and `status`
/// (enabled).
#[utoipa::path(
    put,
    path = "/map/api/v1/workspaces/{workspace_id}/flight-area/{area_id}",
    tag = "FlightAreaController",
    summary = "updateFlightArea",
    params(("workspace_id" = String, Path), ("area_id" = String, Path)),
)]
pub async fn update(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, area_id)): Path<(String, String)>,
    DjiJson(body): DjiJson<UpdateArea>,
) -> ApiResult<Response> {
    let cmd = FlightAreaCommand::Update {
        workspace_id: workspace_id.clone(),
        name: body.name,
        content: body.content,
        status: body.status,
    };
    execute(&s.flight_areas, &area_id, cmd, metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}

/// `DELETE …/flight-area/{area_id}`.
#[utoipa::path(
    delete,
    path = "/map/api/v1/workspaces/{workspace_id}/flight-area/{area_id}",
    tag = "FlightAreaController",
    summary = "deleteFlightArea",
    params(("workspace_id" = String, Path), ("area_id" = String, Path)),
)]
pub async fn delete(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, area_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let cmd = FlightAreaCommand::Delete { workspace_id: workspace_id.clone() };
    execute(&s.flight_areas, &area_id, cmd, metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct SyncBody {
    device_sn: Option<Vec<String>>,
}

/// `POST …/flight-area/sync`: tells each dock (`flight_areas_update`) that the workspace's areas
/// changed; each must be online in this workspace and accept. The docks then fetch the areas.
#[utoipa::path(
    post,
    path = "/map/api/v1/workspaces/{workspace_id}/flight-area/sync",
    tag = "FlightAreaController",
    summary = "syncFlightArea",
    params(("workspace_id" = String, Path)),
)]
pub async fn sync(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(_workspace_id): Path<String>,
    DjiJson(body): DjiJson<SyncBody>,
) -> ApiResult<Response> {
    let docks: Vec<String> = body.device_sn.unwrap_or_default().into_iter().filter(|d| !d.trim().is_empty()).collect();
    if docks.is_empty() {
        return Err(ApiError::code(codes::ILLEGAL_ARGUMENT, "device_sn lists the docks to synchronise."));
    }
    // every dock is checked before any is told
    for sn in &docks {
        device_service::commandable(&s, sn, &claims.workspace_id).await?;
    }
    for sn in &docks {
        device_service::call(&s, &claims, Call::service(sn, "flight_areas_update", json!(""))).await?;
    }
    Ok(ok_empty())
}

/// The answer to a dock's `flight_areas_get`: the enabled areas of the dock's workspace as one
/// GeoJSON FeatureCollection, stored once under its content's name and linked for download.
pub async fn package(s: &AppState, dock_sn: &str) -> anyhow::Result<Value> {
    let device = shared::event_store::load(&s.devices, dock_sn).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(workspace_id) = device.workspace_id().map(str::to_owned) else {
        return Ok(json!({"result": codes::DEVICE_NOT_REGISTERED, "output": {}}));
    };
    let areas: Vec<(String, String, Value, bool)> = sqlx::query_as(
        "SELECT area_id, type, content, status FROM rm_flight_areas WHERE workspace_id = $1 ORDER BY create_time, area_id",
    )
    .bind(&workspace_id)
    .fetch_all(&s.pool)
    .await?;
    let features: Vec<Value> = areas
        .into_iter()
        .map(|(id, area_type, content, enabled)| feature(&id, &area_type, &content, enabled))
        .collect();
    let body = serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features}))?;
    let name = format!("geofence_{}.json", hex::encode(md5::Md5::digest(&body)));
    let checksum = hex::encode(sha2::Sha256::digest(&body));
    let key = format!("{}/flight_areas/{name}", s.storage.workspace_prefix(&workspace_id));
    let path = object_store::path::Path::parse(&key)?;
    let size = body.len();
    if s.storage.store().head(&path).await.is_err() {
        s.storage.store().put(&path, body.into()).await?;
    }
    let url = s.storage.download_url(&key).await?;
    Ok(
        json!({"result": codes::OK, "output": {"files": [{"name": name, "url": url, "checksum": checksum, "size": size}]}}),
    )
}

/// One area as a dock reads it: a circle is its centre point with `subType: "Circle"` and its
/// radius; a polygon its ring (radius 0).
fn feature(id: &str, area_type: &str, content: &Value, enabled: bool) -> Value {
    let geometry = &content["geometry"];
    let circle = geometry["type"] == "Circle";
    json!({
        "id": id,
        "type": "Feature",
        "geofence_type": area_type,
        "geometry": {"type": if circle { "Point" } else { "Polygon" }, "coordinates": geometry["coordinates"]},
        "properties": {
            "subType": if circle { json!("Circle") } else { Value::Null },
            "radius": if circle { geometry["radius"].as_f64().unwrap_or(0.0) } else { 0.0 },
            "enable": enabled,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circles_are_points_with_a_radius_and_polygons_keep_their_ring() {
        let circle = json!({"geometry": {"type": "Circle", "coordinates": [113.9, 22.5], "radius": 120.5}});
        assert_eq!(
            feature("a", "nfz", &circle, true),
            json!({"id": "a", "type": "Feature", "geofence_type": "nfz",
                "geometry": {"type": "Point", "coordinates": [113.9, 22.5]},
                "properties": {"subType": "Circle", "radius": 120.5, "enable": true}})
        );
        let ring = json!([[[1, 2], [3, 4], [5, 6]]]);
        let polygon = json!({"geometry": {"type": "Polygon", "coordinates": ring}});
        let f = feature("b", "dfence", &polygon, false);
        assert_eq!(f["geometry"], json!({"type": "Polygon", "coordinates": ring}));
        assert_eq!(f["properties"], json!({"subType": null, "radius": 0.0, "enable": false}));
    }
}
