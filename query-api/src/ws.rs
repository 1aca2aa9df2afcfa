//! The WebSocket `/api/v1/ws?x-auth-token=…` (reference §22): a plain text channel on which the
//! server pushes `{biz_code, version, timestamp, data}` to every session of a workspace. What clients
//! send is read and ignored.
//!
//! Fan-out goes through a bounded queue per session: a slow client loses its own oldest-pending
//! messages (counted in `hangar_ws_dropped_total`) and never delays the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use shared::auth::token_from_query;
use shared::metrics;
use shared::Shutdown;
use tokio::sync::mpsc;

use crate::AppState;

const SESSION_QUEUE: usize = 1024;
/// Queued messages written to a session's socket with one flush.
const SESSION_BATCH: usize = 64;

/// Which sessions of a workspace a message is for (DJI routes by user type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    All,
    Web,
    Pilot,
}

struct Session {
    id: u64,
    user_type: i32,
    tx: mpsc::Sender<Arc<str>>,
}

#[derive(Clone)]
pub struct Hub {
    sessions: Arc<RwLock<HashMap<String, Vec<Session>>>>,
    next_id: Arc<AtomicU64>,
    shutdown: Shutdown,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    biz_code: &'a str,
    version: &'static str,
    timestamp: i64,
    data: T,
}

impl Hub {
    /// A hub whose sessions close when `shutdown` fires.
    pub fn new(shutdown: Shutdown) -> Self {
        Self { sessions: Default::default(), next_id: Default::default(), shutdown }
    }

    fn register(&self, workspace_id: &str, user_type: i32) -> (u64, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(workspace_id.to_string())
            .or_default()
            .push(Session { id, user_type, tx });
        metrics::gauge("hangar_ws_sessions", &[]).fetch_add(1, Ordering::Relaxed);
        (id, rx)
    }

    fn unregister(&self, workspace_id: &str, id: u64) {
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(workspace_id) {
            list.retain(|s| s.id != id);
            if list.is_empty() {
                map.remove(workspace_id);
            }
        }
        metrics::gauge("hangar_ws_sessions", &[]).fetch_sub(1, Ordering::Relaxed);
    }

    /// Number of open sessions of a workspace.
    pub fn sessions(&self, workspace_id: &str) -> usize {
        self.sessions.read().unwrap_or_else(|e| e.into_inner()).get(workspace_id).map_or(0, Vec::len)
    }

    /// Sends `{biz_code, version: "1.0", timestamp, data}` to the workspace's sessions.
    pub fn publish<T: Serialize>(&self, workspace_id: &str, audience: Audience, biz_code: &str, data: T) {
        if !self.has_sessions(workspace_id) {
            return;
        }
        let envelope = Envelope { biz_code, version: "1.0", timestamp: shared::time::now_ms(), data };
        let text: Arc<str> = match serde_json::to_value(&envelope) {
            Ok(v) => shared::error::strip_nulls(v).to_string().into(),
            Err(e) => {
                tracing::error!(error = %e, biz_code, "unserialisable WebSocket message");
                return;
            }
        };
        self.fan_out(workspace_id, audience, text);
    }

    /// As [`Hub::publish`], for data that is already a JSON value without nulls, written as it
    /// is: the telemetry path, where a fleet's every OSD message passes.
    pub fn publish_json(&self, workspace_id: &str, audience: Audience, biz_code: &str, data: &str) {
        if !self.has_sessions(workspace_id) {
            return;
        }
        let biz = serde_json::to_string(biz_code).unwrap_or_else(|_| "\"\"".into());
        let mut text = String::with_capacity(data.len() + biz.len() + 64);
        text.push_str("{\"biz_code\":");
        text.push_str(&biz);
        text.push_str(",\"version\":\"1.0\",\"timestamp\":");
        text.push_str(&shared::time::now_ms().to_string());
        text.push_str(",\"data\":");
        text.push_str(data);
        text.push('}');
        self.fan_out(workspace_id, audience, text.into());
    }

    fn has_sessions(&self, workspace_id: &str) -> bool {
        self.sessions.read().unwrap_or_else(|e| e.into_inner()).contains_key(workspace_id)
    }

