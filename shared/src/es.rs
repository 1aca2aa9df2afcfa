//! How an event travels on JetStream: subject `es.<aggregate_type>.<aggregate_id>`, `Nats-Msg-Id`
//! `<type>/<id>/<sequence>`, the payload as the message body and everything else in headers.

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const H_AGGREGATE_TYPE: &str = "Hangar-Aggregate-Type";
pub const H_AGGREGATE_ID: &str = "Hangar-Aggregate-Id";
pub const H_SEQUENCE: &str = "Hangar-Sequence";
pub const H_EVENT_TYPE: &str = "Hangar-Event-Type";
pub const H_EVENT_VERSION: &str = "Hangar-Event-Version";
pub const H_METADATA: &str = "Hangar-Metadata";
pub const H_RECORDED_AT: &str = "Hangar-Recorded-At";
pub const H_POSITION: &str = "Hangar-Position";

/// One committed event, as stored in Postgres (a row of `events`) and carried on the ES stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub global_position: i64,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn msg_id(&self) -> String {
        format!("{}/{}/{}", self.aggregate_type, self.aggregate_id, self.sequence)
    }

    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", self.msg_id().as_str());
        h.insert(H_AGGREGATE_TYPE, self.aggregate_type.as_str());
        h.insert(H_AGGREGATE_ID, self.aggregate_id.as_str());
        h.insert(H_SEQUENCE, self.sequence.to_string().as_str());
        h.insert(H_EVENT_TYPE, self.event_type.as_str());
        h.insert(H_EVENT_VERSION, self.event_version.as_str());
        h.insert(H_METADATA, self.metadata.to_string().as_str());
        h.insert(H_RECORDED_AT, self.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).as_str());
        h.insert(H_POSITION, self.global_position.to_string().as_str());
        // the trace of the command that recorded the event goes on with whoever reads it (the
        // relay puts its own span in its place when it exports traces)
        if let Some(tp) = self.metadata.get(crate::telemetry::TRACEPARENT).and_then(|v| v.as_str()) {
            h.insert(crate::telemetry::TRACEPARENT, tp);
        }
        h
    }

    /// Reads an event back from a JetStream message.
    pub fn from_message(headers: Option<&HeaderMap>, payload: &[u8]) -> anyhow::Result<Self> {
        let h = headers.ok_or_else(|| anyhow::anyhow!("event message without headers"))?;
        let get = |name: &str| -> anyhow::Result<String> {
            h.get(name).map(|v| v.as_str().to_string()).ok_or_else(|| anyhow::anyhow!("event message without {name}"))
        };
        Ok(Self {
            aggregate_type: get(H_AGGREGATE_TYPE)?,
            aggregate_id: get(H_AGGREGATE_ID)?,
            sequence: get(H_SEQUENCE)?.parse()?,
            event_type: get(H_EVENT_TYPE)?,
            event_version: get(H_EVENT_VERSION)?,
            payload: serde_json::from_slice(payload)?,
            metadata: serde_json::from_str(&get(H_METADATA)?)?,
            global_position: get(H_POSITION)?.parse()?,
            recorded_at: DateTime::parse_from_rfc3339(&get(H_RECORDED_AT)?)?.with_timezone(&Utc),
        })
    }
}

/// A subject token for an id: `.`, `*`, `>`, `%` and white space are percent-encoded so that any id
/// is exactly one token, and two ids never share a subject.
pub fn subject_token(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '.' | '*' | '>' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_whitespace() || c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_are_single_and_distinct() {
        assert_eq!(subject_token("abc-1"), "abc-1");
        assert_eq!(subject_token("a.b"), "a%2Eb");
        assert_eq!(subject_token("a b>*"), "a%20b%3E%2A");
        assert_ne!(subject_token("a.b"), subject_token("a%2Eb"));
        assert_eq!(subject_token(""), "%00");
    }

    #[test]
    fn headers_round_trip() {
        let e = StoredEvent {
            aggregate_type: "media_file".into(),
            aggregate_id: "x".into(),
            sequence: 3,
            event_type: "MediaFileUploaded".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"a": 1}),
            metadata: serde_json::json!({"user": "pilot"}),
            global_position: 42,
            recorded_at: DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z").unwrap().with_timezone(&Utc),
        };
        let back = StoredEvent::from_message(Some(&e.headers()), e.payload.to_string().as_bytes()).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.msg_id(), "media_file/x/3");
    }
}
