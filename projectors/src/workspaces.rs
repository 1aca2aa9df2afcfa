//! Read model of workspaces (`rm_workspaces`). DJI's numeric `id` is the position of the creating
//! event, so it is stable across rebuilds.

use serde::Deserialize as _;
use shared::domain::workspace::{self, WorkspaceEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct Workspaces;

#[async_trait::async_trait]
impl crate::Projection for Workspaces {
    fn name(&self) -> &'static str {
        "workspaces"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[workspace::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_workspaces"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        match WorkspaceEvent::deserialize(&e.payload)? {
            WorkspaceEvent::WorkspaceCreated(w) => {
                sqlx::query(
                    "INSERT INTO rm_workspaces (workspace_id, id, workspace_name, workspace_desc, platform_name, bind_code, create_time) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
                )
                .bind(&w.workspace_id)
                .bind(e.global_position)
                .bind(&w.workspace_name)
                .bind(&w.workspace_desc)
                .bind(&w.platform_name)
                .bind(&w.bind_code)
                .bind(e.recorded_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(())
    }
}
