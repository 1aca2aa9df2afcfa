//! `thing/product/{gw}/services` (down) and `services_reply` (up), `property/set` and
//! `property/set_reply` (reference `mqtt-protocol.md` §9–10): the methods Hangar sends, the shape
//! of their data, and the replies read leniently.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::as_i64;

/// Where a command goes: `services` (every method) or `property/set` (no method, one property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandTopic {
    Services,
    PropertySet,
}

impl CommandTopic {
    pub fn topic(self, gateway_sn: &str) -> String {
        match self {
            CommandTopic::Services => super::thing_topic(gateway_sn, "services"),
            CommandTopic::PropertySet => super::thing_topic(gateway_sn, "property/set"),
        }
    }

    /// The kind token of the DEVICE_OUT subject.
    pub fn kind(self) -> &'static str {
        match self {
            CommandTopic::Services => "services",
            CommandTopic::PropertySet => "property_set",
        }
    }
}

/// How a remote-debug method (`POST /control/api/v1/devices/{sn}/jobs/{service_identifier}`,
/// reference `http-api.md` §6.1) takes the body's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionArg {
    /// No parameters: `data` is `""`.
    None,
    /// `{action}` with one of the allowed values.
    Action(&'static [i64]),
    /// `{link_workmode: action}` (`sdr_workmode_switch`).
    LinkWorkmode,
}

/// The dock's remote-debug methods and what they take. `device_format` and `drone_format` erase
/// storage and are sent only where the configuration allows ([`DESTRUCTIVE`]).
pub const REMOTE_DEBUG: &[(&str, ActionArg)] = &[
    ("debug_mode_open", ActionArg::None),
    ("debug_mode_close", ActionArg::None),
    ("supplement_light_open", ActionArg::None),
    ("supplement_light_close", ActionArg::None),
    ("return_home", ActionArg::None),
    ("return_home_cancel", ActionArg::None),
    ("device_reboot", ActionArg::None),
    ("drone_open", ActionArg::None),
    ("drone_close", ActionArg::None),
    ("drone_format", ActionArg::None),
    ("device_format", ActionArg::None),
    ("cover_open", ActionArg::None),
    ("cover_close", ActionArg::None),
    // Dock 2's protocol; DJI's demo does not know it, docks do
    ("cover_force_close", ActionArg::None),
    ("putter_open", ActionArg::None),
    ("putter_close", ActionArg::None),
    ("charge_open", ActionArg::None),
    ("charge_close", ActionArg::None),
    ("battery_maintenance_switch", ActionArg::Action(&[0, 1])),
    ("alarm_state_switch", ActionArg::Action(&[0, 1])),
    ("battery_store_mode_switch", ActionArg::Action(&[1, 2])),
    ("sdr_workmode_switch", ActionArg::LinkWorkmode),
    ("air_conditioner_mode_switch", ActionArg::Action(&[0, 1, 2, 3])),
];

/// Methods that erase data on the device.
pub const DESTRUCTIVE: &[&str] = &["device_format", "drone_format"];

/// Methods whose progress comes back as events with the same name (reference §8): pushed to the
/// web client with `biz_code` = method.
pub const REMOTE_DEBUG_PROGRESS: &[&str] = &[
    "device_reboot",
    "drone_open",
    "drone_close",
    "drone_format",
    "device_format",
    "cover_open",
    "cover_close",
    "cover_force_close",
    "putter_open",
    "putter_close",
    "charge_open",
    "charge_close",
    "esim_activate",
    "esim_operator_switch",
];

/// Firmware upgrade progress (`ota_create`), recorded and pushed under its own name.
pub const UPGRADE_PROGRESS: &[&str] = &["ota_progress"];

/// Flight-control notifications recorded and pushed under their own name.
pub const FLIGHT_NOTIFICATIONS: &[&str] = &[
    "fly_to_point_progress",
    "takeoff_to_point_progress",
    "return_home_info",
    "device_exit_homing_notify",
    "drc_status_notify",
    "joystick_invalid_notify",
];

/// The `data` of a remote-debug command, or why the body does not fit it.
pub fn remote_debug_data(method: &str, action: Option<i64>) -> Result<Value, String> {
    let Some((_, arg)) = REMOTE_DEBUG.iter().find(|(m, _)| *m == method) else {
        return Err(format!("{method} is not a remote-debug method of the dock."));
    };
    match (arg, action) {
        (ActionArg::None, _) => Ok(Value::String(String::new())),
        (ActionArg::Action(allowed), Some(a)) if allowed.contains(&a) => Ok(serde_json::json!({ "action": a })),
        (ActionArg::LinkWorkmode, Some(a @ (0 | 1))) => Ok(serde_json::json!({ "link_workmode": a })),
        (ActionArg::Action(allowed), _) => Err(format!("action must be one of {allowed:?} for {method}.")),
        (ActionArg::LinkWorkmode, _) => Err(format!("action must be 0 (SDR only) or 1 (SDR + 4G) for {method}.")),
    }
}

