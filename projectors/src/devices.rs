//! Read models of devices: `rm_devices` (topology, binding, online state, firmware) and
//! `rm_device_hms` (health alerts). Each row is written only from its own device's events, so the
//! order of different devices' events never matters.

use serde::Deserialize as _;
use shared::domain::device::{self, DeviceEvent};
use shared::es::StoredEvent;
use sqlx::PgConnection;

pub struct Devices;

#[async_trait::async_trait]
impl crate::Projection for Devices {
    fn name(&self) -> &'static str {
        "devices"
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[device::AGGREGATE_TYPE]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_devices", "rm_device_hms"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
        let sn = e.aggregate_id.as_str();
        let at = e.recorded_at;
        sqlx::query("INSERT INTO rm_devices (device_sn, update_time) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(sn)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        let q = match DeviceEvent::deserialize(&e.payload)? {
            DeviceEvent::DeviceOnline { model, thing_version, parent_sn, control_source } => sqlx::query(
                "UPDATE rm_devices SET domain = $2, type = $3, sub_type = $4, thing_version = $5, parent_sn = $6, \
                   control_source = $7, online = true, login_time = $8, update_time = $8 WHERE device_sn = $1",
            )
            .bind(sn)
            .bind(model.domain as i32)
            .bind(model.kind as i32)
            .bind(model.sub_type as i32)
            .bind(thing_version)
            .bind(parent_sn.unwrap_or_default())
            .bind(control_source.unwrap_or_default())
            .bind(at),
            DeviceEvent::TopologyChanged { sub_devices } => {
                sqlx::query("UPDATE rm_devices SET child_sn = $2, update_time = $3 WHERE device_sn = $1")
                    .bind(sn)
                    .bind(sub_devices.first().cloned().unwrap_or_default())
                    .bind(at)
            }
            DeviceEvent::DeviceOffline { .. } => {
                sqlx::query("UPDATE rm_devices SET online = false, update_time = $2 WHERE device_sn = $1").bind(sn).bind(at)
            }
            DeviceEvent::FirmwareVersionChanged { firmware_version } => {
                sqlx::query("UPDATE rm_devices SET firmware_version = $2, update_time = $3 WHERE device_sn = $1")
                    .bind(sn)
                    .bind(firmware_version)
                    .bind(at)
            }
            DeviceEvent::FlightAreaSyncReported { status, reason, file } => sqlx::query(
                "UPDATE rm_devices SET flight_area_status = $2, flight_area_code = $3, flight_area_file = $4, \
                   update_time = $5 WHERE device_sn = $1",
            )
            .bind(sn)
            .bind(status)
            .bind(reason)
            .bind(file)
            .bind(at),
            DeviceEvent::LiveCapacityChanged { capacity } => {
                sqlx::query("UPDATE rm_devices SET live_capacity = $2, update_time = $3 WHERE device_sn = $1")
                    .bind(sn)
                    .bind(capacity)
                    .bind(at)
            }
            DeviceEvent::DeviceBound { workspace_id, user_id, nickname, model } => {
                let model = model.unwrap_or(device::Model { domain: -1, kind: -1, sub_type: -1 });
                sqlx::query(
                    "UPDATE rm_devices SET workspace_id = $2, user_id = $3, nickname = COALESCE($4, nickname), bound = true, \
                       bound_time = $5, update_time = $5, \
                       domain = CASE WHEN domain = -1 THEN $6 ELSE domain END, \
                       type = CASE WHEN type = -1 THEN $7 ELSE type END, \
                       sub_type = CASE WHEN sub_type = -1 THEN $8 ELSE sub_type END \
                     WHERE device_sn = $1",
                )
                .bind(sn)
                .bind(workspace_id)
                .bind(user_id)
                .bind(nickname)
                .bind(at)
                .bind(model.domain as i32)
                .bind(model.kind as i32)
                .bind(model.sub_type as i32)
            }
            DeviceEvent::DeviceUnbound { .. } => sqlx::query(
                "UPDATE rm_devices SET workspace_id = '', user_id = '', bound = false, update_time = $2 WHERE device_sn = $1",
            )
            .bind(sn)
            .bind(at),
            DeviceEvent::DeviceUpdated { nickname, device_desc } => sqlx::query(
                "UPDATE rm_devices SET nickname = COALESCE($2, nickname), device_desc = COALESCE($3, device_desc), \
                   update_time = $4 WHERE device_sn = $1",
            )
            .bind(sn)
            .bind(nickname)
            .bind(device_desc)
            .bind(at),
            DeviceEvent::HmsRaised { entries } => {
                for h in entries {
                    sqlx::query(
                        "INSERT INTO rm_device_hms (hms_id, workspace_id, sn, tid, bid, level, module, hms_key, raw, create_time) \
                         SELECT $1, d.workspace_id, $2, $3, $4, $5, $6, $7, $8, $9 FROM rm_devices d WHERE d.device_sn = $2 \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&h.hms_id)
                    .bind(sn)
                    .bind(&h.tid)
                    .bind(&h.bid)
                    .bind(h.level as i32)
                    .bind(h.module as i32)
                    .bind(&h.key)
                    .bind(&h.raw)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                return Ok(());
            }
            DeviceEvent::FlightControlChanged { control_source } => {
                sqlx::query("UPDATE rm_devices SET flight_control = $2, update_time = $3 WHERE device_sn = $1")
                    .bind(sn)
                    .bind(control_source)
                    .bind(at)
            }
            DeviceEvent::PayloadControlChanged { payloads } => {
                sqlx::query("UPDATE rm_devices SET payload_control = $2, update_time = $3 WHERE device_sn = $1")
                    .bind(sn)
                    .bind(serde_json::to_value(payloads)?)
                    .bind(at)
            }
            DeviceEvent::HmsRead => {
                sqlx::query("UPDATE rm_device_hms SET read_time = $2 WHERE sn = $1 AND read_time IS NULL").bind(sn).bind(at)
            }
        };
        q.execute(&mut *tx).await?;
        Ok(())
    }
}
