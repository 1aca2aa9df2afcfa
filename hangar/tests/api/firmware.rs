//! Firmware packages (DeviceFirmwareController): imported from the web client as DJI's `.zip`,
//! listed, enabled and disabled, and the latest release per model.

use std::io::Write as _;

use md5::Digest as _;

use serde_json::{json, Value};

use crate::helpers::*;

/// A package as DJI ships one: a `.cfg.sig` entry at the top naming version and date.
fn package(sig: &str, filler: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file(sig, options).unwrap();
    zip.write_all(b"signature").unwrap();
    zip.start_file("firmware.bin", options).unwrap();
    zip.write_all(filler.repeat(1000).as_bytes()).unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, token: &str, file_name: &str, bytes: Vec<u8>, models: &[&str], status: &str) -> Value {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string()))
        .text("release_note", "Fixes and improvements")
        .text("status", status.to_string());
    for m in models {
        form = form.text("device_name", m.to_string());
    }
    let res = app
        .http
        .post(format!("{}/manage/api/v1/workspaces/{WS}/firmwares/file/upload", app.base))
        .header("x-auth-token", token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn packages_are_imported_once_listed_switched_and_the_latest_enabled_one_is_given_per_model() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let ok = json!({"code": 0, "message": "success", "data": ""});
    let old = package("wm245_dock2_v10.01.0001_20240101.cfg.sig", "a");
    let new = package("wm245_dock2_v10.01.1612_20240612.pro.cfg.sig", "b");
    assert_eq!(upload(&app, &token, "dock2_old.zip", old.clone(), &["DJI Dock2"], "true").await, ok);
    assert_eq!(upload(&app, &token, "dock2_new.zip", new.clone(), &["DJI Dock2", "Matrice 3D"], "false").await, ok);
    // the same file again, under any name
    let again = upload(&app, &token, "copy.zip", old.clone(), &["DJI Dock2"], "true").await;
    assert_eq!(again, json!({"code": -1, "message": "The file already exists."}));
    // what is not a DJI package
    for (name, bytes) in
        [("dock.tar", old.clone()), ("dock.zip", b"not a zip".to_vec()), ("dock.zip", package("readme.txt", "c"))]
    {
        let r = upload(&app, &token, name, bytes, &["DJI Dock2"], "true").await;
        assert_eq!(r, json!({"code": -1, "message": "The file format is incorrect."}), "{name}");
    }

    let page = |q: &'static str| {
        let app = &app;
        let token = token.clone();
        async move { app.get(&format!("/manage/api/v1/workspaces/{WS}/firmwares?page=1&page_size=10{q}"), &token).await.1 }
    };
    app.wait_for("listed", || async { page("").await["data"]["pagination"]["total"] == 2 }).await;
    let all = page("").await;
    let first = &all["data"]["list"][0];
    assert_eq!(first["product_version"], "10.01.1612", "newest release first: {all}");
    assert_eq!(first["released_time"], "2024-06-12");
    assert_eq!(first["device_name"], json!(["DJI Dock2", "Matrice 3D"]));
    assert_eq!(first["firmware_status"], false);
    assert_eq!(first["file_size"], new.len());
    let md5: String = md5::Md5::digest(&new).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(first["file_md5"], md5);
    assert_eq!(first["username"], "adminPC");
    assert!(first["object_key"]
        .as_str()
        .unwrap()
        .ends_with(&format!("firmwares/{}.zip", first["firmware_id"].as_str().unwrap())));
    assert_eq!(page("&device_name=Matrice%203D").await["data"]["pagination"]["total"], 1);
    assert_eq!(page("&product_version=0001").await["data"]["list"][0]["file_name"], "dock2_old.zip");
    assert_eq!(page("&status=false").await["data"]["pagination"]["total"], 1);

    let latest = || async {
        app.get(
            "/manage/api/v1/workspaces/firmware-release-notes/latest?device_name=DJI%20Dock2&device_name=Matrice%203D",
            &token,
        )
        .await
        .1
    };
    assert_eq!(
        latest().await["data"],
        json!([{"device_name": "DJI Dock2", "product_version": "10.01.0001", "release_note": "Fixes and improvements",
                "released_time": "2024-01-01"}]),
        "only enabled packages"
    );
    let id = first["firmware_id"].as_str().unwrap().to_string();
    let (_, r) =
        app.put(&format!("/manage/api/v1/workspaces/{WS}/firmwares/{id}"), &token, json!({"status": true})).await;
    assert_eq!(r, ok);
    app.wait_for("enabled", || async { latest().await["data"].as_array().is_some_and(|l| l.len() == 2) }).await;
    let l = latest().await;
    assert!(l["data"].as_array().unwrap().iter().all(|n| n["product_version"] == "10.01.1612"), "{l}");
    let (_, r) =
        app.put(&format!("/manage/api/v1/workspaces/{WS}/firmwares/no-such"), &token, json!({"status": true})).await;
    assert_eq!(r["message"], "The firmware does not exist.");
    let (_, r) = app.put(&format!("/manage/api/v1/workspaces/{WS}/firmwares/{id}"), &token, json!({})).await;
    assert_eq!(r["code"], -1);
    app.stop().await;
}

