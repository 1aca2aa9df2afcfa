//! A device: a gateway (dock, or the remote controller of DJI Pilot 2), an aircraft or a payload,
//! keyed by its serial number. Devices announce themselves (`update_topo`), are bound to a
//! workspace (by the dock's `airport_organization_bind` or through the API), go online and offline,
//! change firmware and raise HMS health alerts. Everything a device said is kept as events; values
//! this code does not know (a new model, an unknown HMS code) are kept as they came.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::protocol::topology::PayloadControl;

pub const AGGREGATE_TYPE: &str = "device";

/// domain-type-sub_type of a device model, as the protocol gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Model {
    pub domain: i64,
    #[serde(rename = "type")]
    pub kind: i64,
    pub sub_type: i64,
}

impl Model {
    pub fn key(&self) -> String {
        format!("{}-{}-{}", self.domain, self.kind, self.sub_type)
    }
}

/// One HMS entry as a device reported it (`hms` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HmsEntry {
    pub hms_id: String,
    pub tid: String,
    pub bid: String,
    pub level: i64,
    pub module: i64,
    /// DJI's message key (`dock_tip_0x…`, `fpv_tip_0x…[_in_the_sky]`).
    pub key: String,
    /// The whole entry as received (code, args, imminent, …).
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceCommand {
    /// The device is online (its own `update_topo`, or its gateway's listing it). A model or thing
    /// version the message lacked keeps the one the device has (a malformed `update_topo` never
    /// changes what a device is); a device never seen needs its model.
    ReportOnline {
        model: Option<Model>,
        thing_version: Option<String>,
        parent_sn: Option<String>,
        control_source: Option<String>,
    },
    /// The device spoke (any message): a known device that was offline is online again, as it was.
    ReportHeard,
    /// Who controls the aircraft and its payloads (state `control_source`, `payloads`).
    ReportControl {
        flight: Option<String>,
        payloads: Option<Vec<PayloadControl>>,
    },
    /// A gateway's current sub-devices (`update_topo`).
    ReportTopology {
        sub_devices: Vec<String>,
    },
    /// Silence, a gateway dropping it from its topology, or an explicit offline.
    ReportOffline {
        reason: String,
    },
    ReportFirmware {
        firmware_version: String,
    },
    /// A gateway's `live_capacity` state: which cameras of it and of its aircraft can stream.
    ReportLiveCapacity {
        capacity: serde_json::Value,
    },
    /// A dock's `flight_areas_sync_progress`: how far it got with the workspace's flight areas.
    ReportFlightAreaSync {
        status: String,
        reason: i64,
        file: serde_json::Value,
    },
    /// `by_user`: a person binds it (HTTP): the device must be online and not bound to another
    /// workspace. Otherwise the device binds itself (`airport_organization_bind`) or follows its
    /// dock.
    Bind {
        workspace_id: String,
        user_id: String,
        nickname: Option<String>,
        model: Option<Model>,
        by_user: bool,
    },
    /// The commands a user gives carry the user's workspace: a device of another workspace answers
    /// NotFound, exactly like one that does not exist.
    Unbind {
        workspace_id: String,
    },
    Update {
        workspace_id: String,
        nickname: Option<String>,
        device_desc: Option<String>,
    },
    ReportHms {
        entries: Vec<HmsEntry>,
    },
    MarkHmsRead {
        workspace_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceEvent {
    DeviceOnline {
        model: Model,
        thing_version: String,
        parent_sn: Option<String>,
        control_source: Option<String>,
    },
    TopologyChanged {
        sub_devices: Vec<String>,
    },
    DeviceOffline {
        reason: String,
    },
    FirmwareVersionChanged {
        firmware_version: String,
    },
    /// The gateway's live-stream capacity (`live_capacity` state), as it reported it.
    LiveCapacityChanged {
        capacity: serde_json::Value,
    },
    /// The dock's synchronisation of the workspace's flight areas (`status`: `wait_sync`,
    /// `switch_fail`, `synchronizing`, `synchronized`, `fail`; `reason` 0 when all is well).
    FlightAreaSyncReported {
        status: String,
        reason: i64,
        file: serde_json::Value,
    },
    DeviceBound {
        workspace_id: String,
        user_id: String,
        nickname: Option<String>,
        model: Option<Model>,
    },
    DeviceUnbound {
        workspace_id: String,
    },
    DeviceUpdated {
        nickname: Option<String>,
        device_desc: Option<String>,
    },
    HmsRaised {
        entries: Vec<HmsEntry>,
    },
    HmsRead,
    /// The flight controller changed (`"A"`: the dock or the RC's first pilot; `"B"`: the other).
    FlightControlChanged {
        control_source: String,
    },
    PayloadControlChanged {
        payloads: Vec<PayloadControl>,
    },
}
crate::domain_event!(DeviceEvent, "1.0", {
    DeviceOnline, TopologyChanged, DeviceOffline, FirmwareVersionChanged, DeviceBound, DeviceUnbound,
    DeviceUpdated, HmsRaised, HmsRead, FlightControlChanged, PayloadControlChanged, LiveCapacityChanged,
    FlightAreaSyncReported
});

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device not found.")]
    NotFound,
    #[error("The device is offline.")]
    Offline,
    #[error("The device is bound to another organization.")]
    BoundElsewhere,
    #[error("The device has not told its model yet.")]
    ModelUnknown,
}

impl crate::error::DjiCode for DeviceError {
    fn dji_code(&self) -> i64 {
        use crate::protocol::codes;
        match self {
            DeviceError::NotFound | DeviceError::ModelUnknown => codes::DEVICE_NOT_REGISTERED,
            DeviceError::Offline => codes::DEVICE_OFFLINE,
            DeviceError::BoundElsewhere => codes::BOUND_ELSEWHERE,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Device {
    known: bool,
    online: bool,
    model: Option<Model>,
    thing_version: String,
    parent_sn: Option<String>,
    control_source: Option<String>,
    sub_devices: Vec<String>,
    firmware_version: String,
    workspace_id: Option<String>,
    nickname: Option<String>,
    device_desc: Option<String>,
    unread_hms: Vec<String>,
    #[serde(default)]
    flight_control: Option<String>,
    #[serde(default)]
    payload_control: Vec<PayloadControl>,
    #[serde(default)]
    live_capacity: Option<serde_json::Value>,
    #[serde(default)]
    flight_area_sync: Option<(String, i64)>,
}

impl Device {
    /// The gateway it is connected through (its dock or remote controller), while it said.
    pub fn parent_sn(&self) -> Option<&str> {
        self.parent_sn.as_deref()
    }
    pub fn is_known(&self) -> bool {
        self.known
    }
    pub fn is_online(&self) -> bool {
        self.online
    }
    pub fn model(&self) -> Option<Model> {
        self.model
    }
    pub fn workspace_id(&self) -> Option<&str> {
        self.workspace_id.as_deref()
    }
    pub fn nickname(&self) -> Option<&str> {
        self.nickname.as_deref()
    }
    pub fn sub_devices(&self) -> &[String] {
        &self.sub_devices
    }
    /// Who controls the flight, as the device last said (`None` before it said).
    pub fn flight_control(&self) -> Option<&str> {
        self.flight_control.as_deref()
    }
    /// Who controls the payload at this index, as the device last said.
    pub fn payload_control(&self, payload_index: &str) -> Option<&str> {
        self.payload_control.iter().find(|p| p.payload_index == payload_index).map(|p| p.control_source.as_str())
    }

    /// Known to this workspace: bound to it. Another workspace's device reads as unknown.
    pub fn check_workspace(&self, workspace_id: &str) -> Result<(), DeviceError> {
        if self.workspace_id.as_deref() == Some(workspace_id) {
            Ok(())
        } else {
            Err(DeviceError::NotFound)
        }
    }
}

impl Aggregate for Device {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = DeviceCommand;
    type Event = DeviceEvent;
    type Error = DeviceError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            DeviceCommand::ReportOnline { model, thing_version, parent_sn, control_source } => {
                let model = model.or(self.model).ok_or(DeviceError::ModelUnknown)?;
                let thing_version = thing_version.unwrap_or_else(|| self.thing_version.clone());
                // repeated update_topo while online with nothing new is not a fact worth keeping
                let changed = !self.online
                    || self.model != Some(model)
                    || self.thing_version != thing_version
                    || self.parent_sn != parent_sn
                    || self.control_source != control_source;
                if changed {
                    sink.write(DeviceEvent::DeviceOnline { model, thing_version, parent_sn, control_source }, self)
                        .await;
                }
            }
            DeviceCommand::ReportHeard => {
                if let (false, Some(model)) = (self.online, self.model) {
                    let event = DeviceEvent::DeviceOnline {
                        model,
                        thing_version: self.thing_version.clone(),
                        parent_sn: self.parent_sn.clone(),
                        control_source: self.control_source.clone(),
                    };
                    sink.write(event, self).await;
                }
            }
            DeviceCommand::ReportControl { flight, payloads } => {
                if let Some(control_source) = flight.filter(|f| self.flight_control.as_ref() != Some(f)) {
                    sink.write(DeviceEvent::FlightControlChanged { control_source }, self).await;
                }
                if let Some(payloads) = payloads.filter(|p| *p != self.payload_control) {
                    sink.write(DeviceEvent::PayloadControlChanged { payloads }, self).await;
                }
            }
            DeviceCommand::ReportTopology { mut sub_devices } => {
                sub_devices.sort();
                sub_devices.dedup();
                if sub_devices != self.sub_devices {
                    sink.write(DeviceEvent::TopologyChanged { sub_devices }, self).await;
                }
            }
            DeviceCommand::ReportOffline { reason } => {
                if self.online {
                    sink.write(DeviceEvent::DeviceOffline { reason }, self).await;
                }
            }
            DeviceCommand::ReportFirmware { firmware_version } => {
                if firmware_version != self.firmware_version {
                    sink.write(DeviceEvent::FirmwareVersionChanged { firmware_version }, self).await;
                }
            }
            DeviceCommand::ReportFlightAreaSync { status, reason, file } => {
                if self.flight_area_sync.as_ref() != Some(&(status.clone(), reason)) {
                    sink.write(DeviceEvent::FlightAreaSyncReported { status, reason, file }, self).await;
                }
            }
            DeviceCommand::ReportLiveCapacity { capacity } => {
                if self.live_capacity.as_ref() != Some(&capacity) {
                    sink.write(DeviceEvent::LiveCapacityChanged { capacity }, self).await;
                }
            }
            DeviceCommand::Bind { workspace_id, user_id, nickname, model, by_user } => {
                if !self.known && model.is_none() {
                    return Err(DeviceError::NotFound);
                }
                if by_user {
                    if !self.online {
                        return Err(DeviceError::Offline);
                    }
                    if self.workspace_id.as_deref().is_some_and(|w| w != workspace_id) {
                        return Err(DeviceError::BoundElsewhere);
                    }
                }
                if self.workspace_id.as_deref() == Some(workspace_id.as_str())
                    && (nickname.is_none() || nickname == self.nickname)
                {
                    return Ok(());
                }
                sink.write(DeviceEvent::DeviceBound { workspace_id, user_id, nickname, model }, self).await;
            }
            DeviceCommand::Unbind { workspace_id } => {
                self.check_workspace(&workspace_id)?;
                sink.write(DeviceEvent::DeviceUnbound { workspace_id }, self).await;
            }
            DeviceCommand::Update { workspace_id, nickname, device_desc } => {
                self.check_workspace(&workspace_id)?;
                let nickname = nickname.filter(|n| Some(n) != self.nickname.as_ref());
                let device_desc = device_desc.filter(|d| Some(d) != self.device_desc.as_ref());
                if nickname.is_some() || device_desc.is_some() {
                    sink.write(DeviceEvent::DeviceUpdated { nickname, device_desc }, self).await;
                }
            }
            DeviceCommand::ReportHms { entries } => {
                // a device repeats its active alerts; only alerts not already unread are new
                let new: Vec<HmsEntry> = entries.into_iter().filter(|e| !self.unread_hms.contains(&e.key)).collect();
                if !new.is_empty() {
                    sink.write(DeviceEvent::HmsRaised { entries: new }, self).await;
                }
            }
            DeviceCommand::MarkHmsRead { workspace_id } => {
                self.check_workspace(&workspace_id)?;
                if !self.unread_hms.is_empty() {
                    sink.write(DeviceEvent::HmsRead, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DeviceEvent::DeviceOnline { model, thing_version, parent_sn, control_source } => {
                self.known = true;
                self.online = true;
                self.model = Some(model);
                self.thing_version = thing_version;
                self.parent_sn = parent_sn;
                self.control_source = control_source;
            }
            DeviceEvent::TopologyChanged { sub_devices } => self.sub_devices = sub_devices,
            DeviceEvent::DeviceOffline { .. } => self.online = false,
            DeviceEvent::FirmwareVersionChanged { firmware_version } => self.firmware_version = firmware_version,
            DeviceEvent::LiveCapacityChanged { capacity } => self.live_capacity = Some(capacity),
            DeviceEvent::FlightAreaSyncReported { status, reason, .. } => {
                self.flight_area_sync = Some((status, reason))
            }
            DeviceEvent::DeviceBound { workspace_id, nickname, model, .. } => {
                self.known = true;
                self.workspace_id = Some(workspace_id);
                if nickname.is_some() {
                    self.nickname = nickname;
                }
                if self.model.is_none() {
                    self.model = model;
                }
            }
            DeviceEvent::DeviceUnbound { .. } => self.workspace_id = None,
            DeviceEvent::DeviceUpdated { nickname, device_desc } => {
                if nickname.is_some() {
                    self.nickname = nickname;
                }
                if device_desc.is_some() {
                    self.device_desc = device_desc;
                }
            }
            DeviceEvent::HmsRaised { entries } => self.unread_hms.extend(entries.into_iter().map(|e| e.key)),
            DeviceEvent::HmsRead => self.unread_hms.clear(),
            DeviceEvent::FlightControlChanged { control_source } => self.flight_control = Some(control_source),
            DeviceEvent::PayloadControlChanged { payloads } => self.payload_control = payloads,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    const DOCK2: Model = Model { domain: 3, kind: 2, sub_type: 0 };

    fn online() -> DeviceEvent {
        DeviceEvent::DeviceOnline { model: DOCK2, thing_version: "1.2.0".into(), parent_sn: None, control_source: None }
    }

    fn report_online() -> DeviceCommand {
        DeviceCommand::ReportOnline {
            model: Some(DOCK2),
            thing_version: Some("1.2.0".into()),
            parent_sn: None,
            control_source: None,
        }
    }

    fn hms(key: &str) -> HmsEntry {
        HmsEntry {
            hms_id: format!("id-{key}"),
            tid: "t".into(),
            bid: "b".into(),
            level: 2,
            module: 3,
            key: key.into(),
            raw: serde_json::json!({}),
        }
    }

    #[test]
    fn first_topology_brings_the_device_online() {
        TestFramework::<Device>::with(())
            .given_no_previous_events()
            .when(report_online())
            .then_expect_events(vec![online()]);
    }

    #[test]
    fn repeated_topology_while_online_records_nothing() {
        TestFramework::<Device>::with(()).given(vec![online()]).when(report_online()).then_expect_events(vec![]);
    }

    #[test]
    fn a_new_firmware_thing_version_is_recorded() {
        let cmd = DeviceCommand::ReportOnline {
            model: Some(DOCK2),
            thing_version: Some("1.3.0".into()),
            parent_sn: None,
            control_source: None,
        };
        TestFramework::<Device>::with(()).given(vec![online()]).when(cmd).then_expect_events(vec![
            DeviceEvent::DeviceOnline {
                model: DOCK2,
                thing_version: "1.3.0".into(),
                parent_sn: None,
                control_source: None,
            },
        ]);
    }

    #[test]
    fn offline_only_once() {
        let off = DeviceEvent::DeviceOffline { reason: "silent".into() };
        TestFramework::<Device>::with(())
            .given(vec![online(), off])
            .when(DeviceCommand::ReportOffline { reason: "silent".into() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn binding_an_unknown_device_needs_its_model() {
        let bind = DeviceCommand::Bind {
            workspace_id: "w".into(),
            user_id: "u".into(),
            nickname: None,
            model: None,
            by_user: true,
        };
        TestFramework::<Device>::with(())
            .given_no_previous_events()
            .when(bind)
            .then_expect_error_message("device not found.");
    }

    #[test]
    fn another_workspace_cannot_touch_the_device() {
        let bound =
            DeviceEvent::DeviceBound { workspace_id: "w".into(), user_id: "u".into(), nickname: None, model: None };
        TestFramework::<Device>::with(())
            .given(vec![online(), bound])
            .when(DeviceCommand::Update { workspace_id: "v".into(), nickname: Some("x".into()), device_desc: None })
            .then_expect_error_message("device not found.");
    }

    #[test]
    fn hms_already_unread_is_not_raised_again_until_read() {
        TestFramework::<Device>::with(())
            .given(vec![online(), DeviceEvent::HmsRaised { entries: vec![hms("a")] }])
            .when(DeviceCommand::ReportHms { entries: vec![hms("a"), hms("b")] })
            .then_expect_events(vec![DeviceEvent::HmsRaised { entries: vec![hms("b")] }]);
        TestFramework::<Device>::with(())
            .given(vec![online(), DeviceEvent::HmsRaised { entries: vec![hms("a")] }, DeviceEvent::HmsRead])
            .when(DeviceCommand::ReportHms { entries: vec![hms("a")] })
            .then_expect_events(vec![DeviceEvent::HmsRaised { entries: vec![hms("a")] }]);
    }

    #[test]
    fn unbind_remembers_the_workspace_it_left() {
        TestFramework::<Device>::with(())
            .given(vec![
                online(),
                DeviceEvent::DeviceBound { workspace_id: "w".into(), user_id: "u".into(), nickname: None, model: None },
            ])
            .when(DeviceCommand::Unbind { workspace_id: "w".into() })
            .then_expect_events(vec![DeviceEvent::DeviceUnbound { workspace_id: "w".into() }]);
    }

    #[test]
    fn a_message_without_model_changes_nothing_of_a_known_device() {
        let partial =
            DeviceCommand::ReportOnline { model: None, thing_version: None, parent_sn: None, control_source: None };
        TestFramework::<Device>::with(()).given(vec![online()]).when(partial.clone()).then_expect_events(vec![]);
        TestFramework::<Device>::with(())
            .given_no_previous_events()
            .when(partial)
            .then_expect_error_message("The device has not told its model yet.");
    }

    #[test]
    fn a_device_heard_again_is_online_as_it_was() {
        let off = DeviceEvent::DeviceOffline { reason: "silent".into() };
        TestFramework::<Device>::with(())
            .given(vec![online(), off])
            .when(DeviceCommand::ReportHeard)
            .then_expect_events(vec![online()]);
        TestFramework::<Device>::with(())
            .given(vec![online()])
            .when(DeviceCommand::ReportHeard)
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_person_binds_only_an_online_device_of_no_other_workspace() {
        let bind = |ws: &str| DeviceCommand::Bind {
            workspace_id: ws.into(),
            user_id: "u".into(),
            nickname: None,
            model: None,
            by_user: true,
        };
        let off = DeviceEvent::DeviceOffline { reason: "silent".into() };
        TestFramework::<Device>::with(())
            .given(vec![online(), off])
            .when(bind("w"))
            .then_expect_error_message("The device is offline.");
        let bound =
            DeviceEvent::DeviceBound { workspace_id: "w".into(), user_id: "u".into(), nickname: None, model: None };
        TestFramework::<Device>::with(())
            .given(vec![online(), bound])
            .when(bind("v"))
            .then_expect_error_message("The device is bound to another organization.");
    }

    #[test]
    fn control_changes_are_recorded_when_they_change() {
        let cmd = || DeviceCommand::ReportControl { flight: Some("A".into()), payloads: None };
        TestFramework::<Device>::with(())
            .given(vec![online()])
            .when(cmd())
            .then_expect_events(vec![DeviceEvent::FlightControlChanged { control_source: "A".into() }]);
        TestFramework::<Device>::with(())
            .given(vec![online(), DeviceEvent::FlightControlChanged { control_source: "A".into() }])
            .when(cmd())
            .then_expect_events(vec![]);
    }
}
