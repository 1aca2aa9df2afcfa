//! Read model of docks' log uploads (`rm_device_logs`): the web client's upload history per dock,
//! with each file's progress as the dock last reported it, and the object keys of the files to
//! download.

use serde::Deserialize as _;
use shared::domain::device_logs::{self, DeviceLogsEvent, FAILED};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct DeviceLogs;

#[async_trait::async_trait]
impl crate::Projection for DeviceLogs {
    fn name(&self) -> &'static str {
        "device_logs"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[device_logs::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_device_logs"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let id = e.aggregate_id.as_str();
        let at = e.recorded_at;
        let q = match DeviceLogsEvent::deserialize(&e.payload)? {
            DeviceLogsEvent::LogsUploadRequested(r) => sqlx::query(
                "INSERT INTO rm_device_logs (logs_id, workspace_id, device_sn, username, logs_information, \
                   happen_time, status, files, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, to_timestamp($6::bigint / 1000.0), $7, $8, $9, $9) \
                 ON CONFLICT (logs_id) DO NOTHING",
            )
            .bind(id)
            .bind(r.workspace_id)
            .bind(r.gateway_sn)
            .bind(r.username)
            .bind(r.logs_information)
            .bind(r.happen_time)
            .bind(device_logs::UPLOADING)
            .bind(serde_json::to_value(&r.files)?)
            .bind(at),
            DeviceLogsEvent::LogsUploadRefused { .. } => {
                sqlx::query("UPDATE rm_device_logs SET status = $2, update_time = $3 WHERE logs_id = $1")
                    .bind(id)
                    .bind(FAILED)
                    .bind(at)
            }
            DeviceLogsEvent::LogsProgressReported { status, files, .. } => {
                sqlx::query("UPDATE rm_device_logs SET status = $2, progress = $3, update_time = $4 WHERE logs_id = $1")
                    .bind(id)
                    .bind(status)
                    .bind(serde_json::to_value(&files)?)
                    .bind(at)
            }
            DeviceLogsEvent::LogsDeleted => sqlx::query("DELETE FROM rm_device_logs WHERE logs_id = $1").bind(id),
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
