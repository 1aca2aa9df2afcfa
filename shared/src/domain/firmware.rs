//! A firmware package of a workspace (DeviceFirmwareController): a DJI `.zip` imported from the web
//! client, offered for the device models it names while it is enabled. Its id is derived from the
//! workspace and the file's MD5 ([`id`]), so the same file imported twice is the same aggregate and
//! the second import is refused on the aggregate itself.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub const AGGREGATE_TYPE: &str = "firmware";

/// The id of the firmware file with this MD5 in `workspace_id` (a uuid).
pub fn id(workspace_id: &str, md5: &str) -> String {
    super::derived_id(&["firmware", workspace_id, &md5.to_ascii_lowercase()])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFirmware {
    pub workspace_id: String,
    pub file_name: String,
    /// `NN.NN.NNNN`, from the package's `.cfg.sig` entry.
    pub product_version: String,
    /// `yyyy-MM-dd`, from the same entry.
    pub released_time: String,
    pub object_key: String,
    pub file_size: i64,
    pub file_md5: String,
    /// Dictionary names of the models it is for (`DJI Dock`, `Matrice 30`, …).
    pub device_names: Vec<String>,
    pub release_note: String,
    pub enabled: bool,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FirmwareCommand {
    Import(Box<NewFirmware>),
    SetStatus { workspace_id: String, enabled: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FirmwareEvent {
    FirmwareImported(Box<NewFirmware>),
    FirmwareStatusChanged { enabled: bool },
}
crate::domain_event!(FirmwareEvent, "1.0", { FirmwareImported, FirmwareStatusChanged });

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("The file already exists.")]
    Exists,
    #[error("The firmware does not exist.")]
    NotFound,
}

impl crate::error::DjiCode for FirmwareError {}

/// `(product_version, released yyyy-MM-dd)` from a package's `.cfg.sig` entry name,
/// `<a>_<b>_v<NN.NN.NNNN>_<yyyyMMdd>[.x].cfg.sig`.
pub fn parse_cfg_sig(name: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(".cfg.sig")?;
    let mut parts = stem.split('_');
    let (_, _, version, date) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let version = version.strip_prefix('v').or_else(|| version.strip_prefix('V')).unwrap_or(version);
    let numbers: Vec<&str> = version.split('.').collect();
    if numbers.len() != 3 || !numbers.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let date = date.split('.').next()?;
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((version.to_string(), format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..])))
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Firmware {
    firmware: Option<NewFirmware>,
}

impl Firmware {
    /// The workspace of a package that was imported.
    pub fn workspace_id(&self) -> Option<&str> {
        self.firmware.as_ref().map(|f| f.workspace_id.as_str())
    }

    /// Whether the file was imported already.
    pub fn exists(&self) -> bool {
        self.firmware.is_some()
    }
}

impl Aggregate for Firmware {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = FirmwareCommand;
    type Event = FirmwareEvent;
    type Error = FirmwareError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            FirmwareCommand::Import(new) => {
                if self.firmware.is_some() {
                    return Err(FirmwareError::Exists);
                }
                sink.write(FirmwareEvent::FirmwareImported(new), self).await;
            }
            FirmwareCommand::SetStatus { workspace_id, enabled } => {
                let f =
                    self.firmware.as_ref().filter(|f| f.workspace_id == workspace_id).ok_or(FirmwareError::NotFound)?;
                if f.enabled != enabled {
                    sink.write(FirmwareEvent::FirmwareStatusChanged { enabled }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            FirmwareEvent::FirmwareImported(new) => self.firmware = Some(*new),
            FirmwareEvent::FirmwareStatusChanged { enabled } => {
                if let Some(f) = self.firmware.as_mut() {
                    f.enabled = enabled;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn dock_firmware() -> NewFirmware {
        NewFirmware {
            workspace_id: "w".into(),
            file_name: "dock.zip".into(),
            product_version: "10.01.1612".into(),
            released_time: "2024-06-12".into(),
            object_key: "w/firmwares/x.zip".into(),
            file_size: 10,
            file_md5: "ab".into(),
            device_names: vec!["DJI Dock2".into()],
            release_note: "fixes".into(),
            enabled: true,
            username: "adminPC".into(),
        }
    }

    #[test]
    fn package_names_give_version_and_date() {
        assert_eq!(
            parse_cfg_sig("wm245_dock2_v10.01.1612_20240612.cfg.sig"),
            Some(("10.01.1612".into(), "2024-06-12".into()))
        );
        assert_eq!(
            parse_cfg_sig("wm170_dock_v01.02.0304_20230102.pro.cfg.sig"),
            Some(("01.02.0304".into(), "2023-01-02".into()))
        );
        for bad in
            ["x.cfg.sig", "a_b_v1.2_20240612.cfg.sig", "a_b_v10.01.1612_2024.cfg.sig", "a_b_v10.01.1612_20240612.zip"]
        {
            assert_eq!(parse_cfg_sig(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_file_is_imported_once_and_switched_in_its_workspace() {
        TestFramework::<Firmware>::with(())
            .given(vec![FirmwareEvent::FirmwareImported(Box::new(dock_firmware()))])
            .when(FirmwareCommand::Import(Box::new(dock_firmware())))
            .then_expect_error_message("The file already exists.");
        TestFramework::<Firmware>::with(())
            .given(vec![FirmwareEvent::FirmwareImported(Box::new(dock_firmware()))])
            .when(FirmwareCommand::SetStatus { workspace_id: "w".into(), enabled: false })
            .then_expect_events(vec![FirmwareEvent::FirmwareStatusChanged { enabled: false }]);
        TestFramework::<Firmware>::with(())
            .given(vec![FirmwareEvent::FirmwareImported(Box::new(dock_firmware()))])
            .when(FirmwareCommand::SetStatus { workspace_id: "w".into(), enabled: true })
            .then_expect_events(vec![]);
        TestFramework::<Firmware>::with(())
            .given(vec![FirmwareEvent::FirmwareImported(Box::new(dock_firmware()))])
            .when(FirmwareCommand::SetStatus { workspace_id: "other".into(), enabled: false })
            .then_expect_error_message("The firmware does not exist.");
    }
}
