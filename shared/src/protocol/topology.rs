//! `update_topo` (reference §4) and the state properties that say who controls the aircraft and
//! its payloads (§7), read leniently: numbers may come as strings, any field may be missing, and
//! what is missing is reported as missing rather than guessed, so that a malformed message never
//! changes what a device is.

use serde_json::Value;

use super::as_i64;
use crate::domain::device::Model;

/// One device in an `update_topo`: the gateway itself, or one of its `sub_devices`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopoDevice {
    pub sn: String,
    /// `None` when domain, type or sub_type is missing or not a number.
    pub model: Option<Model>,
    pub thing_version: Option<String>,
    /// `index` of a sub-device (`"A"`/`"B"`).
    pub index: Option<String>,
}

/// What an `update_topo` says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateTopo {
    pub gateway: TopoDevice,
    /// `None` when the message has no `sub_devices` list at all (malformed): the topology is then
    /// left as it was. `Some(vec![])` is a gateway without aircraft.
    pub sub_devices: Option<Vec<TopoDevice>>,
}

fn model(v: &Value) -> Option<Model> {
    Some(Model {
        domain: v.get("domain").and_then(as_i64)?,
        kind: v.get("type").and_then(as_i64)?,
        sub_type: v.get("sub_type").and_then(as_i64)?,
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl UpdateTopo {
    /// `None` when `data` is not an object at all.
    pub fn parse(gateway_sn: &str, data: &Value) -> Option<Self> {
        if !data.is_object() {
            return None;
        }
        let gateway = TopoDevice {
            sn: gateway_sn.to_string(),
            model: model(data),
            thing_version: text(data, "thing_version"),
            index: None,
        };
        let sub_devices = data.get("sub_devices").and_then(Value::as_array).map(|list| {
            list.iter()
                .filter_map(|d| {
                    Some(TopoDevice {
                        sn: text(d, "sn")?,
                        model: model(d),
                        thing_version: text(d, "thing_version"),
                        index: text(d, "index"),
                    })
                })
                .collect()
        });
        Some(Self { gateway, sub_devices })
    }
}

/// Who controls a payload (`payloads` of a state message).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayloadControl {
    pub payload_index: String,
    pub sn: String,
    pub control_source: String,
}

/// `control_source` and `payloads` of a dock's or RC's state message, when present.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControlState {
    pub control_source: Option<String>,
    pub payloads: Option<Vec<PayloadControl>>,
}

impl ControlState {
    pub fn parse(data: &Value) -> Self {
        let payloads = data.get("payloads").and_then(Value::as_array).map(|list| {
            list.iter()
                .filter_map(|p| {
                    Some(PayloadControl {
                        payload_index: text(p, "payload_index")?,
                        sn: text(p, "sn").unwrap_or_default(),
                        control_source: p.get("control_source").and_then(Value::as_str).unwrap_or_default().to_string(),
                    })
                })
                .collect()
        });
        Self { control_source: data.get("control_source").and_then(Value::as_str).map(str::to_owned), payloads }
    }

    pub fn is_empty(&self) -> bool {
        self.control_source.is_none() && self.payloads.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_as_strings_are_numbers() {
        let t = UpdateTopo::parse(
            "D",
            &json!({"domain": "3", "type": 2, "sub_type": "0", "thing_version": "1.2",
                    "sub_devices": [{"sn": "U", "domain": 0, "type": "91", "sub_type": 0, "index": "A"}]}),
        )
        .unwrap();
        assert_eq!(t.gateway.model, Some(Model { domain: 3, kind: 2, sub_type: 0 }));
        let subs = t.sub_devices.unwrap();
        assert_eq!(subs[0].model, Some(Model { domain: 0, kind: 91, sub_type: 0 }));
        assert_eq!(subs[0].index.as_deref(), Some("A"));
    }

    #[test]
    fn missing_fields_stay_missing() {
        assert_eq!(UpdateTopo::parse("D", &Value::Null), None);
        assert_eq!(UpdateTopo::parse("D", &json!("")), None);
        let t = UpdateTopo::parse("D", &json!({"domain": 3})).unwrap();
        assert_eq!((t.gateway.model, t.sub_devices), (None, None));
        let t = UpdateTopo::parse("D", &json!({"sub_devices": [{"domain": 0}, {"sn": ""}]})).unwrap();
        assert_eq!(t.sub_devices, Some(vec![]));
    }

    #[test]
    fn control_state() {
        let c = ControlState::parse(
            &json!({"control_source": "A", "payloads": [{"payload_index": "52-0-0", "sn": "P", "control_source": "B"}]}),
        );
        assert_eq!(c.control_source.as_deref(), Some("A"));
        assert_eq!(c.payloads.unwrap()[0].control_source, "B");
        assert!(ControlState::parse(&json!({"firmware_version": "1"})).is_empty());
    }
}