/// Payload commands of the dock (reference §6.7 and §9.4), sent 1:1 as MQTT methods.
pub const PAYLOAD_COMMANDS: &[&str] = &[
    "camera_mode_switch",
    "camera_photo_take",
    "camera_photo_stop",
    "camera_recording_start",
    "camera_recording_stop",
    "camera_aim",
    "camera_focal_length_set",
    "gimbal_reset",
    "camera_look_at",
    "camera_screen_split",
    "photo_storage_set",
    "video_storage_set",
    "camera_exposure_mode_set",
    "camera_exposure_set",
    "camera_focus_mode_set",
    "camera_focus_value_set",
    "ir_metering_mode_set",
    "ir_metering_point_set",
    "ir_metering_area_set",
    "camera_point_focus_action",
];

/// A `services_reply` or `property/set_reply`, read leniently: `result` may be a number or a
/// numeric string; some devices put the output in `info`, `fileupload_list` answers `files`
/// directly under `data`, and `property/set_reply` nests `{<property>: {result}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// `None` when the device answered without any result.
    pub result: Option<i64>,
    pub output: Value,
}

impl Reply {
    pub fn from_data(data: &Value) -> Self {
        let result = data.get("result").and_then(as_i64).or_else(|| first_result(data));
        let output = data
            .get("output")
            .or_else(|| data.get("info"))
            .cloned()
            .or_else(|| data.get("files").map(|f| serde_json::json!({ "files": f })))
            .unwrap_or(Value::Null);
        Self { result, output }
    }
}

/// The first `result` anywhere in a property set reply (DJI's demo reads it the same way).
fn first_result(v: &Value) -> Option<i64> {
    match v {
        Value::Object(m) => m.get("result").and_then(as_i64).or_else(|| m.values().find_map(first_result)),
        _ => None,
    }
}

/// A property set is sent one message per sub-field for nested objects (reference §10:
/// `{distance_limit_status: {state: 1}}`, then `{distance_limit_status: {distance_limit: 500}}`).
pub fn property_messages(key: &str, value: &Value) -> Vec<Value> {
    match value {
        Value::Object(fields) if !fields.is_empty() => fields
            .iter()
            .map(|(k, v)| {
                let mut inner = Map::new();
                inner.insert(k.clone(), v.clone());
                let mut outer = Map::new();
                outer.insert(key.to_string(), Value::Object(inner));
                Value::Object(outer)
            })
            .collect(),
        other => {
            let mut outer = Map::new();
            outer.insert(key.to_string(), other.clone());
            vec![Value::Object(outer)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remote_debug_bodies() {
        assert_eq!(remote_debug_data("cover_open", None), Ok(json!("")));
        assert_eq!(remote_debug_data("alarm_state_switch", Some(1)), Ok(json!({"action": 1})));
        assert_eq!(remote_debug_data("sdr_workmode_switch", Some(1)), Ok(json!({"link_workmode": 1})));
        assert!(remote_debug_data("battery_store_mode_switch", Some(0)).is_err());
        assert!(remote_debug_data("alarm_state_switch", None).is_err());
        assert!(remote_debug_data("format_everything", None).is_err());
    }

    #[test]
    fn replies_are_read_leniently() {
        assert_eq!(Reply::from_data(&json!({"result": "0", "output": {"status": "ok"}})).result, Some(0));
        assert_eq!(Reply::from_data(&json!({"result": 1, "info": {"a": 1}})).output, json!({"a": 1}));
        assert_eq!(Reply::from_data(&json!({"height_limit": {"result": 2}})).result, Some(2));
        assert_eq!(Reply::from_data(&json!({"result": 0, "files": []})).output, json!({"files": []}));
        assert_eq!(Reply::from_data(&json!("")).result, None);
    }

    #[test]
    fn nested_properties_go_one_field_at_a_time() {
        let m = property_messages("distance_limit_status", &json!({"state": 1, "distance_limit": 500}));
        assert_eq!(m.len(), 2);
        assert!(m.contains(&json!({"distance_limit_status": {"state": 1}})));
        assert_eq!(property_messages("height_limit", &json!(120)), vec![json!({"height_limit": 120})]);
    }
}