#[tokio::test]
async fn an_enabled_package_upgrades_a_dock_which_reports_its_progress_and_new_version() {
    let app = TestApp::spawn_with(crate::wayline_job::bridge_config(), hangar::Components::ALL).await;
    let token = app.admin_token().await;
    let p = crate::devices::prefix();
    // a dock that flies its automatic round (a fifth of the time) is working, and is not upgraded
    let f = mqtt_bridge::sim::Fleet::start(mqtt_bridge::sim::FleetConfig {
        docks: 1,
        osd_hz: 2.0,
        sn_prefix: p.clone(),
        hms_every: None,
        cycle_flights: false,
        ..Default::default()
    })
    .await
    .unwrap();
    f.ready(std::time::Duration::from_secs(10)).await.unwrap();
    let dock = f.docks()[0].dock_sn.clone();
    crate::devices::bind(&app, &token, &dock).await;
    let zip = package("wm245_dock2_v10.01.1612_20240612.cfg.sig", "d");
    assert_eq!(upload(&app, &token, "dock2.zip", zip.clone(), &["DJI Dock2"], "true").await["code"], 0);
    assert_eq!(
        upload(
            &app,
            &token,
            "dock2_off.zip",
            package("wm245_dock2_v10.01.1700_20240701.cfg.sig", "e"),
            &["DJI Dock2"],
            "false"
        )
        .await["code"],
        0
    );
    app.wait_for("imported", || async {
        app.get(&format!("/manage/api/v1/workspaces/{WS}/firmwares?page=1&page_size=10"), &token).await.1["data"]
            ["pagination"]["total"]
            == 2
    })
    .await;
    let mut ws = app.websocket(&token).await;
    let url = format!("/manage/api/v1/devices/{WS}/devices/ota");
    let upgrade = |version: &str| json!([{"device_name": "DJI Dock2", "sn": dock, "product_version": version, "firmware_upgrade_type": 2}]);

    let (_, r) = app.post(&url, &token, upgrade("10.01.1612")).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let sent = f.received().into_iter().find(|c| c.method == "ota_create").expect("ota_create");
    let d = &sent.data["devices"][0];
    assert_eq!((d["sn"].as_str(), d["product_version"].as_str()), (Some(dock.as_str()), Some("10.01.1612")));
    assert_eq!((d["file_size"].as_u64(), d["file_name"].as_str()), (Some(zip.len() as u64), Some("dock2.zip")));
    assert_eq!(d["firmware_upgrade_type"], 2);
    let md5: String = md5::Md5::digest(&zip).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(d["md5"], md5);
    // the link the dock downloads the package from
    let link = d["file_url"].as_str().unwrap().replace(&app.config.public_url, &app.base);
    assert_eq!(app.http.get(link).send().await.unwrap().bytes().await.unwrap().as_ref(), zip.as_slice());

    let mut last = next_push(&mut ws, "ota_progress").await;
    while last["output"]["status"] != "ok" {
        last = next_push(&mut ws, "ota_progress").await;
    }
    assert_eq!(
        (last["sn"].as_str(), last["result"].as_i64(), last["bid"].as_str()),
        (Some(dock.as_str()), Some(0), Some(sent.bid.as_str()))
    );
    app.wait_for("the dock's new version", || async {
        app.get(&format!("/manage/api/v1/devices/{WS}/devices/{dock}"), &token).await.1["data"]["firmware_version"]
            == "10.01.1612"
    })
    .await;

    let before = f.received().len();
    for (body, code, says) in [
        (upgrade("10.01.1700"), -1, "does not exist or is not available"),
        (upgrade("99.99.9999"), -1, "does not exist or is not available"),
        (json!([]), 210002, "one or two"),
        (json!([{"device_name": "DJI Dock2", "sn": "NO-SUCH-SN", "product_version": "10.01.1612"}]), 210001, ""),
    ] {
        let (_, r) = app.post(&url, &token, body).await;
        assert_eq!(r["code"], code, "{r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{r}");
    }
    assert_eq!(f.received().len(), before, "nothing sent for refused upgrades");
    f.stop().await;
    app.stop().await;
}
