//! DJI result codes: the ones Hangar answers with itself (reference `http-api.md` §0.5) and the
//! families devices answer with (`mqtt-protocol.md` §9), with the text a person reads.

/// Success, on the wire and in the HTTP envelope.
pub const OK: i64 = 0;
/// Generic failure (`failed` or a specific text).
pub const FAILED: i64 = -1;
/// Login refused: unknown user, wrong password or workspace.
pub const LOGIN_REFUSED: i64 = 401;
/// An argument is missing or out of range (requests from devices: `illegal argument`).
pub const ILLEGAL_ARGUMENT: i64 = 200001;
/// The binding code names no workspace (`airport_organization_get`).
pub const ORGANIZATION_NOT_FOUND: i64 = 210230;
/// A device could not be bound (`airport_organization_bind`).
pub const BIND_FAILED: i64 = 210231;
/// The device is bound to another workspace.
pub const BOUND_ELSEWHERE: i64 = 210232;
/// The device is not known to this workspace (never seen, or bound to another one).
pub const DEVICE_NOT_REGISTERED: i64 = 210001;
/// A parameter of a device command is invalid.
pub const INVALID_PARAMETER: i64 = 210002;
/// The device (or this installation) does not support the function.
pub const UNSUPPORTED: i64 = 210003;
/// No `services_reply` (or `property/set_reply`) arrived in time.
pub const NO_REPLY: i64 = 211001;
/// The device is offline.
pub const DEVICE_OFFLINE: i64 = 212015;
/// Object storage could not hand out credentials.
pub const SYSTEM_ERROR: i64 = 600500;
/// Live streaming: the aircraft (or dock) of a `video_id` is not known to the workspace.
pub const LIVE_NO_AIRCRAFT: i64 = 13001;
/// Live streaming: the device has no gateway online to ask.
pub const LIVE_NO_GATEWAY: i64 = 13007;
/// Live streaming: this way of streaming (`url_type`) is not available.
pub const LIVE_URL_TYPE_UNSUPPORTED: i64 = 13013;
/// Live streaming: a parameter (`video_id`, `video_quality`, …) is missing or wrong.
pub const LIVE_BAD_PARAMETER: i64 = 13014;

/// `property/set_reply` results (reference §10).
pub const PROPERTY_SET_FAILED: i64 = 1;
pub const PROPERTY_SET_TIMEOUT: i64 = 2;

/// The text for a result a device answered with: DJI's meaning for the codes the references name,
/// otherwise the code's family and the part of the system that raised it.
pub fn device_error_text(code: i64) -> String {
    if let Some(text) = known(code) {
        return format!("{text} (device error {code})");
    }
    let family = match code {
        13000..=13999 => Some("Live streaming failed"),
        314000..=324999 => Some("The flight task could not be carried out"),
        326000..=326999 => Some("The cellular dongle reported an error"),
        327000..=327999 => Some("The flight or payload control command was refused"),
        514100..=514199 => Some("The dock could not carry out the command"),
        514300..=514399 => Some("Remote control (DRC) failed"),
        _ => None,
    };
    // Codes of six digits and more carry their source in the first digit.
    let source = match code / 100_000 {
        3 => " by the aircraft",
        5 => " by the dock",
        6 => " by DJI Pilot 2",
        _ => "",
    };
    match family {
        Some(f) => format!("{f} (error {code} reported{source})."),
        None => format!("The device answered with error {code}{source}."),
    }
}

fn known(code: i64) -> Option<&'static str> {
    Some(match code {
        13001 => "No aircraft is connected",
        13002 => "The camera is not found",
        13003 => "The video is already streaming",
        13004 => "Live streaming is not supported by this device",
        13013 => "The URL type is not supported",
        13014 => "Live streaming parameters are invalid",
        314000 => "The device is busy uploading logs or flying a task",
        319001 => "The dock is not idle",
        319016 => "The dock is performing another task",
        319033 => "Remote control commands arrived out of order",
        319034 => "Remote control timed out",
        319045 => "Remote control is paused",
        324030 => "Media upload priority could not be changed: the task has no media",
        324031 => "Media upload priority could not be changed: the task is not found",
        324032 => "Media upload priority could not be changed: uploading is in progress",
        514300 => "Remote control (DRC) failed to connect",
        514301 => "Remote control (DRC) heartbeat timed out",
        514302 => "Remote control (DRC) certificate is invalid",
        514303 => "Remote control (DRC) lost the connection",
        514304 => "Remote control (DRC) was refused",
        _ => return None,
    })
}

/// The text for a `property/set_reply` result other than success.
pub fn property_set_text(result: i64) -> String {
    match result {
        PROPERTY_SET_FAILED => "The device could not set the property.".into(),
        PROPERTY_SET_TIMEOUT => "The device timed out setting the property.".into(),
        other => device_error_text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_code_and_its_source() {
        assert_eq!(device_error_text(319001), "The dock is not idle (device error 319001)");
        assert!(device_error_text(514185).contains("dock could not carry out"));
        assert!(device_error_text(514185).contains("by the dock"));
        assert_eq!(device_error_text(42), "The device answered with error 42.");
        assert!(property_set_text(2).contains("timed out"));
    }
}
