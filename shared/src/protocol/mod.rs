//! DJI's MQTT protocol as the domain sees it: topics, the common envelope (read leniently: every
//! field may be missing or of an unexpected type), and replies. The mqtt-bridge moves bytes; these
//! types give them meaning.

pub mod codes;
pub mod requests;
pub mod services;
pub mod topology;

use serde::Serialize;
use serde_json::{json, Value};

/// Header in which the bridge carries a message's MQTT topic through JetStream.
pub const H_MQTT_TOPIC: &str = "Hangar-Mqtt-Topic";
/// Header of a message for a device: after this time (ms since the epoch) it is not delivered.
pub const H_EXPIRES_AT: &str = "Hangar-Expires-At";
/// Header with the time the bridge received the message (RFC 3339).
pub const H_RECEIVED_AT: &str = "Hangar-Received-At";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicKind {
    Status,
    Osd,
    State,
    Events,
    Requests,
    Services,
    ServicesReply,
    PropertySet,
    PropertySetReply,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub sn: String,
    pub kind: TopicKind,
}

impl Topic {
    /// `sys/product/{sn}/status`, `thing/product/{sn}/{osd|state|events|requests|services|…}`.
    pub fn parse(topic: &str) -> Option<Self> {
        let parts: Vec<&str> = topic.split('/').collect();
        let (root, sn, rest) = match parts.as_slice() {
            [root @ ("sys" | "thing"), "product", sn, rest @ ..] if !sn.is_empty() => (*root, *sn, rest),
            _ => return None,
        };
        // status lives under sys/, everything else under thing/
        let kind = match (root, rest) {
            ("sys", ["status"]) => TopicKind::Status,
            ("thing", ["osd"]) => TopicKind::Osd,
            ("thing", ["state"]) => TopicKind::State,
            ("thing", ["events"]) => TopicKind::Events,
            ("thing", ["requests"]) => TopicKind::Requests,
            ("thing", ["services"]) => TopicKind::Services,
            ("thing", ["services_reply"]) => TopicKind::ServicesReply,
            ("thing", ["property", "set"]) => TopicKind::PropertySet,
            ("thing", ["property", "set_reply"]) => TopicKind::PropertySetReply,
            (_, other) => TopicKind::Other(format!("{root}/{}", other.join("/"))),
        };
        Some(Self { sn: sn.to_string(), kind })
    }
}

/// The common envelope of an up-message.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub tid: String,
    pub bid: String,
    pub timestamp: i64,
    pub method: String,
    pub gateway: String,
    pub need_reply: bool,
    pub data: Value,
}

impl Envelope {
    /// The gateway the message names, or the serial number it came from when it names none.
    pub fn gateway_or(&self, sn: &str) -> String {
        if self.gateway.is_empty() {
            sn.to_string()
        } else {
            self.gateway.clone()
        }
    }

    /// Reads whatever is there; `None` only when the payload is not a JSON object.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(payload).ok()?;
        let o = v.as_object()?;
        let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Some(Self {
            tid: s("tid"),
            bid: s("bid"),
            timestamp: o.get("timestamp").and_then(as_i64).unwrap_or_default(),
            method: s("method"),
            gateway: s("gateway"),
            need_reply: o.get("need_reply").map(truthy).unwrap_or(false),
            data: o.get("data").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Integer from a number or a numeric string.
pub fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Booleans that docks send as `true`, `1` or `"1"`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim(), "1" | "true" | "TRUE" | "True"),
        _ => false,
    }
}

/// A reply envelope `{tid, bid, timestamp, method?, data}`.
pub fn reply(tid: &str, bid: &str, method: Option<&str>, data: impl Serialize) -> Vec<u8> {
    let mut v = json!({"tid": tid, "bid": bid, "timestamp": crate::time::now_ms(), "data": data});
    if let Some(m) = method {
        v["method"] = Value::String(m.to_string());
    }
    v.to_string().into_bytes()
}

/// A down-message `{tid, bid, timestamp, method?, data}` with the ids and time it was recorded with,
/// so that the same recorded command always makes the same bytes.
pub fn down_message(tid: &str, bid: &str, timestamp_ms: i64, method: Option<&str>, data: &Value) -> Vec<u8> {
    let mut v = json!({"tid": tid, "bid": bid, "timestamp": timestamp_ms, "data": data});
    if let Some(m) = method {
        v["method"] = Value::String(m.to_string());
    }
    v.to_string().into_bytes()
}

/// A down-message envelope with fresh ids.
pub fn command(method: Option<&str>, bid: &str, data: impl Serialize) -> (String, Vec<u8>) {
    let tid = uuid::Uuid::new_v4().to_string();
    let body = reply(&tid, bid, method, data);
    (tid, body)
}

pub fn status_reply_topic(sn: &str) -> String {
    format!("sys/product/{sn}/status_reply")
}

pub fn thing_topic(sn: &str, suffix: &str) -> String {
    format!("thing/product/{sn}/{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(
            Topic::parse("sys/product/DOCK1/status"),
            Some(Topic { sn: "DOCK1".into(), kind: TopicKind::Status })
        );
        assert_eq!(Topic::parse("thing/product/X/property/set_reply").unwrap().kind, TopicKind::PropertySetReply);
        assert_eq!(Topic::parse("thing/product/X/drc/up").unwrap().kind, TopicKind::Other("thing/drc/up".into()));
        assert_eq!(Topic::parse("thing/product/X/status").unwrap().kind, TopicKind::Other("thing/status".into()));
        assert_eq!(Topic::parse("other/thing"), None);
        assert_eq!(Topic::parse("thing/product//osd"), None);
    }

    #[test]
    fn lenient_envelope() {
        let e =
            Envelope::parse(br#"{"tid":"t","bid":5,"timestamp":"17","method":"hms","need_reply":"1","data":{"a":1}}"#)
                .unwrap();
        assert_eq!((e.tid.as_str(), e.bid.as_str(), e.timestamp, e.need_reply), ("t", "", 17, true));
        assert_eq!(e.data["a"], 1);
        assert!(Envelope::parse(b"[1,2]").is_none());
        assert!(Envelope::parse(b"not json").is_none());
        assert!(!Envelope::parse(b"{}").unwrap().need_reply);
    }
}
