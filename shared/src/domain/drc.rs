//! Direct remote control (DRC) of a dock's aircraft: who may fly it by hand, until when. One
//! aggregate per dock (its serial number). While a session is open, the browser's MQTT client
//! may publish the dock's `drc/down` and subscribe to its `drc/up`, and the dock's own DRC client
//! the other way round; the broker asks ([`DrcSession::allows`]) and Hangar only grants and
//! revokes.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub const AGGREGATE_TYPE: &str = "drc";

/// `thing/product/<dock>/drc/down`: the browser publishes, the dock subscribes.
pub fn down_topic(dock_sn: &str) -> String {
    format!("thing/product/{dock_sn}/drc/down")
}

/// `thing/product/<dock>/drc/up`: the dock publishes, the browser subscribes.
pub fn up_topic(dock_sn: &str) -> String {
    format!("thing/product/{dock_sn}/drc/up")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub workspace_id: String,
    /// The browser's MQTT client id (from `drc/connect`).
    pub client_id: String,
    /// The dock's MQTT client id on the DRC broker (from `drc_mode_enter`).
    pub dock_client_id: String,
    pub username: String,
    /// Epoch seconds.
    pub expires_at: i64,
    /// The wayline job that entering paused, resumed on leaving.
    #[serde(default)]
    pub paused_job: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DrcCommand {
    /// Opens a session, or renews the open one of the same browser client.
    Enter(Session),
    Exit {
        workspace_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DrcEvent {
    DrcEntered(Session),
    DrcExited { client_id: String },
}
crate::domain_event!(DrcEvent, "1.0", { DrcEntered, DrcExited });

#[derive(Debug, thiserror::Error)]
pub enum DrcError {
    #[error("The dock is not in DRC mode.")]
    NotInDrc,
}

impl crate::error::DjiCode for DrcError {}

/// What an MQTT client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DrcSession {
    session: Option<Session>,
}

impl DrcSession {
    /// The session not yet closed, even if it expired.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The workspace of the session not yet closed (it may have expired).
    pub fn workspace_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.workspace_id.as_str())
    }

    /// The open session, if it has not expired by `now` (epoch seconds).
    pub fn open(&self, now: i64) -> Option<&Session> {
        self.session.as_ref().filter(|s| s.expires_at > now)
    }

    /// Whether `client_id` may do `action` on `topic` of this dock (`dock_sn`) at `now`: the
    /// browser publishes `drc/down` and subscribes `drc/up`, the dock the reverse; nobody else,
    /// and nobody once the session is closed or expired.
    pub fn allows(&self, dock_sn: &str, client_id: &str, topic: &str, action: Action, now: i64) -> bool {
        let Some(s) = self.open(now) else { return false };
        let (down, up) = (down_topic(dock_sn), up_topic(dock_sn));
        match action {
            Action::Publish if client_id == s.client_id => topic == down,
            Action::Subscribe if client_id == s.client_id => topic == up,
            Action::Publish if client_id == s.dock_client_id => topic == up,
            Action::Subscribe if client_id == s.dock_client_id => topic == down,
            _ => false,
        }
    }
}

impl Aggregate for DrcSession {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = DrcCommand;
    type Event = DrcEvent;
    type Error = DrcError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            DrcCommand::Enter(session) => sink.write(DrcEvent::DrcEntered(session), self).await,
            DrcCommand::Exit { workspace_id } => {
                let Some(s) = self.session.as_ref().filter(|s| s.workspace_id == workspace_id) else {
                    return Err(DrcError::NotInDrc);
                };
                let client_id = s.client_id.clone();
                sink.write(DrcEvent::DrcExited { client_id }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DrcEvent::DrcEntered(s) => self.session = Some(s),
            DrcEvent::DrcExited { .. } => self.session = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn session(expires_at: i64) -> Session {
        Session {
            workspace_id: "w".into(),
            client_id: "web-1".into(),
            dock_client_id: "DOCK-1".into(),
            username: "adminPC".into(),
            expires_at,
            paused_job: None,
        }
    }

    #[test]
    fn the_browser_and_the_dock_each_get_their_direction_until_exit_or_expiry() {
        let mut d = DrcSession::default();
        d.apply(DrcEvent::DrcEntered(session(100)));
        let (down, up) = (down_topic("DOCK"), up_topic("DOCK"));
        assert!(d.allows("DOCK", "web-1", &down, Action::Publish, 50));
        assert!(d.allows("DOCK", "web-1", &up, Action::Subscribe, 50));
        assert!(!d.allows("DOCK", "web-1", &up, Action::Publish, 50), "the browser never speaks for the dock");
        assert!(d.allows("DOCK", "DOCK-1", &up, Action::Publish, 50));
        assert!(d.allows("DOCK", "DOCK-1", &down, Action::Subscribe, 50));
        assert!(!d.allows("DOCK", "web-2", &down, Action::Publish, 50), "another browser");
        assert!(!d.allows("DOCK", "web-1", &down_topic("OTHER"), Action::Publish, 50), "another dock");
        assert!(!d.allows("DOCK", "web-1", &down, Action::Publish, 100), "expired");
        d.apply(DrcEvent::DrcExited { client_id: "web-1".into() });
        assert!(!d.allows("DOCK", "web-1", &down, Action::Publish, 50), "exited");
    }

    #[test]
    fn exit_needs_an_open_session_of_the_workspace() {
        TestFramework::<DrcSession>::with(())
            .given_no_previous_events()
            .when(DrcCommand::Exit { workspace_id: "w".into() })
            .then_expect_error_message("The dock is not in DRC mode.");
        TestFramework::<DrcSession>::with(())
            .given(vec![DrcEvent::DrcEntered(session(100))])
            .when(DrcCommand::Exit { workspace_id: "other".into() })
            .then_expect_error_message("The dock is not in DRC mode.");
        TestFramework::<DrcSession>::with(())
            .given(vec![DrcEvent::DrcEntered(session(100))])
            .when(DrcCommand::Exit { workspace_id: "w".into() })
            .then_expect_events(vec![DrcEvent::DrcExited { client_id: "web-1".into() }]);
    }
}
