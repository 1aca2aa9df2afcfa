//! DeviceLogsController end to end with the dock simulator: the dock's log files listed live, an
//! upload into the workspace's folder with its progress pushed and recorded, the file downloaded
//! through its link, a cancelled upload, a refused one, the history filtered and deleted, and bad
//! requests answered in DJI's envelope with nothing sent to the dock.

use std::time::Duration;

use hangar::Components;
use mqtt_bridge::sim::{Answer, Fleet, FleetConfig};
use reqwest::Method;
use serde_json::{json, Value};

use crate::devices::{bind, prefix};
use crate::helpers::*;

async fn history(app: &TestApp, token: &str, dock: &str, filter: &str) -> Value {
    let (_, r) = app
        .get(&format!("/manage/api/v1/workspaces/{WS}/devices/{dock}/logs-uploaded?page=1&page_size=10{filter}"), token)
        .await;
    assert_eq!(r["code"], 0, "{r}");
    r["data"].clone()
}

async fn upload_status(app: &TestApp, token: &str, dock: &str, logs_id: &str) -> Option<i64> {
    let data = history(app, token, dock, "").await;
    data["list"].as_array().unwrap().iter().find(|l| l["logs_id"] == logs_id).and_then(|l| l["status"].as_i64())
}

#[tokio::test]
async fn a_docks_logs_are_listed_uploaded_downloaded_cancelled_and_deleted() {
    let app = TestApp::spawn_with(crate::wayline_job::bridge_config(), Components::ALL).await;
    let token = app.admin_token().await;
    let f = Fleet::start(FleetConfig {
        docks: 1,
        osd_hz: 2.0,
        sn_prefix: prefix(),
        hms_every: None,
        cycle_flights: false,
        progress_interval: Duration::from_millis(300),
        ..Default::default()
    })
    .await
    .unwrap();
    f.ready(Duration::from_secs(10)).await.unwrap();
    let (dock, drone) = (f.docks()[0].dock_sn.clone(), f.docks()[0].drone_sn.clone());
    bind(&app, &token, &dock).await;
    let logs = format!("/manage/api/v1/workspaces/{WS}/devices/{dock}/logs");

    // the files the dock holds now, as DJI's web client asks for them
    let (_, r) = app.get(&format!("{logs}?domain_list=0,3"), &token).await;
    assert_eq!(r["code"], 0, "{r}");
    let files = r["data"]["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 2, "{r}");
    let of = |module: &str| files.iter().find(|f| f["module"] == module).unwrap().clone();
    assert_eq!(
        (of("3")["device_sn"].as_str(), of("0")["device_sn"].as_str()),
        (Some(dock.as_str()), Some(drone.as_str()))
    );
    assert_eq!(of("3")["list"].as_array().unwrap().len(), 3);
    let asked = f.received().into_iter().find(|c| c.method == "fileupload_list").expect("fileupload_list");
    assert_eq!(asked.data, json!({"module_list": ["0", "3"]}));

    // an upload as the web client starts it: no time, no description
    let mut ws = app.websocket(&token).await;
    let body = json!({"device_sn": dock, "files": [
        {"device_sn": dock, "module": "3", "list": [of("3")["list"][0].clone()]},
        {"device_sn": drone, "module": "0", "list": of("0")["list"].clone()},
    ]});
    let (_, r) = app.post(&logs, &token, body.clone()).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let start = f.received().into_iter().find(|c| c.method == "fileupload_start").expect("fileupload_start");
    let logs_id = start.bid.clone();
    assert_eq!(start.data["file_type"], "text_log");
    assert!(start.data["credentials"]["access_key_id"].as_str().is_some_and(|k| !k.is_empty()), "{}", start.data);
    let sent_files = start.data["params"]["files"].as_array().unwrap();
    assert_eq!(sent_files.len(), 2);
    for file in sent_files {
        let key = file["object_key"].as_str().unwrap();
        assert!(key.starts_with(&format!("{WS}/logs/")) || key.contains(&format!("/{WS}/logs/")), "{key}");
    }

    let mut last = next_push(&mut ws, "fileupload_progress").await;
    while last["output"]["status"] != "ok" {
        last = next_push(&mut ws, "fileupload_progress").await;
    }
    assert_eq!((last["bid"].as_str(), last["sn"].as_str()), (Some(logs_id.as_str()), Some(dock.as_str())));
    assert_eq!(last["output"]["logs_id"], logs_id);
    let pushed = last["output"]["files"].as_array().unwrap();
    assert_eq!(pushed.len(), 2);
    assert!(pushed.iter().all(|f| f["progress"] == 100 && f["status"] == "ok"), "{last}");

    app.wait_for("the upload recorded done", || async {
        upload_status(&app, &token, &dock, &logs_id).await == Some(2)
    })
    .await;
    let data = history(&app, &token, &dock, "").await;
    let entry = data["list"][0].clone();
    assert_eq!(entry["logs_id"], logs_id);
    assert_eq!(entry["user_name"], "adminPC");
    assert_eq!(entry["device_topo"]["parents"][0]["sn"], dock);
    assert_eq!(entry["device_topo"]["hosts"][0]["sn"], drone);
    assert_eq!(entry["logs_progress"], json!([]), "progress is shown while uploading only");
    let uploaded = entry["device_logs"]["files"].as_array().unwrap();
    assert_eq!(uploaded.len(), 2);
    let dock_file = uploaded.iter().find(|f| f["module"] == "3").unwrap();
    assert_eq!((dock_file["result"].as_i64(), dock_file["list"][0]["boot_index"].as_i64()), (Some(0), Some(100)));

    // the upload as it was when requested, and now (analysts' history)
    let past = format!("/history/api/v1/workspaces/{WS}/aggregates/device_logs/{logs_id}");
    let (_, then) = app.get(&format!("{past}?sequence=1"), &token).await;
    assert_eq!((then["data"]["state"]["status"].as_i64(), then["data"]["workspace_id"].as_str()), (Some(1), Some(WS)));
    let (_, now) = app.get(&past, &token).await;
    assert_eq!(now["data"]["state"]["status"], 2, "{now}");

    // the file itself, through its link
    let file_id = dock_file["file_id"].as_str().unwrap();
    let (_, r) = app.get(&format!("/manage/api/v1/workspaces/{WS}/logs/{logs_id}/url/{file_id}"), &token).await;
    assert_eq!(r["code"], 0, "{r}");
    let link = r["data"].as_str().unwrap().replace(&app.config.public_url, &app.base);
    let bytes = app.http.get(link).send().await.unwrap().bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(&format!("{dock} (module 3) boot 100")), "{text}");
    let (_, r) = app.get(&format!("/manage/api/v1/workspaces/{WS}/logs/{logs_id}/url/no-such-file"), &token).await;
    assert_eq!(r, json!({"code": -1, "message": "Failed to get the logs file download address."}));

    // a second upload, cancelled while the dock pulls its logs
    let (_, r) = app
        .post(
            &logs,
            &token,
            json!({"logs_information": "landing aborted", "happen_time": 1733000000000i64,
        "files": [{"device_sn": dock, "module": "3", "list": [of("3")["list"][1].clone()]}]}),
        )
        .await;
    assert_eq!(r["code"], 0, "{r}");
    let second = f.received().into_iter().rfind(|c| c.method == "fileupload_start").unwrap().bid;
    let (_, r) =
        app.request(Method::DELETE, &logs, Some(&token), Some(json!({"module_list": ["3"], "status": "cancel"}))).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let cancel = f.received().into_iter().find(|c| c.method == "fileupload_update").expect("fileupload_update");
    assert_eq!(cancel.data, json!({"module_list": ["3"], "status": "cancel"}));
    app.wait_for("the upload recorded canceled", || async {
        upload_status(&app, &token, &dock, &second).await == Some(3)
    })
    .await;
    let cancelled = history(&app, &token, &dock, "&status=3").await;
    assert_eq!(cancelled["pagination"]["total"], 1);
    assert_eq!(cancelled["list"][0]["logs_information"], "landing aborted");
    assert!(cancelled["list"][0]["happen_time"].as_str().is_some_and(|t| t.starts_with("2024-")), "{cancelled}");
    assert_eq!(history(&app, &token, &dock, "&logs_information=aborted").await["pagination"]["total"], 1);
    assert_eq!(history(&app, &token, &dock, "&status=2").await["pagination"]["total"], 1);
    let cancelled_file = cancelled["list"][0]["device_logs"]["files"][0]["file_id"].as_str().unwrap().to_string();
    let (_, r) = app.get(&format!("/manage/api/v1/workspaces/{WS}/logs/{second}/url/{cancelled_file}"), &token).await;
    assert_eq!(r["code"], -1, "nothing to download from a cancelled upload: {r}");

    // a dock that refuses: the caller gets its code, the history a failed upload
    f.set_answer("fileupload_start", Answer::error(324030));
    let (_, r) = app.post(&logs, &token, body.clone()).await;
    assert_eq!(r["code"], 324030, "{r}");
    let refused = f.received().into_iter().rfind(|c| c.method == "fileupload_start").unwrap().bid;
    app.wait_for("the refused upload recorded failed", || async {
        upload_status(&app, &token, &dock, &refused).await == Some(4)
    })
    .await;

    // bad requests: nothing reaches the dock
    let before = f.received().len();
    for (method, path, body) in [
        (Method::POST, logs.clone(), json!({"files": []})),
        (
            Method::POST,
            logs.clone(),
            json!({"files": [{"device_sn": dock, "module": "7", "list": [{"boot_index": 1}]}]}),
        ),
        (Method::POST, logs.clone(), json!({"files": [{"device_sn": dock, "module": "3", "list": []}]})),
        (Method::POST, logs.clone(), json!({"happen_time": "yesterday", "files": body["files"].clone()})),
        (Method::POST, logs.clone(), json!({"files": "all"})),
        (Method::DELETE, logs.clone(), json!({"status": "pause"})),
        (Method::GET, format!("{logs}?domain_list=5"), Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, r) = app.request(method.clone(), &path, Some(&token), body).await;
        assert_eq!((status.as_u16(), r["code"].as_i64()), (200, Some(-1)), "{method} {path}: {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    }
    let other = format!("/manage/api/v1/workspaces/{WS}/devices/NO-SUCH-DOCK/logs");
    let (_, r) = app.post(&other, &token, body.clone()).await;
    assert_ne!(r["code"], 0, "{r}");
    assert_eq!(f.received().len(), before, "nothing sent for refused requests");

    // deleted from the history, once
    let delete = format!("{logs}/{second}");
    let (_, r) = app.request(Method::DELETE, &delete, Some(&token), None).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    app.wait_for("the upload gone from the history", || async {
        upload_status(&app, &token, &dock, &second).await.is_none()
    })
    .await;
    let (_, r) = app.request(Method::DELETE, &delete, Some(&token), None).await;
    assert_eq!(r["code"], -1, "{r}");
    assert_eq!(history(&app, &token, &dock, "").await["pagination"]["total"], 2);

    f.stop().await;
    app.stop().await;
}
