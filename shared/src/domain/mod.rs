//! Aggregates of the Hangar domain. Each module holds one aggregate's commands, events, `Aggregate`
//! impl and its given/when/then tests. Wire shapes of the DJI protocol live with the APIs, not here.

pub mod device;
pub mod device_command;
pub mod device_logs;
pub mod device_progress;
pub mod drc;
pub mod file_group;
pub mod firmware;
pub mod flight_area;
pub mod live_stream;
pub mod map_element;
pub mod media;
pub mod user;
pub mod wayline_file;
pub mod wayline_job;
pub mod workspace;

use uuid::Uuid;

/// Namespace of the ids Hangar derives from natural keys (uuid v5), so that the same fact reported
/// twice lands on the same aggregate.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1b_4c5e_8d3f_4e2a_9b7c_0d1e_2f3a_4b5c);

pub fn derived_id(parts: &[&str]) -> String {
    Uuid::new_v5(&ID_NAMESPACE, parts.join("\u{1f}").as_bytes()).to_string()
}

/// Implements `DomainEvent` with the variant name as event type and a fixed version.
#[macro_export]
macro_rules! domain_event {
    ($ty:ty, $version:literal, { $($variant:ident),+ $(,)? }) => {
        impl cqrs_es::DomainEvent for $ty {
            fn event_type(&self) -> String {
                match self {
                    $(Self::$variant { .. } => stringify!($variant).to_string(),)+
                }
            }
            fn event_version(&self) -> String {
                $version.to_string()
            }
        }
    };
}
