//! Read model of wayline files (`rm_wayline_files`): the list DJI Pilot 2 and the web client page
//! through, duplicate-name checks and download links.

use serde::Deserialize as _;
use shared::domain::wayline_file::{self, WaylineFileEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct WaylineFiles;

#[async_trait::async_trait]
impl crate::Projection for WaylineFiles {
    fn name(&self) -> &'static str {
        "wayline_files"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[wayline_file::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_wayline_files"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let id = e.aggregate_id.as_str();
        let at = e.recorded_at;
        let q = match WaylineFileEvent::deserialize(&e.payload)? {
            WaylineFileEvent::WaylineFileRegistered(f) => sqlx::query(
                "INSERT INTO rm_wayline_files (wayline_id, workspace_id, name, object_key, sign, drone_model_key, \
                   payload_model_keys, template_types, favorited, user_name, size, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, $9, $10, $11, $11) \
                 ON CONFLICT (wayline_id) DO UPDATE SET workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name, \
                   object_key = EXCLUDED.object_key, sign = EXCLUDED.sign, drone_model_key = EXCLUDED.drone_model_key, \
                   payload_model_keys = EXCLUDED.payload_model_keys, template_types = EXCLUDED.template_types, \
                   favorited = false, user_name = EXCLUDED.user_name, size = EXCLUDED.size, \
                   create_time = EXCLUDED.create_time, update_time = EXCLUDED.update_time",
            )
            .bind(id)
            .bind(f.workspace_id)
            .bind(f.name)
            .bind(f.object_key)
            .bind(f.sign)
            .bind(f.drone_model_key)
            .bind(f.payload_model_keys)
            .bind(f.template_types)
            .bind(f.user_name)
            .bind(f.size as i64)
            .bind(at),
            WaylineFileEvent::WaylineFileFavorited => {
                sqlx::query("UPDATE rm_wayline_files SET favorited = true, update_time = $2 WHERE wayline_id = $1")
                    .bind(id)
                    .bind(at)
            }
            WaylineFileEvent::WaylineFileUnfavorited => {
                sqlx::query("UPDATE rm_wayline_files SET favorited = false, update_time = $2 WHERE wayline_id = $1")
                    .bind(id)
                    .bind(at)
            }
            WaylineFileEvent::WaylineFileDeleted { .. } => {
                sqlx::query("DELETE FROM rm_wayline_files WHERE wayline_id = $1").bind(id)
            }
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
