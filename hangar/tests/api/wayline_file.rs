//! WaylineFileController end to end: import from the web client (multipart), DJI Pilot 2's upload
//! callback, the list with its filters and order, duplicate names, download links, favorites,
//! delete, and files that are not WPML refused with nothing stored.

use std::io::Write as _;

use md5::Digest as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

pub(crate) fn mission(name: &str, points: usize) -> Vec<u8> {
    wpml::write_kmz(&wpml::Mission {
        name: name.into(),
        drone_model_key: "0-91-0".into(),
        payload_model_key: "1-80-0".into(),
        waypoints: (0..points)
            .map(|i| wpml::MissionPoint {
                longitude: 113.93 + i as f64 * 0.0001,
                latitude: 22.54 + i as f64 * 0.0001,
                height: 80.0 + i as f64,
                speed: Some(8.0),
                actions: if i == 0 { vec!["takePhoto".into()] } else { vec![] },
            })
            .collect(),
        auto_flight_speed: 10.0,
        finish_action: "goHome".into(),
        take_off_security_height: 30.0,
    })
    .expect("a KMZ")
}

pub(crate) async fn import(app: &TestApp, token: &str, file_name: &str, bytes: Vec<u8>) -> Value {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    let res = app
        .http
        .post(format!("{}/wayline/api/v1/workspaces/{WS}/waylines/file/upload", app.base))
        .header("x-auth-token", token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines?{query}"), token).await;
    assert_eq!(r["code"], 0, "{r}");
    r["data"].clone()
}

async fn wait_listed(app: &TestApp, token: &str, n: usize) -> Value {
    app.wait_for("wayline list", || async {
        list(app, token, "order_by=name%20asc&page=1&page_size=50").await["list"].as_array().map(Vec::len) == Some(n)
    })
    .await;
    list(app, token, "order_by=name%20asc&page=1&page_size=50").await["list"].clone()
}

fn wayline_objects(app: &TestApp) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            usize::from(e.path().to_string_lossy().ends_with(".kmz"))
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&app.config.storage_dir)
}

