//! Custom flight areas (FlightAreaController, DeviceDataController): drawn, listed, changed and
//! deleted with the WebSocket telling the workspace, and synchronised to a simulated dock, which
//! fetches the areas' GeoJSON file, checks it and reports its progress.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};

use crate::devices::{bind, fleet, prefix};
use crate::helpers::*;

fn circle(id: &str) -> Value {
    json!({"id": id, "name": "Airport", "type": "nfz", "content": {
        "properties": {"color": "#FF0000", "clampToGround": true},
        "geometry": {"type": "Circle", "coordinates": [113.94, 22.57], "radius": 500.5}}})
}

fn polygon(id: &str) -> Value {
    json!({"id": id, "name": "Field", "type": "dfence", "content": {
        "properties": {"color": "#00FF00", "clampToGround": true},
        "geometry": {"type": "Polygon", "coordinates": [[[113.9, 22.5], [114.0, 22.5], [114.0, 22.6]]]}}})
}

fn files_named(dir: &Path, prefix: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_named(&path, prefix, found);
        } else if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)) {
            found.push(path);
        }
    }
}

const A: &str = "6a1b4c5e-0000-4e2a-9b7c-00000000000a";
const B: &str = "6a1b4c5e-0000-4e2a-9b7c-00000000000b";

#[tokio::test]
async fn areas_are_drawn_listed_changed_and_deleted_and_the_websocket_says_so() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let mut ws = app.websocket(&token).await;
    let base = format!("/map/api/v1/workspaces/{WS}");

    let (_, r) = app.post(&format!("{base}/flight-area"), &token, circle(A)).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let pushed = next_push(&mut ws, "flight_areas_update").await;
    assert_eq!(pushed["operation"], "add");
    assert_eq!(pushed["area_id"], A);
    assert_eq!((pushed["type"].as_str(), pushed["status"].as_bool()), (Some("nfz"), Some(true)));
    assert_eq!(pushed["username"], "adminPC");
    assert_eq!(pushed["content"]["geometry"]["radius"], 500.5);

    app.wait_for("listed", || async {
        app.get(&format!("{base}/flight-areas"), &token).await.1["data"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let listed = app.get(&format!("{base}/flight-areas"), &token).await.1["data"][0].clone();
    assert_eq!(listed["name"], "Airport");
    assert_eq!(listed["create_time"], pushed["create_time"]);

    let (_, r) =
        app.put(&format!("{base}/flight-area/{A}"), &token, json!({"status": false, "name": "Old airport"})).await;
    assert_eq!(r["code"], 0, "{r}");
    let pushed = next_push(&mut ws, "flight_areas_update").await;
    assert_eq!((pushed["operation"].as_str(), pushed["status"].as_bool()), (Some("update"), Some(false)));
    assert_eq!(pushed["name"], "Old airport");
    let (_, r) = app.put(&format!("{base}/flight-area/{A}"), &token, json!({"content": polygon(A)["content"]})).await;
    assert_eq!(r["message"], "The geometry type of an area cannot change.");

    let (_, r) = app.request(Method::DELETE, &format!("{base}/flight-area/{A}"), Some(&token), None).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(next_push(&mut ws, "flight_areas_update").await, json!({"operation": "delete", "area_id": A}));

    // bad areas: clear errors, nothing recorded
    let mut small = circle(B);
    small["content"]["geometry"]["radius"] = json!(3);
    let mut kind = circle(B);
    kind["type"] = json!("zone");
    for (body, says) in
        [(small, "radius"), (kind, "dfence or nfz"), (circle("x"), "uuid"), (json!({"id": B}), "Invalid request body")]
    {
        let (status, r) = app.post(&format!("{base}/flight-area"), &token, body).await;
        assert_eq!((status.as_u16(), r["code"].as_i64()), (200, Some(-1)), "{r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{r}");
    }
    // no dock in the workspace: DJI's illegal argument
    let (_, r) = app.get(&format!("{base}/device-status"), &token).await;
    assert_eq!(r, json!({"code": -1, "message": "illegal argument"}));
    app.stop().await;
}

#[tokio::test]
async fn a_sync_reaches_the_dock_which_fetches_checks_and_reports_the_areas() {
    // on a port of its own that its links name: the dock downloads the areas' file
    let app = TestApp::spawn_with(crate::wayline_job::bridge_config(), hangar::Components::ALL).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let dock = f.docks()[0].dock_sn.clone();
    bind(&app, &token, &dock).await;
    let base = format!("/map/api/v1/workspaces/{WS}");
    assert_eq!(app.post(&format!("{base}/flight-area"), &token, circle(A)).await.1["code"], 0);
    assert_eq!(app.post(&format!("{base}/flight-area"), &token, polygon(B)).await.1["code"], 0);
    assert_eq!(app.put(&format!("{base}/flight-area/{B}"), &token, json!({"status": false})).await.1["code"], 0);
    app.wait_for("projected", || async {
        let a = app.get(&format!("{base}/flight-areas"), &token).await.1;
        a["data"].as_array().is_some_and(|l| l.len() == 2 && l.iter().any(|x| x["status"] == false))
    })
    .await;
    let mut ws = app.websocket(&token).await;

    let (_, r) = app.post(&format!("{base}/flight-area/sync"), &token, json!({"device_sn": [dock]})).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    assert_eq!(f.received().iter().filter(|c| c.method == "flight_areas_update").count(), 1);
    assert_eq!(f.received().iter().find(|c| c.method == "flight_areas_update").unwrap().data, json!(""));

    let first = next_push(&mut ws, "flight_areas_sync_progress").await;
    assert_eq!((first["sn"].as_str(), first["status"].as_str()), (Some(dock.as_str()), Some("synchronizing")));
    let done = next_push(&mut ws, "flight_areas_sync_progress").await;
    assert_eq!((done["status"].as_str(), done["result"].as_i64()), (Some("synchronized"), Some(0)), "{done}");
    app.wait_for("the dock's state", || async {
        let r = app.get(&format!("{base}/device-status"), &token).await.1;
        r["data"][0]["flight_area_status"]["sync_status"] == "synchronized"
    })
    .await;
    let r = app.get(&format!("{base}/device-status"), &token).await.1;
    assert_eq!(r["data"][0]["device_sn"], dock.as_str());
    assert_eq!(r["data"][0]["online"], true);
    assert_eq!(
        r["data"][0]["flight_area_status"],
        json!({"sync_status": "synchronized", "sync_code": 0, "sync_msg": ""})
    );

    // the file the dock fetched: both areas, the disabled one marked so, circles as points
    let mut found = Vec::new();
    files_named(&app.config.storage_dir, "geofence_", &mut found);
    assert_eq!(found.len(), 1, "{found:?}");
    let geojson: Value = serde_json::from_slice(&std::fs::read(&found[0]).unwrap()).unwrap();
    assert_eq!(geojson["type"], "FeatureCollection");
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), 2);
    let a = features.iter().find(|x| x["id"] == A).unwrap();
    assert_eq!(a["geofence_type"], "nfz");
    assert_eq!(a["geometry"], json!({"type": "Point", "coordinates": [113.94, 22.57]}));
    assert_eq!(a["properties"], json!({"subType": "Circle", "radius": 500.5, "enable": true}));
    let b = features.iter().find(|x| x["id"] == B).unwrap();
    assert_eq!((b["geometry"]["type"].as_str(), b["properties"]["enable"].as_bool()), (Some("Polygon"), Some(false)));

    // docks that cannot be synchronised: nothing is sent
    let before = f.received().len();
    let (_, r) = app.post(&format!("{base}/flight-area/sync"), &token, json!({"device_sn": []})).await;
    assert_eq!(r["code"], 200001, "{r}");
    let (_, r) =
        app.post(&format!("{base}/flight-area/sync"), &token, json!({"device_sn": [dock, "NO-SUCH-DOCK"]})).await;
    assert_eq!(r["code"], 210001, "{r}");
    assert_eq!(f.received().len(), before);
    f.stop().await;
    app.stop().await;
}
