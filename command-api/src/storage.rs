//! StorageController: `POST /storage/api/v1/workspaces/{workspace_id}/sts` hands DJI Pilot 2
//! temporary credentials to upload media and waylines straight into the bucket, and
//! [`for_device`] answers a dock's `storage_config_get` the same way.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};
use shared::error::ok;
use shared::{ApiError, ApiResult};

use crate::AppState;

/// Credentials for the workspace's folder only (DJI's StsCredentialsResponse).
#[tracing::instrument(level = "debug", skip_all, fields(workspace_id = %workspace_id))]
pub async fn sts(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    let creds = s.storage.credentials_for(&workspace_id).await.map_err(|e| {
        tracing::error!(error = ?e, "no upload credentials");
        ApiError::failed(format!("Could not obtain temporary credentials from the object store: {e}"))
    })?;
    Ok(ok(creds))
}

/// The `data` of the `requests_reply` to a dock's `storage_config_get` (mqtt-protocol §5.5):
/// credentials for the folder of the workspace the gateway is bound to. An unbound gateway gets
/// none (`result` 210230, no organization), a store failure `result` 600500.
pub async fn for_device(s: &AppState, gateway_sn: &str) -> anyhow::Result<Value> {
    let workspace: Option<String> =
        sqlx::query_scalar("SELECT workspace_id FROM rm_devices WHERE device_sn = $1 AND bound AND workspace_id <> ''")
            .bind(gateway_sn)
            .fetch_optional(&s.pool)
            .await?;
    let Some(workspace_id) = workspace else {
        tracing::warn!(gateway = gateway_sn, "storage_config_get from a gateway bound to no workspace");
        return Ok(json!({"result": 210230, "output": {}}));
    };
    Ok(match s.storage.credentials_for(&workspace_id).await {
        Ok(creds) => json!({"result": 0, "output": creds}),
        Err(e) => {
            tracing::warn!(gateway = gateway_sn, error = %e, "no storage credentials for a device");
            json!({"result": 600500, "output": {}})
        }
    })
}