#[tokio::test]
async fn imported_waylines_list_download_favorite_and_delete() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let roof = mission("Roof", 3);
    assert_eq!(
        import(&app, &token, "Roof.kmz", roof.clone()).await,
        json!({"code": 0, "message": "success", "data": ""})
    );
    assert_eq!(import(&app, &token, "Bridge.kmz", mission("Bridge", 5)).await["code"], 0);
    let listed = wait_listed(&app, &token, 2).await;
    let r = &listed[1];
    assert_eq!(r["name"], "Roof");
    assert_eq!(r["drone_model_key"], "0-91-0");
    assert_eq!(r["payload_model_keys"], json!(["1-80-0"]));
    assert_eq!(r["template_types"], json!([0]));
    assert_eq!(r["favorited"], false);
    assert_eq!(r["user_name"], "adminPC");
    assert_eq!(r["sign"], hex::encode(md5::Md5::digest(&roof)));
    assert!(r["create_time"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(listed[0]["name"], "Bridge", "order_by name asc");
    let id = r["id"].as_str().unwrap().to_string();

    // the same name again: refused, nothing more stored
    let again = import(&app, &token, "Roof.kmz", mission("Roof", 4)).await;
    assert_eq!(again["code"], -1);
    assert!(again["message"].as_str().unwrap().contains("already exists"), "{again}");
    assert_eq!(wayline_objects(&app), 2);
    let (_, r) =
        app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines/duplicate-names?name=Roof&name=Lake"), &token).await;
    assert_eq!(r["data"], json!(["Roof"]));

    // download: 302 to the same bytes, and its JSON form
    let downloaded = app.follow(&format!("/wayline/api/v1/workspaces/{WS}/waylines/{id}/url"), &token).await;
    assert_eq!(downloaded, roof);
    let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines/{id}/download-url"), &token).await;
    assert!(r["data"]["url"].is_string() && r["data"]["expire_at"].as_i64().unwrap() > 0, "{r}");
    let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines/{id}/json"), &token).await;
    assert_eq!(r["code"], 0, "{r}");
    assert!(r["data"].to_string().contains("22.54"), "the waypoints are in the JSON: {r}");

    // favorites and the list's filters
    let (_, r) = app
        .request(Method::POST, &format!("/wayline/api/v1/workspaces/{WS}/favorites?id={id}"), Some(&token), None)
        .await;
    assert_eq!(r["code"], 0);
    app.wait_for("favorited", || async {
        list(&app, &token, "order_by=update_time%20desc&favorited=true").await["pagination"]["total"] == 1
    })
    .await;
    assert_eq!(list(&app, &token, "order_by=name&key=ridg").await["list"][0]["name"], "Bridge");
    assert_eq!(list(&app, &token, "order_by=name&template_type=1").await["pagination"]["total"], 0);
    assert_eq!(
        list(&app, &token, "order_by=name&drone_model_keys=0-91-0&page=2&page_size=1").await["list"][0]["name"],
        "Roof"
    );
    let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines?order_by=name;drop"), &token).await;
    assert_eq!(r["code"], -1);
    let (_, r) = app
        .request(Method::DELETE, &format!("/wayline/api/v1/workspaces/{WS}/favorites?id={id}"), Some(&token), None)
        .await;
    assert_eq!(r["code"], 0);
    app.wait_for("unfavorited", || async {
        list(&app, &token, "order_by=name&favorited=true").await["pagination"]["total"] == 0
    })
    .await;

    // delete: the row and the object go; deleting again succeeds
    for _ in 0..2 {
        let (_, r) = app
            .request(Method::DELETE, &format!("/wayline/api/v1/workspaces/{WS}/waylines/{id}"), Some(&token), None)
            .await;
        assert_eq!(r["code"], 0);
    }
    wait_listed(&app, &token, 1).await;
    assert_eq!(wayline_objects(&app), 1);
    // and the name is free again
    assert_eq!(import(&app, &token, "Roof.kmz", roof).await["code"], 0);
    app.stop().await;
}

#[tokio::test]
async fn files_that_are_not_wpml_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let mut no_wpml = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut no_wpml));
        z.start_file("readme.txt", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(b"not a route").unwrap();
        z.finish().unwrap();
    }
    let mut bomb = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut bomb));
        z.start_file("wpmz/template.kml", zip::write::SimpleFileOptions::default()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        // 8 MiB of zeros: a thousandfold compression, far past any route file
        for _ in 0..8 {
            z.write_all(&zeros).unwrap();
        }
        z.finish().unwrap();
    }
    for (name, bytes, message) in [
        ("plain.kmz", b"this is not a zip".to_vec(), "The file format is incorrect."),
        ("empty.kmz", no_wpml, "The file format is incorrect."),
        ("bomb.kmz", bomb, "zip bomb"),
        ("route.txt", mission("Route", 2), "The file format is incorrect."),
    ] {
        let r = import(&app, &token, name, bytes).await;
        assert_eq!(r["code"], -1, "{name}: {r}");
        assert!(r["message"].as_str().is_some_and(|m| m.contains(message)), "{name}: {r}");
    }
    let res = app
        .http
        .post(format!("{}/wayline/api/v1/workspaces/{WS}/waylines/file/upload", app.base))
        .header("x-auth-token", &token)
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"code": -1, "message": "No file received."}));
    assert_eq!(wayline_objects(&app), 0);
    assert_eq!(app.count("rm_wayline_files").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn pilot_upload_callback_registers_the_stored_file() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let bytes = mission("Pilot route", 4);
    let key = format!("media/{WS}/wayline/pilot-route.kmz");
    let path = app.config.storage_dir.join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let body = |k: &str| {
        json!({"object_key": k, "name": "Pilot route",
            "metadata": {"drone_model_key": "0-91-0", "payload_model_keys": ["1-80-0"], "template_types": [0]}})
    };
    let cb = format!("/wayline/api/v1/workspaces/{WS}/upload-callback");
    for bad in ["../../etc/passwd", "media/another-workspace/x.kmz", "/abs/x.kmz"] {
        let (_, r) = app.post(&cb, &token, body(bad)).await;
        assert_eq!(r["code"], -1, "{bad}: {r}");
    }
    let (_, r) = app.post(&cb, &token, json!({"object_key": key, "name": "x"})).await;
    assert_eq!(r["code"], -1, "metadata is required: {r}");
    let (_, r) = app.post(&cb, &token, body(&key)).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let listed = wait_listed(&app, &token, 1).await;
    assert_eq!(listed[0]["name"], "Pilot route");
    assert_eq!(listed[0]["user_name"], "pilot");
    assert_eq!(listed[0]["sign"], hex::encode(md5::Md5::digest(&bytes)));
    assert_eq!(listed[0]["object_key"], key.as_str());
    let (_, r) = app.post(&cb, &token, body(&key)).await;
    assert_eq!(r["code"], -1, "the name is taken: {r}");
    app.stop().await;
}

