//! Read model of firmware packages (`rm_firmwares`): the web client's firmware list and the latest
//! release per device model.

use serde::Deserialize as _;
use shared::domain::firmware::{self, FirmwareEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct Firmwares;

#[async_trait::async_trait]
impl crate::Projection for Firmwares {
    fn name(&self) -> &'static str {
        "firmwares"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[firmware::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_firmwares"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let id = e.aggregate_id.as_str();
        let q = match FirmwareEvent::deserialize(&e.payload)? {
            FirmwareEvent::FirmwareImported(f) => sqlx::query(
                "INSERT INTO rm_firmwares (firmware_id, workspace_id, file_name, product_version, object_key, \
                   file_size, file_md5, device_names, release_note, released_time, status, username, create_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::date, $11, $12, $13) \
                 ON CONFLICT (firmware_id) DO NOTHING",
            )
            .bind(id)
            .bind(f.workspace_id)
            .bind(f.file_name)
            .bind(f.product_version)
            .bind(f.object_key)
            .bind(f.file_size)
            .bind(f.file_md5)
            .bind(f.device_names)
            .bind(f.release_note)
            .bind(f.released_time)
            .bind(f.enabled)
            .bind(f.username)
            .bind(e.recorded_at),
            FirmwareEvent::FirmwareStatusChanged { enabled } => {
                sqlx::query("UPDATE rm_firmwares SET status = $2 WHERE firmware_id = $1").bind(id).bind(enabled)
            }
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
