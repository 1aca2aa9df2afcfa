//! Read model of custom flight areas (`rm_flight_areas`): the web client's list, and what a dock
//! is sent when it asks for the workspace's areas.

use serde::Deserialize as _;
use shared::domain::flight_area::{self, FlightAreaEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct FlightAreas;

#[async_trait::async_trait]
impl crate::Projection for FlightAreas {
    fn name(&self) -> &'static str {
        "flight_areas"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[flight_area::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_flight_areas"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let id = e.aggregate_id.as_str();
        let at = e.recorded_at;
        let q = match FlightAreaEvent::deserialize(&e.payload)? {
            FlightAreaEvent::FlightAreaCreated(a) => sqlx::query(
                "INSERT INTO rm_flight_areas (area_id, workspace_id, name, type, content, status, username, \
                   create_time, update_time) VALUES ($1, $2, $3, $4, $5, true, $6, $7, $7) \
                 ON CONFLICT (area_id) DO UPDATE SET workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name, \
                   type = EXCLUDED.type, content = EXCLUDED.content, status = true, username = EXCLUDED.username, \
                   create_time = EXCLUDED.create_time, update_time = EXCLUDED.update_time",
            )
            .bind(id)
            .bind(a.workspace_id)
            .bind(a.name)
            .bind(a.area_type)
            .bind(a.content)
            .bind(a.username)
            .bind(at),
            FlightAreaEvent::FlightAreaUpdated { name, content, status } => sqlx::query(
                "UPDATE rm_flight_areas SET name = coalesce($2, name), content = coalesce($3, content), \
                   status = coalesce($4, status), update_time = $5 WHERE area_id = $1",
            )
            .bind(id)
            .bind(name)
            .bind(content)
            .bind(status)
            .bind(at),
            FlightAreaEvent::FlightAreaDeleted => {
                sqlx::query("DELETE FROM rm_flight_areas WHERE area_id = $1").bind(id)
            }
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