#[tokio::test]
async fn a_generated_wayline_round_trips_and_is_listed_like_an_imported_one() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let points = json!([
        {"longitude": 113.9431, "latitude": 22.5776, "height": 100, "speed": 8, "actions": ["takePhoto"]},
        {"longitude": 113.9441, "latitude": 22.5786, "height": 110},
        {"longitude": 113.9451, "latitude": 22.5776, "height": 120, "actions": ["startRecord"]}
    ]);
    let body = json!({"name": "Generated", "drone_model_key": "0-91-0", "payload_model_key": "1-80-0",
        "waypoints": points, "auto_flight_speed": 10, "finish_action": "goHome"});
    let (_, r) = app.post(&format!("/wayline/api/v1/workspaces/{WS}/waylines/generate"), &token, body.clone()).await;
    assert_eq!(r["code"], 0, "{r}");
    let id = r["data"]["wayline_id"].as_str().unwrap().to_string();
    assert_eq!(r["data"]["name"], "Generated");
    let listed = wait_listed(&app, &token, 1).await;
    assert_eq!((listed[0]["id"].as_str(), listed[0]["template_types"].clone()), (Some(id.as_str()), json!([0])));

    // the stored file read back gives the same waypoints
    let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines/{id}/json"), &token).await;
    let waypoints = r["data"]["waypoints"].as_array().unwrap().clone();
    assert_eq!(waypoints.len(), 3, "{r}");
    for (got, want) in waypoints.iter().zip(points.as_array().unwrap()) {
        for k in ["longitude", "latitude", "height"] {
            assert!((got[k].as_f64().unwrap() - want[k].as_f64().unwrap()).abs() < 1e-6, "{k}: {got} vs {want}");
        }
    }
    // and the same through kmz-to-json with the downloaded bytes
    let kmz = app.follow(&format!("/wayline/api/v1/workspaces/{WS}/waylines/{id}/url"), &token).await;
    let part = reqwest::multipart::Part::bytes(kmz.clone()).file_name("Generated.kmz");
    let r: Value = app
        .http
        .post(format!("{}/wayline/api/v1/workspaces/{WS}/waylines/kmz-to-json", app.base))
        .header("x-auth-token", &token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["waypoints"], json!(waypoints));
    assert_eq!(r["data"]["drone_model_key"], "0-91-0");

    // the generated file imports like any other (under another name)
    assert_eq!(import(&app, &token, "Generated copy.kmz", kmz).await["code"], 0);
    // a mission that cannot fly is refused with a clear message
    let (_, r) = app
        .post(
            &format!("/wayline/api/v1/workspaces/{WS}/waylines/generate"),
            &token,
            json!({"name": "Bad", "drone_model_key": "0-91-0", "waypoints": [{"longitude": 500, "latitude": 0, "height": 10}]}),
        )
        .await;
    assert_eq!(r["code"], 210002, "{r}");
    app.stop().await;
}
