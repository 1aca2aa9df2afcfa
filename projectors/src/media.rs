//! Read models of media: the workspace's file library (`rm_media_files`, FileController and the
//! fingerprint checks of MediaController) and the upload reports of file groups (`rm_media_groups`).

use serde::Deserialize as _;
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

    /// Uploaded files are independent rows: all of a batch's go in with one statement. Group reports
    /// update shared counters and keep their order.
    async fn apply_batch(&self, tx: &mut PgConnection, events: &[&StoredEvent]) -> anyhow::Result<()> {
        let mut files = Vec::new();
        for e in events {
            if e.aggregate_type == media::AGGREGATE_TYPE {
                match MediaEvent::deserialize(&e.payload)? {
                    MediaEvent::MediaFileUploaded(u) => files.push((u, e.recorded_at, e.global_position)),
                }
            } else {
                self.apply(tx, e).await?;
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        macro_rules! col {
            ($f:expr) => {
                files.iter().map($f).collect::<Vec<_>>()
            };
        }
        sqlx::query(
            "INSERT INTO rm_media_files (file_id, workspace_id, file_name, file_path, object_key, fingerprint, \
               tinny_fingerprint, sub_file_type, is_original, drone, drone_model_key, payload_model_key, job_id, \
               metadata, username, create_time, position) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
               $8::int[], $9::bool[], $10::text[], $11::text[], $12::text[], $13::text[], $14::jsonb[], $15::text[], \
               $16::timestamptz[], $17::bigint[]) ON CONFLICT DO NOTHING",
        )
        .bind(col!(|f| f.0.file_id.clone()))
        .bind(col!(|f| f.0.workspace_id.clone()))
        .bind(col!(|f| f.0.name.clone()))
        .bind(col!(|f| f.0.path.clone()))
        .bind(col!(|f| f.0.object_key.clone()))
        .bind(col!(|f| f.0.fingerprint.clone()))
        .bind(col!(|f| f.0.tinny_fingerprint.clone()))
        .bind(col!(|f| f.0.sub_file_type))
        .bind(col!(|f| f.0.is_original))
        .bind(col!(|f| f.0.drone_sn.clone()))
        .bind(col!(|f| f.0.drone_model_key.clone()))
        .bind(col!(|f| f.0.payload_model_key.clone()))
        .bind(col!(|f| f.0.file_group_id.clone()))
        .bind(col!(|f| f.0.metadata.clone()))
        .bind(col!(|f| f.0.username.clone()))
        .bind(col!(|f| f.1))
        .bind(col!(|f| f.2))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// A rebuild's files go in with COPY, the cheapest way into Postgres; group reports as live.
    async fn load_batch(&self, tx: &mut PgConnection, events: &[&StoredEvent]) -> anyhow::Result<()> {
        let mut rows = String::new();
        for e in events {
            if e.aggregate_type != media::AGGREGATE_TYPE {
                self.apply(tx, e).await?;
                continue;
            }
            match MediaEvent::deserialize(&e.payload)? {
                MediaEvent::MediaFileUploaded(u) => copy_row(&mut rows, &u, e),
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut copy = tx
            .copy_in_raw(
                "COPY rm_media_files (file_id, workspace_id, file_name, file_path, object_key, fingerprint, \
                   tinny_fingerprint, sub_file_type, is_original, drone, drone_model_key, payload_model_key, job_id, \
                   metadata, username, create_time, position) FROM STDIN",
            )
            .await?;
        copy.send(rows.into_bytes()).await?;
        copy.finish().await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        if e.aggregate_type == media::AGGREGATE_TYPE {
            return self.apply_batch(tx, &[e]).await;
        }
        match FileGroupEvent::deserialize(&e.payload)? {
            FileGroupEvent::GroupUploadReported { workspace_id, file_group_id, file_count, file_uploaded_count } => {
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
        Ok(())
    }
}

/// One row of `rm_media_files` in COPY's text format.
fn copy_row(out: &mut String, u: &media::MediaUpload, e: &StoredEvent) {
    use std::fmt::Write as _;
    for text in [&u.file_id, &u.workspace_id, &u.name, &u.path, &u.object_key, &u.fingerprint, &u.tinny_fingerprint] {
        copy_text(out, text);
        out.push('\t');
    }
    match u.sub_file_type {
        Some(t) => write!(out, "{t}\t").unwrap(),
        None => out.push_str("\\N\t"),
    }
    out.push_str(if u.is_original { "t\t" } else { "f\t" });
    for text in [&u.drone_sn, &u.drone_model_key, &u.payload_model_key, &u.file_group_id] {
        copy_text(out, text);
        out.push('\t');
    }
    copy_text(out, &u.metadata.to_string());
    out.push('\t');
    copy_text(out, &u.username);
    out.push('\t');
    out.push_str(&e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    writeln!(out, "\t{}", e.global_position).unwrap();
}

/// A value in COPY's text format: backslash, tab, newline and carriage return escaped.
pub(crate) fn copy_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}
