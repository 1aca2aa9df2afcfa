//! The DJI topics the bridge knows: which ones it subscribes to, how a topic names its device and
//! its kind, and which methods DJI defines per kind (only to warn about new firmware, never to
//! filter).

/// What a device topic carries; the kind is the last token of the JetStream subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `sys/product/{gw}/status`: topology (`update_topo`).
    Status,
    /// `thing/product/{sn}/osd`: periodic telemetry.
    Osd,
    /// `thing/product/{sn}/state`: property changes.
    State,
    /// `thing/product/{sn}/events`: progress, HMS, notifications.
    Events,
    /// `thing/product/{gw}/requests`: the device asks, the cloud must answer.
    Requests,
    /// `thing/product/{gw}/services_reply`: answers to commands.
    ServicesReply,
    /// `thing/product/{gw}/property/set_reply`: answers to property changes.
    PropertySetReply,
    /// Anything else (an extra subscription, new firmware): kept raw all the same.
    Unknown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Osd => "osd",
            Kind::State => "state",
            Kind::Events => "events",
            Kind::Requests => "requests",
            Kind::ServicesReply => "services_reply",
            Kind::PropertySetReply => "property_set_reply",
            Kind::Unknown => "unknown",
        }
    }

    /// Telemetry goes to the short-lived TELEMETRY stream; everything else to DEVICE_IN.
    pub fn is_telemetry(self) -> bool {
        matches!(self, Kind::Osd | Kind::State)
    }

    /// Methods DJI defines for this kind (protocol reference §12); `None` when the kind has no
    /// `method` field or the bridge does not know the topic.
    fn known_methods(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::Status => Some(&["update_topo"]),
            Kind::Events => Some(EVENT_METHODS),
            Kind::Requests => Some(REQUEST_METHODS),
            Kind::ServicesReply => Some(SERVICE_METHODS),
            Kind::Osd | Kind::State | Kind::PropertySetReply | Kind::Unknown => None,
        }
    }

    /// Whether a method is one DJI documents for this kind. Kinds without methods accept anything.
    pub fn knows_method(self, method: &str) -> bool {
        self.known_methods().is_none_or(|known| known.contains(&method))
    }
}

/// A device topic taken apart: the serial number in its `+` segment and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopic<'a> {
    pub sn: &'a str,
    pub kind: Kind,
}

/// Serial number used for topics that do not have the `<x>/product/<sn>/…` shape.
pub const NO_SN: &str = "_";

/// Parses a topic the broker delivered. Never fails: an unexpected topic is `Kind::Unknown`, with
/// the serial number taken from the usual position when there is one.
pub fn parse(topic: &str) -> DeviceTopic<'_> {
    use shared::protocol::{Topic, TopicKind};
    // what a topic means is the protocol's (shared with the device inbox); the bridge only adds
    // which kinds it carries and where they go
    // a device topic with an empty serial is still the same kind of message; carry it as such
    let probe: std::borrow::Cow<str> = if topic.contains("/product//") {
        topic.replacen("/product//", &format!("/product/{NO_SN}/"), 1).into()
    } else {
        topic.into()
    };
    let kind = match Topic::parse(&probe).map(|t| t.kind) {
        Some(TopicKind::Status) => Kind::Status,
        Some(TopicKind::Osd) => Kind::Osd,
        Some(TopicKind::State) => Kind::State,
        Some(TopicKind::Events) => Kind::Events,
        Some(TopicKind::Requests) => Kind::Requests,
        Some(TopicKind::ServicesReply) => Kind::ServicesReply,
        Some(TopicKind::PropertySetReply) => Kind::PropertySetReply,
        // down-topics (services, property/set) and anything new are carried raw
        _ => Kind::Unknown,
    };
    let sn = match topic.split('/').collect::<Vec<_>>().as_slice() {
        [_, "product", sn, _, ..] => sn,
        _ => NO_SN,
    };
    DeviceTopic { sn, kind }
}

/// The topic filters the bridge subscribes to, through the shared-subscription group so that
/// replicas split the traffic (an empty group subscribes plainly, for brokers without `$share`).
pub fn subscriptions(share_group: &str, extra: &[String]) -> Vec<String> {
    let base = [
        "sys/product/+/status",
        "thing/product/+/osd",
        "thing/product/+/state",
        "thing/product/+/events",
        "thing/product/+/requests",
        "thing/product/+/services_reply",
        "thing/product/+/property/set_reply",
    ];
    let filters = base.iter().map(|s| s.to_string()).chain(extra.iter().map(|s| s.trim().to_string()));
    filters
        .filter(|f| !f.is_empty())
        .map(|f| if share_group.is_empty() { f } else { format!("$share/{share_group}/{f}") })
        .collect()
}

/// Whether a topic can be published to (no wildcards, not empty).
pub fn publishable(topic: &str) -> bool {
    rumqttc::valid_topic(topic) && !topic.is_empty()
}

const REQUEST_METHODS: &[&str] = &[
    "airport_bind_status",
    "airport_organization_get",
    "airport_organization_bind",
    "config",
    "storage_config_get",
    "flighttask_resource_get",
    "flight_areas_get",
    "offline_map_get",
];

