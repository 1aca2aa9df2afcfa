//! `thing/product/{gw}/requests` (reference `mqtt-protocol.md` §5): what a device asks, read
//! leniently (missing fields are empty, unknown fields are kept, a body of the wrong shape reads as
//! an empty request that is answered, never dropped).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Reads a request's `data`; a body of the wrong shape reads as the empty request.
pub fn parse<T: DeserializeOwned + Default>(data: &Value) -> T {
    serde_json::from_value(data.clone()).unwrap_or_default()
}

/// A device named in a request.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeviceSn {
    pub sn: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `airport_bind_status` (§5.1).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct BindStatus {
    pub devices: Vec<DeviceSn>,
}

/// `airport_organization_get` (§5.2).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct OrganizationGet {
    pub device_binding_code: String,
    pub organization_id: String,
}

/// One device of `airport_organization_bind` (§5.3).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct BindDevice {
    pub sn: String,
    pub device_binding_code: String,
    pub organization_id: String,
    pub device_callsign: String,
    /// `"<domain>-<type>-<sub_type>"`.
    pub device_model_key: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `airport_organization_bind` (§5.3).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct OrganizationBind {
    pub bind_devices: Vec<BindDevice>,
}

/// `config` (§5.4).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConfigRequest {
    pub config_scope: Option<String>,
    pub config_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_read_leniently() {
        let b: OrganizationBind =
            parse(&json!({"bind_devices": [{"sn": "D", "device_binding_code": "qwe", "extra": 1}]}));
        assert_eq!((b.bind_devices[0].sn.as_str(), b.bind_devices[0].device_model_key.as_str()), ("D", ""));
        assert_eq!(b.bind_devices[0].other["extra"], 1);
        assert_eq!(parse::<OrganizationBind>(&json!("")), OrganizationBind::default());
        assert_eq!(parse::<BindStatus>(&json!({"devices": "x"})), BindStatus::default());
        assert_eq!(parse::<OrganizationGet>(&json!({"device_binding_code": "qwe"})).device_binding_code, "qwe");
    }
}