    fn fan_out(&self, workspace_id: &str, audience: Audience, text: Arc<str>) {
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get(workspace_id) else { return };
        for s in list {
            let wanted = match audience {
                Audience::All => true,
                Audience::Web => s.user_type == 1,
                Audience::Pilot => s.user_type == 2,
            };
            if wanted && s.tx.try_send(text.clone()).is_err() {
                metrics::counter("hangar_ws_dropped_total", &[]).fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The handshake: the token comes from the query string; a missing or invalid one is refused with
/// 401 before upgrading.
#[utoipa::path(
    get,
    path = "/api/v1/ws",
    tag = "WebSocket",
    summary = "The push channel to the web client and Pilot 2 (the token in `?x-auth-token=`)",
    security(()),
)]
pub async fn upgrade(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(claims) = token_from_query(query.as_deref()).and_then(|t| s.jwt.verify(t.trim()).ok()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let hub = s.hub.clone();
    let user_type = claims.user_type();
    ws.on_upgrade(move |socket| session(socket, hub, claims.workspace_id, user_type))
}

async fn session(socket: WebSocket, hub: Hub, workspace_id: String, user_type: i32) {
    let (id, mut rx) = hub.register(&workspace_id, user_type);
    let (mut sink, mut stream) = socket.split();
    let shutdown = hub.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
            out = rx.recv() => {
                let Some(text) = out else { break };
                // What is already queued goes out with one flush: a fleet's OSD would otherwise
                // cost a write to the socket per message, and fill the queue faster than it drains.
                let mut sent = sink.feed(Message::Text(text.as_ref().into())).await;
                for _ in 1..SESSION_BATCH {
                    let Ok(text) = rx.try_recv() else { break };
                    if sent.is_err() {
                        break;
                    }
                    sent = sink.feed(Message::Text(text.as_ref().into())).await;
                }
                if sent.is_err() || sink.flush().await.is_err() {
                    break;
                }
            }
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // clients' messages are only read, as in DJI's demo
            }
        }
    }
    hub.unregister(&workspace_id, id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_session_never_holds_back_the_others() {
        let hub = Hub::new(Shutdown::new());
        let (_slow_id, _slow_rx) = hub.register("w", 1); // never read
        let (_fast_id, mut fast_rx) = hub.register("w", 1);
        let (_other_id, mut other_rx) = hub.register("v", 1);
        for i in 0..SESSION_QUEUE * 3 {
            hub.publish("w", Audience::All, "dock_osd", serde_json::json!({"n": i}));
            // the reader keeps up; publish never waits for the stalled session
            let m = fast_rx.try_recv().expect("delivered at once");
            assert!(m.contains(&format!("\"n\":{i}")));
        }
        assert!(other_rx.try_recv().is_err(), "another workspace gets nothing");
        assert!(metrics::counter("hangar_ws_dropped_total", &[]).load(Ordering::Relaxed) >= (SESSION_QUEUE * 2) as u64);
    }

    #[tokio::test]
    async fn json_data_goes_out_in_the_same_envelope() {
        let hub = Hub::new(Shutdown::new());
        let (_id, mut rx) = hub.register("w", 1);
        hub.publish_json("w", Audience::Web, "dock_osd", r#"{"sn":"D","host":{"a":1}}"#);
        hub.publish("w", Audience::Web, "dock_osd", serde_json::json!({"sn": "D", "host": {"a": 1}}));
        let raw: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        let tree: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(raw["biz_code"], "dock_osd");
        assert_eq!(raw["version"], "1.0");
        assert!(raw["timestamp"].as_i64().unwrap() > 0);
        assert_eq!(raw["data"], tree["data"]);
        hub.publish_json("nobody", Audience::All, "dock_osd", "{}"); // no session: nothing to do
    }

    #[tokio::test]
    async fn audiences_follow_user_type() {
        let hub = Hub::new(Shutdown::new());
        let (_, mut web) = hub.register("w", 1);
        let (_, mut pilot) = hub.register("w", 2);
        hub.publish("w", Audience::Web, "dock_osd", serde_json::json!({}));
        hub.publish("w", Audience::Pilot, "device_osd", serde_json::json!({}));
        assert!(web.try_recv().unwrap().contains("dock_osd"));
        assert!(web.try_recv().is_err());
        let v: serde_json::Value = serde_json::from_str(&pilot.try_recv().unwrap()).unwrap();
        assert_eq!(
            (v["biz_code"].as_str(), v["version"].as_str(), v["data"].clone()),
            (Some("device_osd"), Some("1.0"), serde_json::json!({}))
        );
        assert!(v["timestamp"].as_i64().unwrap() > 0);
        assert!(pilot.try_recv().is_err());
    }
}
