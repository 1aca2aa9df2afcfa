//! Read model of users (`rm_users`): login, the current user, a workspace's users.

use serde::Deserialize as _;
use shared::domain::user::{self, UserEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct Users;

#[async_trait::async_trait]
impl crate::Projection for Users {
    fn name(&self) -> &'static str {
        "users"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[user::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_users"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        match UserEvent::deserialize(&e.payload)? {
            UserEvent::UserCreated(u) => {
                sqlx::query(
                    "INSERT INTO rm_users (user_id, username, password_hash, workspace_id, user_type, mqtt_username, \
                       mqtt_password, create_time, update_time) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8) ON CONFLICT DO NOTHING",
                )
                .bind(&u.user_id)
                .bind(&u.username)
                .bind(&u.password_hash)
                .bind(&u.workspace_id)
                .bind(u.user_type)
                .bind(&u.mqtt_username)
                .bind(&u.mqtt_password)
                .bind(e.recorded_at)
                .execute(&mut *tx)
                .await?;
            }
            UserEvent::MqttCredentialsChanged { mqtt_username, mqtt_password } => {
                sqlx::query(
                    "UPDATE rm_users SET mqtt_username = $2, mqtt_password = $3, update_time = $4 WHERE user_id = $1",
                )
                .bind(&e.aggregate_id)
                .bind(&mqtt_username)
                .bind(&mqtt_password)
                .bind(e.recorded_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(())
    }
}
