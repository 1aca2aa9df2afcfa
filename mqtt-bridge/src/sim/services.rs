//! Answers to `services` and `property/set`.

use serde_json::{json, Value};

use super::now_ms;

/// The device's answer to a command, as a real dock gives it: same `tid` and `bid`, result 0.
pub(super) fn reply(topic: &str, payload: &[u8]) -> Option<(String, Value)> {
    let request: Value = serde_json::from_slice(payload).ok()?;
    let field = |k: &str| request.get(k).cloned().unwrap_or(Value::Null);
    if let Some(base) = topic.strip_suffix("/services") {
        let body = json!({
            "tid": field("tid"),
            "bid": field("bid"),
            "timestamp": now_ms(),
            "method": field("method"),
            "data": {"result": 0, "output": {"status": "ok"}},
        });
        return Some((format!("{base}/services_reply"), body));
    }
    if let Some(base) = topic.strip_suffix("/property/set") {
        let results: serde_json::Map<String, Value> = match request.get("data") {
            Some(Value::Object(data)) => data.keys().map(|k| (k.clone(), json!({"result": 0}))).collect(),
            _ => serde_json::Map::new(),
        };
        let body = json!({"tid": field("tid"), "bid": field("bid"), "timestamp": now_ms(), "data": results});
        return Some((format!("{base}/property/set_reply"), body));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_get_an_ok_reply_with_tid_and_bid() {
        let (topic, body) = reply(
            "thing/product/XDOCK0001/services",
            br#"{"tid":"t1","bid":"b1","timestamp":1,"method":"cover_open","data":""}"#,
        )
        .unwrap();
        assert_eq!(topic, "thing/product/XDOCK0001/services_reply");
        assert_eq!(
            (body["tid"].as_str(), body["bid"].as_str(), body["method"].as_str()),
            (Some("t1"), Some("b1"), Some("cover_open"))
        );
        assert_eq!(body["data"], json!({"result": 0, "output": {"status": "ok"}}));
    }

    #[test]
    fn property_set_gets_a_result_per_property() {
        let (topic, body) =
            reply("thing/product/XDOCK0001/property/set", br#"{"tid":"t","bid":"b","data":{"height_limit":200}}"#)
                .unwrap();
        assert_eq!(topic, "thing/product/XDOCK0001/property/set_reply");
        assert_eq!(body["data"], json!({"height_limit": {"result": 0}}));
        assert!(reply("thing/product/X/services", b"not json").is_none());
        assert!(reply("thing/product/X/events_reply", b"{}").is_none());
    }
}
