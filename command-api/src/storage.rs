//! StorageController: `POST /storage/api/v1/workspaces/{workspace_id}/sts` hands DJI Pilot 2
//! temporary credentials to upload media and waylines straight into the bucket, and
//! [`for_device`] answers a dock's `storage_config_get` the same way.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};
use shared::error::ok;
use shared::event_store::load;
use shared::protocol::codes;
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sts))
}

/// Credentials for the workspace's folder only (DJI's StsCredentialsResponse).
#[tracing::instrument(level = "debug", skip_all, fields(workspace_id = %workspace_id))]
#[utoipa::path(
    post,
    path = "/storage/api/v1/workspaces/{workspace_id}/sts",
    tag = "StorageController",
    summary = "Get STS Token",
    params(("workspace_id" = String, Path)),
)]
pub async fn sts(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    let creds = s.storage.credentials_for(&workspace_id).await.map_err(|e| {
        tracing::error!(error = ?e, "no upload credentials");
        ApiError::failed(format!("Could not obtain temporary credentials from the object store: {e}"))
    })?;
    Ok(ok(creds))
}

/// The `data` of the `requests_reply` to a dock's `storage_config_get` (mqtt-protocol §5.5):
/// credentials for the folder of the workspace the gateway is bound to, as its aggregate says (a
/// read model could still show a binding just removed). An unbound gateway gets none
/// (`ORGANIZATION_NOT_FOUND`), a store failure `SYSTEM_ERROR`.
pub async fn for_device(s: &AppState, gateway_sn: &str) -> anyhow::Result<Value> {
    let device = load(&s.devices, gateway_sn).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(workspace_id) = device.workspace_id().filter(|w| !w.is_empty()) else {
        tracing::warn!(gateway = gateway_sn, "storage_config_get from a gateway bound to no workspace");
        return Ok(json!({"result": codes::ORGANIZATION_NOT_FOUND, "output": {}}));
    };
    Ok(match s.storage.credentials_for(workspace_id).await {
        Ok(creds) => json!({"result": codes::OK, "output": creds}),
        Err(e) => {
            tracing::warn!(gateway = gateway_sn, error = %e, "no storage credentials for a device");
            json!({"result": codes::SYSTEM_ERROR, "output": {}})
        }
    })
}
