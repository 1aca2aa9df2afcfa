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
