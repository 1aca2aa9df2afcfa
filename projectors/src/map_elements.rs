//! Read model of map elements (`rm_map_elements`): what `GET …/element-groups` lists per group.

use serde::Deserialize as _;
use shared::domain::map_element::{self, MapElementEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct MapElements;

#[async_trait::async_trait]
impl crate::Projection for MapElements {
    fn name(&self) -> &'static str {
        "map_elements"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[map_element::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_map_elements"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let id = e.aggregate_id.as_str();
        let at = e.recorded_at;
        let q = match MapElementEvent::deserialize(&e.payload)? {
            MapElementEvent::MapElementCreated(m) => sqlx::query(
                "INSERT INTO rm_map_elements (element_id, workspace_id, group_id, name, element_type, user_name, \
                   content, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (element_id) DO UPDATE SET workspace_id = EXCLUDED.workspace_id, \
                   group_id = EXCLUDED.group_id, name = EXCLUDED.name, element_type = EXCLUDED.element_type, \
                   user_name = EXCLUDED.user_name, content = EXCLUDED.content, create_time = EXCLUDED.create_time, \
                   update_time = EXCLUDED.update_time",
            )
            .bind(id)
            .bind(m.workspace_id)
            .bind(m.group_id)
            .bind(m.name)
            .bind(m.element_type)
            .bind(m.user_name)
            .bind(m.content)
            .bind(at),
            MapElementEvent::MapElementUpdated { name, content } => sqlx::query(
                "UPDATE rm_map_elements SET name = $2, content = $3, update_time = $4 WHERE element_id = $1",
            )
            .bind(id)
            .bind(name)
            .bind(content)
            .bind(at),
            MapElementEvent::MapElementDeleted { .. } => {
                sqlx::query("DELETE FROM rm_map_elements WHERE element_id = $1").bind(id)
            }
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
