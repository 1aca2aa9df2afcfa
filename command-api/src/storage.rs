//! StorageController: `POST /storage/api/v1/workspaces/{workspace_id}/sts` hands DJI Pilot 2
//! temporary credentials to upload media and waylines straight into the bucket.

use axum::extract::State;
use axum::response::Response;
use shared::error::ok;
use shared::{ApiError, ApiResult};

use crate::AppState;

pub async fn sts(State(s): State<AppState>) -> ApiResult<Response> {
    if s.storage.is_local() {
        return Err(ApiError::failed(
            "Temporary upload credentials need an S3-compatible object store; this installation keeps objects in a local folder (set HANGAR_STORAGE=s3).",
        ));
    }
    let creds = s.storage.sts_credentials().await.map_err(|e| {
        tracing::error!(error = ?e, "STS failed");
        ApiError::failed(format!("Could not obtain temporary credentials from the object store: {e}"))
    })?;
    Ok(ok(creds))
}
