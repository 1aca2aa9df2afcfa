//! Requests (`thing/product/{gw}/requests`): the device asks, Hangar always answers on
//! `requests_reply`. Binding (`airport_bind_status`, `airport_organization_get`,
//! `airport_organization_bind`), app credentials (`config`) and object storage
//! (`storage_config_get`), a job's wayline file (`flighttask_resource_get`); other methods are kept (they stay in DEVICE_IN) and answered as
//! unsupported so that the device does not wait.
//!
//! Decisions are taken on the event store: devices on their aggregates, workspaces (found by
//! binding code) on their `WorkspaceCreated` events.

use serde_json::{json, Value};
use shared::domain::device::{DeviceCommand, Model};
use shared::event_store::{execute, load, metadata};
use shared::protocol::requests as wire;
use shared::protocol::{codes, Envelope};

use crate::AppState;

/// A workspace as it was created: `(workspace_id, workspace_name)`, by binding code or id.
async fn workspace(s: &AppState, bind_code: &str, id: &str) -> anyhow::Result<Option<(String, String)>> {
    if bind_code.is_empty() && id.is_empty() {
        return Ok(None);
    }
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT aggregate_id, payload->'WorkspaceCreated'->>'workspace_name' FROM events \
         WHERE aggregate_type = 'workspace' AND event_type = 'WorkspaceCreated' \
           AND (payload->'WorkspaceCreated'->>'bind_code' = $1 OR aggregate_id = $2) \
         ORDER BY (payload->'WorkspaceCreated'->>'bind_code' = $1) DESC LIMIT 1",
    )
    .bind(bind_code)
    .bind(id)
    .fetch_optional(&s.pool)
    .await?;
    Ok(row)
}

/// The `data` of the `requests_reply` to this request.
pub async fn answer(s: &AppState, gw: &str, env: &Envelope) -> anyhow::Result<Value> {
    let d = &env.data;
    Ok(match env.method.as_str() {
        "airport_bind_status" => {
            let mut out = Vec::new();
            for dev in wire::parse::<wire::BindStatus>(d).devices {
                let sn = dev.sn;
                if sn.is_empty() {
                    continue;
                }
                let device = load(&s.devices, &sn).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let bound = match device.workspace_id() {
                    Some(ws) => workspace(s, "", ws).await?,
                    None => None,
                };
                out.push(match bound {
                    Some((ws, name)) => json!({"sn": sn, "is_device_bind_organization": true,
                        "organization_id": ws, "organization_name": name,
                        "device_callsign": device.nickname().unwrap_or_default()}),
                    None => json!({"sn": sn, "is_device_bind_organization": false}),
                });
            }
            json!({"result": codes::OK, "output": {"bind_status": out}})
        }
        "airport_organization_get" => {
            let code = wire::parse::<wire::OrganizationGet>(d).device_binding_code;
            if code.is_empty() {
                return Ok(json!({"result": codes::ILLEGAL_ARGUMENT, "output": {}}));
            }
            match workspace(s, &code, "").await? {
                Some((_, name)) => json!({"result": codes::OK, "output": {"organization_name": name}}),
                None => json!({"result": codes::ORGANIZATION_NOT_FOUND, "output": {}}),
            }
        }
        "airport_organization_bind" => {
            let mut errs = Vec::new();
            for b in wire::parse::<wire::OrganizationBind>(d).bind_devices {
                let sn = b.sn;
                let ws = workspace(s, &b.device_binding_code, &b.organization_id).await?;
                let model = parse_model_key(&b.device_model_key);
                let ok = match (ws, sn.is_empty()) {
                    (Some((workspace_id, _)), false) => {
                        let nickname = Some(b.device_callsign).filter(|n| !n.is_empty());
                        let cmd = DeviceCommand::Bind {
                            workspace_id,
                            user_id: String::new(),
                            nickname,
                            model,
                            by_user: false,
                        };
                        execute(&s.devices, &sn, cmd, metadata("", "", "mqtt")).await.is_ok()
                    }
                    _ => false,
                };
                errs.push(json!({"sn": sn, "err_code": if ok { codes::OK } else { codes::BIND_FAILED }}));
            }
            json!({"result": codes::OK, "output": {"err_infos": errs}})
        }
        "config" => {
            if wire::parse::<wire::ConfigRequest>(d).config_scope.is_some_and(|sc| sc != "product") {
                return Ok(json!({"result": codes::ILLEGAL_ARGUMENT, "output": "illegal argument"}));
            }
            let c = &s.config;
            json!({"ntp_server_host": c.ntp_server_host, "app_id": c.app_id, "app_key": c.app_key, "app_license": c.app_license})
        }
        "storage_config_get" => crate::storage::for_device(s, gw).await?,
        "flighttask_resource_get" => crate::wayline_job::from_dock::resource(s, gw, env).await?,
        "flight_areas_get" => crate::flight_area::package(s, gw).await?,
        other => {
            tracing::warn!(gateway = gw, method = other, "request method not served; answered as unsupported");
            json!({"result": codes::UNSUPPORTED, "output": {}})
        }
    })
}

fn parse_model_key(k: &str) -> Option<Model> {
    let mut it = k.split('-').map(|p| p.trim().parse::<i64>());
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(domain)), Some(Ok(kind)), Some(Ok(sub_type))) => Some(Model { domain, kind, sub_type }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_keys() {
        assert_eq!(parse_model_key("3-2-0"), Some(Model { domain: 3, kind: 2, sub_type: 0 }));
        assert_eq!(parse_model_key("M350"), None);
    }
}
