//! Map elements (WorkspaceElementController): drawn, listed, changed and deleted, with the
//! WebSocket telling the workspace.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const SHARED: &str = "e3dea0f5-37f2-4d79-ae58-490af3228060";
const DEFAULT: &str = "e3dea0f5-37f2-4d79-ae58-490af3228011";
const FLIGHT_AREAS: &str = "d58479c8-4a80-4036-aa55-8beffb7158e9";

fn polygon(id: &str, name: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "resource": {
            "type": 2,
            "user_name": "someone else",
            "content": {
                "type": "Feature",
                "properties": {"color": "#2D8CF0", "clampToGround": true},
                "geometry": {"type": "Polygon", "coordinates": [[[113.94, 22.57], [113.95, 22.57], [113.95, 22.58]]]}
            }
        }
    })
}

async fn groups(app: &TestApp, token: &str, query: &str) -> Value {
    let (_, r) = app.get(&format!("/map/api/v1/workspaces/{WS}/element-groups{query}"), token).await;
    assert_eq!(r["code"], 0, "{r}");
    r["data"].clone()
}

fn elements(groups: &Value, group: &str) -> Vec<Value> {
    groups.as_array().unwrap().iter().find(|g| g["id"] == group).unwrap()["elements"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_element_is_drawn_listed_changed_and_deleted_and_the_websocket_says_so() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let mut ws = app.websocket(&token).await;

    // every workspace has DJI's three groups, the flight areas' not handed to the apps
    let all = groups(&app, &token, "").await;
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Pilot Share Layer", "Default Layer", "Custom Flight Area"]);
    assert_eq!(all[0]["type"], 2);
    assert_eq!(all[0]["is_lock"], false);
    let shared = groups(&app, &token, "?is_distributed=true").await;
    assert!(shared.as_array().unwrap().iter().all(|g| g["id"] != FLIGHT_AREAS), "{shared}");
    assert_eq!(groups(&app, &token, &format!("?group_id={DEFAULT}")).await.as_array().unwrap().len(), 1);

    let id = "6a1b4c5e-0000-4e2a-9b7c-0d1e2f3a4b5c";
    let (_, r) = app
        .post(&format!("/map/api/v1/workspaces/{WS}/element-groups/{SHARED}/elements"), &token, polygon(id, "Field"))
        .await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": {"id": id}}));
    let pushed = next_push(&mut ws, "map_element_create").await;
    assert_eq!(pushed["group_id"], SHARED);
    assert_eq!(pushed["id"], id);
    assert_eq!(pushed["resource"]["user_name"], "adminPC", "the token's user drew it");
    assert_eq!(pushed["resource"]["content"]["geometry"]["type"], "Polygon");
    app.wait_for("listed", || async { elements(&groups(&app, &token, "").await, SHARED).len() == 1 }).await;
    let listed = &elements(&groups(&app, &token, "").await, SHARED)[0];
    assert_eq!(listed["name"], "Field");
    assert_eq!(listed["resource"]["type"], 2);
    assert_eq!(listed["create_time"], pushed["create_time"]);
    assert!(listed["create_time"].as_i64().unwrap() > 1_700_000_000_000, "epoch milliseconds");

    // drawing it again is refused
    let (_, r) = app
        .post(&format!("/map/api/v1/workspaces/{WS}/element-groups/{SHARED}/elements"), &token, polygon(id, "Field"))
        .await;
    assert_eq!(r["code"], -1, "{r}");

    let moved = json!({"name": "Field 2", "content": {"type": "Feature", "properties": {"color": "#FF0000", "clampToGround": false},
        "geometry": {"type": "Polygon", "coordinates": [[[113.96, 22.57], [113.97, 22.57], [113.97, 22.59], [113.96, 22.57]]]}}});
    let (_, r) = app.put(&format!("/map/api/v1/workspaces/{WS}/elements/{id}"), &token, moved.clone()).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let pushed = next_push(&mut ws, "map_element_update").await;
    assert_eq!(pushed["name"], "Field 2");
    assert_eq!(pushed["group_id"], SHARED);
    assert_eq!(pushed["resource"]["content"], moved["content"]);
    assert!(
        pushed["update_time"].as_i64() > pushed["create_time"].as_i64()
            || pushed["update_time"] == pushed["create_time"]
    );
    let listed = &elements(&groups(&app, &token, "").await, SHARED)[0];
    assert_eq!(listed["name"], "Field 2");

    let (_, r) =
        app.request(Method::DELETE, &format!("/map/api/v1/workspaces/{WS}/elements/{id}"), Some(&token), None).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(next_push(&mut ws, "map_element_delete").await, json!({"group_id": SHARED, "id": id}));
    app.wait_for("gone", || async { elements(&groups(&app, &token, "").await, SHARED).is_empty() }).await;
    app.stop().await;
}

#[tokio::test]
async fn clearing_a_group_deletes_each_of_its_elements_and_no_other() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let ids: Vec<String> = (0..3).map(|i| format!("6a1b4c5e-0000-4e2a-9b7c-00000000000{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let group = if i < 2 { DEFAULT } else { SHARED };
        let (_, r) = app
            .post(&format!("/map/api/v1/workspaces/{WS}/element-groups/{group}/elements"), &token, polygon(id, "P"))
            .await;
        assert_eq!(r["code"], 0, "{r}");
    }
    let mut ws = app.websocket(&token).await;
    // cleared right away: the group's members come from the event store, not the read model
    let (_, r) = app
        .request(
            Method::DELETE,
            &format!("/map/api/v1/workspaces/{WS}/element-groups/{DEFAULT}/elements"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let mut deleted = vec![
        next_push(&mut ws, "map_element_delete").await["id"].as_str().unwrap().to_string(),
        next_push(&mut ws, "map_element_delete").await["id"].as_str().unwrap().to_string(),
    ];
    deleted.sort();
    assert_eq!(deleted, ids[..2]);
    app.wait_for("cleared", || async {
        let g = groups(&app, &token, "").await;
        elements(&g, DEFAULT).is_empty() && elements(&g, SHARED).len() == 1
    })
    .await;
    // clearing it again is a no-op
    let (_, r) = app
        .request(
            Method::DELETE,
            &format!("/map/api/v1/workspaces/{WS}/element-groups/{DEFAULT}/elements"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r["code"], 0, "{r}");
    app.stop().await;
}

#[tokio::test]
async fn bad_elements_get_clear_errors_and_other_workspaces_cannot_touch_them() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let url = format!("/map/api/v1/workspaces/{WS}/element-groups/{SHARED}/elements");
    let id = "6a1b4c5e-0000-4e2a-9b7c-0d1e2f3a4b5d";
    let mut wrong_type = polygon(id, "P");
    wrong_type["resource"]["type"] = json!(0);
    let mut outside = polygon(id, "P");
    outside["resource"]["content"]["geometry"]["coordinates"] =
        json!([[[200.0, 22.57], [113.95, 22.57], [113.95, 22.58]]]);
    for (body, says) in [
        (wrong_type, "must be Point"),
        (outside, "not a valid Polygon"),
        (polygon("not-a-uuid", "P"), "uuid"),
        (polygon(id, " "), "name"),
        (json!({"id": id}), "Invalid request body"),
    ] {
        let (status, r) = app.post(&url, &token, body).await;
        assert_eq!(status, 200);
        assert_eq!(r["code"], -1, "{r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{r}");
    }
    let (_, r) = app
        .post(&format!("/map/api/v1/workspaces/{WS}/element-groups/no-such-group/elements"), &token, polygon(id, "P"))
        .await;
    assert_eq!(r["message"], "The element group does not exist.");
    let (_, r) = app
        .put(&format!("/map/api/v1/workspaces/{WS}/elements/{id}"), &token, json!({"name": "x", "content": {}}))
        .await;
    assert_eq!(r["code"], -1, "{r}");

    assert_eq!(app.post(&url, &token, polygon(id, "P")).await.1["code"], 0);
    let now = chrono::Utc::now().timestamp();
    let other = app.sign(json!({"iss": "DJI", "sub": "CloudApiSample", "iat": now, "nbf": now, "exp": now + 600,
        "id": "u-other", "username": "other", "user_type": "1", "workspace_id": "another-workspace"}));
    let (_, r) = app
        .request(Method::DELETE, &format!("/map/api/v1/workspaces/another-workspace/elements/{id}"), Some(&other), None)
        .await;
    assert_eq!(r["message"], "The element does not exist.", "{r}");
    let (status, _) = app.get(&format!("/map/api/v1/workspaces/{WS}/element-groups"), &other).await;
    assert_eq!(status, 403);
    app.stop().await;
}
