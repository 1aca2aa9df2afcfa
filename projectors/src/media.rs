//! Read models of media: the workspace's file library (`rm_media_files`, FileController and the
//! fingerprint checks of MediaController) and the upload reports of file groups (`rm_media_groups`).

use shared::domain::file_group::{self, FileGroupEvent};
use shared::domain::media::{self, MediaEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct MediaFiles;

#[async_trait::async_trait]
impl crate::Projection for MediaFiles {
    fn name(&self) -> &'static str {
        "media_files"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[media::AGGREGATE_TYPE, file_group::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_media_files", "rm_media_groups"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        if e.aggregate_type == media::AGGREGATE_TYPE {
            match serde_json::from_value::<MediaEvent>(e.payload.clone())? {
                MediaEvent::MediaFileUploaded(u) => {
                    sqlx::query(
                        "INSERT INTO rm_media_files (file_id, workspace_id, file_name, file_path, object_key, fingerprint, \
                           tinny_fingerprint, sub_file_type, is_original, drone, drone_model_key, payload_model_key, job_id, \
                           metadata, username, create_time, position) \
                         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) ON CONFLICT DO NOTHING",
                    )
                    .bind(&u.file_id)
                    .bind(&u.workspace_id)
                    .bind(&u.name)
                    .bind(&u.path)
                    .bind(&u.object_key)
                    .bind(&u.fingerprint)
                    .bind(&u.tinny_fingerprint)
                    .bind(u.sub_file_type)
                    .bind(u.is_original)
                    .bind(&u.drone_sn)
                    .bind(&u.drone_model_key)
                    .bind(&u.payload_model_key)
                    .bind(&u.file_group_id)
                    .bind(&u.metadata)
                    .bind(&u.username)
                    .bind(e.recorded_at)
                    .bind(e.global_position)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        } else {
            match serde_json::from_value::<FileGroupEvent>(e.payload.clone())? {
                FileGroupEvent::GroupUploadReported {
                    workspace_id,
                    file_group_id,
                    file_count,
                    file_uploaded_count,
                } => {
                    sqlx::query(
                        "INSERT INTO rm_media_groups (workspace_id, file_group_id, file_count, file_uploaded_count, reports, update_time) \
                         VALUES ($1, $2, $3, $4, 1, $5) \
                         ON CONFLICT (workspace_id, file_group_id) DO UPDATE SET file_count = EXCLUDED.file_count, \
                           file_uploaded_count = EXCLUDED.file_uploaded_count, reports = rm_media_groups.reports + 1, \
                           update_time = EXCLUDED.update_time",
                    )
                    .bind(&workspace_id)
                    .bind(&file_group_id)
                    .bind(file_count as i32)
                    .bind(file_uploaded_count as i32)
                    .bind(e.recorded_at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        Ok(())
    }
}
