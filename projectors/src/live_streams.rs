//! Read model of cameras' live streams (`rm_live_streams`): what each device streams now, and
//! where to watch it.

use serde::Deserialize as _;
use shared::domain::live_stream::{self, LiveStreamEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct LiveStreams;

#[async_trait::async_trait]
impl crate::Projection for LiveStreams {
    fn name(&self) -> &'static str {
        "live_streams"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[live_stream::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_live_streams"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let (id, at) = (e.aggregate_id.as_str(), e.recorded_at);
        let q = match LiveStreamEvent::deserialize(&e.payload)? {
            LiveStreamEvent::LiveStreamStarted(s) => sqlx::query(
                "INSERT INTO rm_live_streams (stream_id, workspace_id, sn, video_id, url_type, url, video_quality, \
                   video_type, pushing, username, started_at, update_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9, $10, $10) \
                 ON CONFLICT (stream_id) DO UPDATE SET workspace_id = EXCLUDED.workspace_id, url_type = EXCLUDED.url_type, \
                   url = EXCLUDED.url, video_quality = EXCLUDED.video_quality, video_type = EXCLUDED.video_type, \
                   pushing = true, username = EXCLUDED.username, started_at = EXCLUDED.started_at, \
                   update_time = EXCLUDED.update_time",
            )
            .bind(id)
            .bind(s.workspace_id)
            .bind(s.sn)
            .bind(s.video_id)
            .bind(s.url_type as i32)
            .bind(s.url)
            .bind(s.video_quality as i32)
            .bind(s.video_type)
            .bind(s.username)
            .bind(at),
            LiveStreamEvent::LiveStreamQualitySet { video_quality } => {
                sqlx::query("UPDATE rm_live_streams SET video_quality = $2, update_time = $3 WHERE stream_id = $1")
                    .bind(id)
                    .bind(video_quality as i32)
                    .bind(at)
            }
            LiveStreamEvent::LiveStreamLensSwitched { video_type } => {
                sqlx::query("UPDATE rm_live_streams SET video_type = $2, update_time = $3 WHERE stream_id = $1")
                    .bind(id)
                    .bind(video_type)
                    .bind(at)
            }
            LiveStreamEvent::LiveStreamStopped => {
                sqlx::query("UPDATE rm_live_streams SET pushing = false, update_time = $2 WHERE stream_id = $1")
                    .bind(id)
                    .bind(at)
            }
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