const EVENT_METHODS: &[&str] = &[
    "flighttask_progress",
    "flighttask_ready",
    "device_exit_homing_notify",
    "return_home_info",
    "file_upload_callback",
    "highest_priority_upload_flighttask_media",
    "hms",
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
    "ota_progress",
    "fileupload_progress",
    "fly_to_point_progress",
    "takeoff_to_point_progress",
    "drc_status_notify",
    "joystick_invalid_notify",
    "flight_areas_sync_progress",
    "flight_areas_drone_location",
    "airsense_warning",
    "custom_data_transmission_from_esdk",
    "custom_data_transmission_from_psdk",
    "offline_map_sync_progress",
    "poi_status_notify",
    "camera_photo_take_progress",
];

const SERVICE_METHODS: &[&str] = &[
    "flighttask_create",
    "flighttask_prepare",
    "flighttask_execute",
    "flighttask_undo",
    "flighttask_pause",
    "flighttask_recovery",
    "return_home",
    "return_home_cancel",
    "upload_flighttask_media_prioritize",
    "debug_mode_open",
    "debug_mode_close",
    "supplement_light_open",
    "supplement_light_close",
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
    "battery_maintenance_switch",
    "alarm_state_switch",
    "battery_store_mode_switch",
    "sdr_workmode_switch",
    "air_conditioner_mode_switch",
    "esim_activate",
    "sim_slot_switch",
    "esim_operator_switch",
    "flight_authority_grab",
    "payload_authority_grab",
    "drc_mode_enter",
    "drc_mode_exit",
    "fly_to_point",
    "fly_to_point_stop",
    "fly_to_point_update",
    "takeoff_to_point",
    "poi_mode_enter",
    "poi_mode_exit",
    "poi_circle_speed_set",
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
    "camera_exposure_set",
    "camera_exposure_mode_set",
    "camera_focus_mode_set",
    "camera_focus_value_set",
    "ir_metering_mode_set",
    "ir_metering_point_set",
    "ir_metering_area_set",
    "camera_point_focus_action",
    "live_start_push",
    "live_stop_push",
    "live_set_quality",
    "live_lens_change",
    "fileupload_list",
    "fileupload_start",
    "fileupload_update",
    "ota_create",
    "flight_areas_update",
    "offline_map_update",
    "custom_data_transmission_to_esdk",
    "custom_data_transmission_to_psdk",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_topics() {
        let cases = [
            ("sys/product/4TADK1/status", "4TADK1", Kind::Status),
            ("thing/product/1581F5/osd", "1581F5", Kind::Osd),
            ("thing/product/1581F5/state", "1581F5", Kind::State),
            ("thing/product/4TADK1/events", "4TADK1", Kind::Events),
            ("thing/product/4TADK1/requests", "4TADK1", Kind::Requests),
            ("thing/product/4TADK1/services_reply", "4TADK1", Kind::ServicesReply),
            ("thing/product/4TADK1/property/set_reply", "4TADK1", Kind::PropertySetReply),
        ];
        for (topic, sn, kind) in cases {
            assert_eq!(parse(topic), DeviceTopic { sn, kind }, "{topic}");
        }
    }

    #[test]
    fn unexpected_topics_are_unknown_not_errors() {
        assert_eq!(parse("thing/product/X/drc/up"), DeviceTopic { sn: "X", kind: Kind::Unknown });
        assert_eq!(parse("thing/product/X/osd/extra"), DeviceTopic { sn: "X", kind: Kind::Unknown });
        assert_eq!(parse("sys/product/X/status_reply"), DeviceTopic { sn: "X", kind: Kind::Unknown });
        assert_eq!(parse("hello"), DeviceTopic { sn: NO_SN, kind: Kind::Unknown });
        assert_eq!(parse(""), DeviceTopic { sn: NO_SN, kind: Kind::Unknown });
        assert_eq!(parse("thing/product//osd"), DeviceTopic { sn: "", kind: Kind::Osd });
    }

    #[test]
    fn shared_subscriptions() {
        let subs = subscriptions("hangar", &["thing/product/+/drc/up".into(), " ".into()]);
        assert_eq!(subs.len(), 8);
        assert_eq!(subs[0], "$share/hangar/sys/product/+/status");
        assert_eq!(subs[6], "$share/hangar/thing/product/+/property/set_reply");
        assert_eq!(subs[7], "$share/hangar/thing/product/+/drc/up");
        assert_eq!(subscriptions("", &[])[1], "thing/product/+/osd");
    }

    #[test]
    fn methods_per_kind() {
        assert!(Kind::Events.knows_method("hms"));
        assert!(!Kind::Events.knows_method("brand_new_event"));
        assert!(Kind::Requests.knows_method("config"));
        assert!(Kind::ServicesReply.knows_method("cover_open"));
        assert!(Kind::Osd.knows_method("anything"));
    }

    #[test]
    fn publishable_topics() {
        assert!(publishable("thing/product/X/services"));
        assert!(!publishable("thing/product/+/services"));
        assert!(!publishable("thing/#"));
        assert!(!publishable(""));
    }
}
