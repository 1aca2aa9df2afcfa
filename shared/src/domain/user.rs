//! A user of a workspace: a web operator (`user_type` 1) or a DJI Pilot 2 pilot (2). Only the MQTT
//! credentials can be changed through the API (UserController).

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub const AGGREGATE_TYPE: &str = "user";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    pub user_id: String,
    pub username: String,
    /// argon2id PHC string; the plain password never enters an event.
    pub password_hash: String,
    pub workspace_id: String,
    pub user_type: i32,
    pub mqtt_username: String,
    pub mqtt_password: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    CreateUser(NewUser),
    /// Missing fields keep their value. `workspace_id` is the caller's: a user of another
    /// workspace answers NotFound, exactly as a user that does not exist.
    ChangeMqttCredentials {
        workspace_id: String,
        mqtt_username: Option<String>,
        mqtt_password: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserCreated(NewUser),
    MqttCredentialsChanged { mqtt_username: String, mqtt_password: String },
}
crate::domain_event!(UserEvent, "1.0", { UserCreated, MqttCredentialsChanged });

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("The user does not exist.")]
    NotFound,
    #[error("The user already exists.")]
    AlreadyExists,
    #[error("user_type must be 1 (web) or 2 (pilot).")]
    BadType,
}

impl crate::error::DjiCode for UserError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    created: bool,
    workspace_id: String,
    mqtt_username: String,
    mqtt_password: String,
}

impl User {
    /// The user's workspace, once created.
    pub fn workspace_id(&self) -> Option<&str> {
        Some(self.workspace_id.as_str()).filter(|_| self.created)
    }
}

impl Aggregate for User {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            UserCommand::CreateUser(new) => {
                if self.created {
                    return Err(UserError::AlreadyExists);
                }
                if !matches!(new.user_type, 1 | 2) {
                    return Err(UserError::BadType);
                }
                sink.write(UserEvent::UserCreated(new), self).await;
            }
            UserCommand::ChangeMqttCredentials { workspace_id, mqtt_username, mqtt_password } => {
                if !self.created || workspace_id != self.workspace_id {
                    return Err(UserError::NotFound);
                }
                let mqtt_username = mqtt_username.unwrap_or_else(|| self.mqtt_username.clone());
                let mqtt_password = mqtt_password.unwrap_or_else(|| self.mqtt_password.clone());
                if mqtt_username != self.mqtt_username || mqtt_password != self.mqtt_password {
                    sink.write(UserEvent::MqttCredentialsChanged { mqtt_username, mqtt_password }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserCreated(new) => {
                self.created = true;
                self.workspace_id = new.workspace_id;
                self.mqtt_username = new.mqtt_username;
                self.mqtt_password = new.mqtt_password;
            }
            UserEvent::MqttCredentialsChanged { mqtt_username, mqtt_password } => {
                self.mqtt_username = mqtt_username;
                self.mqtt_password = mqtt_password;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn created() -> UserEvent {
        UserEvent::UserCreated(NewUser {
            user_id: "u".into(),
            username: "pilot".into(),
            password_hash: "h".into(),
            workspace_id: "w".into(),
            user_type: 2,
            mqtt_username: "pilot".into(),
            mqtt_password: "pilot123".into(),
        })
    }

    fn change(u: &str, p: &str) -> UserCommand {
        UserCommand::ChangeMqttCredentials {
            workspace_id: "w".into(),
            mqtt_username: Some(u.into()),
            mqtt_password: Some(p.into()),
        }
    }

    #[test]
    fn missing_field_keeps_its_value() {
        let cmd = UserCommand::ChangeMqttCredentials {
            workspace_id: "w".into(),
            mqtt_username: None,
            mqtt_password: Some("x".into()),
        };
        TestFramework::<User>::with(()).given(vec![created()]).when(cmd).then_expect_events(vec![
            UserEvent::MqttCredentialsChanged { mqtt_username: "pilot".into(), mqtt_password: "x".into() },
        ]);
    }

    #[test]
    fn user_of_another_workspace_is_not_found() {
        let cmd = UserCommand::ChangeMqttCredentials {
            workspace_id: "v".into(),
            mqtt_username: None,
            mqtt_password: Some("x".into()),
        };
        TestFramework::<User>::with(())
            .given(vec![created()])
            .when(cmd)
            .then_expect_error_message("The user does not exist.");
    }

    #[test]
    fn credentials_change() {
        TestFramework::<User>::with(()).given(vec![created()]).when(change("a", "b")).then_expect_events(vec![
            UserEvent::MqttCredentialsChanged { mqtt_username: "a".into(), mqtt_password: "b".into() },
        ]);
    }

    #[test]
    fn same_credentials_record_nothing() {
        TestFramework::<User>::with(())
            .given(vec![created()])
            .when(change("pilot", "pilot123"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn unknown_user_is_refused() {
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(change("a", "b"))
            .then_expect_error_message("The user does not exist.");
    }
}
