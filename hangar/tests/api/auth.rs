//! LoginController, UserController, WorkspaceController; the token on every endpoint; the workspace
//! guard; CORS; the envelope for bad input.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn claims(workspace_id: &str, exp_offset: i64) -> Value {
    let now = Utc::now().timestamp();
    json!({"iss": "DJI", "sub": "CloudApiSample", "iat": now, "nbf": now, "exp": now + exp_offset,
           "id": PILOT_ID, "username": "pilot", "user_type": "2", "workspace_id": workspace_id})
}

#[tokio::test]
async fn login_answers_dji_user_dto_for_web_and_pilot() {
    let app = TestApp::spawn().await;
    let web = app.login("adminPC", "adminPC", 1).await;
    assert_eq!(web["code"], 0, "{web}");
    assert_eq!(web["message"], "success");
    let d = &web["data"];
    assert_eq!(d["user_id"], ADMIN_ID);
    assert_eq!(d["username"], "adminPC");
    assert_eq!(d["workspace_id"], WS);
    assert_eq!(d["user_type"], 1);
    assert_eq!(d["mqtt_username"], "admin");
    assert_eq!(d["mqtt_password"], "admin");
    assert_eq!(d["mqtt_addr"], "tcp://127.0.0.1:1883");
    let token = d["access_token"].as_str().unwrap();
    // the token carries DJI's claim set, user_type as a string
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&base64_url(payload)).unwrap();
    for k in ["iss", "sub", "iat", "nbf", "exp", "id", "username", "workspace_id"] {
        assert!(claims.get(k).is_some(), "claim {k} missing in {claims}");
    }
    assert_eq!(claims["user_type"], "1");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 86400);

    let pilot = app.login("pilot", "pilot123", 2).await;
    assert_eq!(pilot["data"]["user_type"], 2);
    assert_eq!(pilot["data"]["mqtt_password"], "pilot123");
    app.stop().await;
}

fn base64_url(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = A.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

#[tokio::test]
async fn login_failures_answer_dji_codes() {
    let app = TestApp::spawn().await;
    let r = app.login("nobody", "x", 1).await;
    assert_eq!((r["code"].clone(), r["message"].clone()), (json!(401), json!("invalid username")));
    let r = app.login("pilot", "wrong", 2).await;
    assert_eq!((r["code"].clone(), r["message"].clone()), (json!(401), json!("invalid password")));
    let r = app.login("pilot", "pilot123", 1).await;
    assert_eq!((r["code"].clone(), r["message"].clone()), (json!(-1), json!("The account type does not match.")));
    assert!(r.get("data").is_none());
    let (status, r) = app.request(Method::POST, "/manage/api/v1/login", None, Some(json!({"username": "pilot"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["code"], -1);
    assert!(r["message"].as_str().unwrap().contains("password"), "{r}");
    app.stop().await;
}

#[tokio::test]
async fn refresh_renews_a_signed_token_even_expired_and_refuses_tampered_unsigned_and_foreign_ones() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let (status, r) = app.request(Method::POST, "/manage/api/v1/token/refresh", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["data"]["username"], "pilot");
    assert_eq!(r["data"]["workspace_id"], WS);
    let fresh = r["data"]["access_token"].as_str().unwrap().to_string();
    let (status, _) = app.get("/manage/api/v1/users/current", &fresh).await;
    assert_eq!(status, StatusCode::OK);

    // DJI Pilot 2 refreshes after the tablet slept: expired an hour ago, within the grace period
    let slept = app.sign(claims(WS, -3600));
    let (status, r) = app.request(Method::POST, "/manage/api/v1/token/refresh", Some(&slept), None).await;
    assert_eq!((status, r["code"].clone()), (StatusCode::OK, json!(0)), "{r}");
    let renewed = r["data"]["access_token"].as_str().unwrap().to_string();
    let (status, _) = app.get("/manage/api/v1/users/current", &renewed).await;
    assert_eq!(status, StatusCode::OK);

    let expired = app.sign(claims(WS, -(app.config.jwt_refresh_grace_secs + 3600)));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect(); // tampered payload, old signature
    let tampered = parts.join(".");
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", token.split('.').nth(1).unwrap());
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(WS, 3600),
        &jsonwebtoken::EncodingKey::from_secret(b"CloudApiSample"),
    )
    .unwrap();
    for bad in [expired.as_str(), tampered.as_str(), unsigned.as_str(), other_secret.as_str(), "garbage"] {
        let (status, r) = app.request(Method::POST, "/manage/api/v1/token/refresh", Some(bad), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(r, json!({"code": -1, "message": "token is null"}));
    }
    let (status, _) = app.request(Method::POST, "/manage/api/v1/token/refresh", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn endpoints_answer_401_without_a_valid_token() {
    let app = TestApp::spawn().await;
    let expired = app.sign(claims(WS, -3600));
    for (method, path) in [
        (Method::GET, "/manage/api/v1/users/current".to_string()),
        (Method::GET, format!("/media/api/v1/files/{WS}/files")),
        (Method::POST, format!("/media/api/v1/workspaces/{WS}/upload-callback")),
        (Method::PUT, format!("/manage/api/v1/users/{WS}/users/{PILOT_ID}")),
        (Method::POST, format!("/storage/api/v1/workspaces/{WS}/sts")),
    ] {
        for token in [None, Some("not-a-jwt"), Some(expired.as_str())] {
            let mut req = app.http.request(method.clone(), format!("{}{path}", app.base));
            if let Some(t) = token {
                req = req.header("x-auth-token", t);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
            assert_eq!(res.text().await.unwrap(), "", "401 has an empty body");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn another_workspace_in_the_path_is_refused_without_data() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let (status, r) = app.upload_callback(&token, callback_body("fp-own")).await;
    assert_eq!((status, r["code"].clone()), (StatusCode::OK, json!(0)));
    app.wait_for("file projected", || async { app.count("rm_media_files").await == 1 }).await;

    // a token of another workspace asking for this workspace's data
    let foreign = app.sign(claims("0d1e7a2c-0000-4000-8000-000000000001", 3600));
    let (status, r) = app.get(&format!("/media/api/v1/files/{WS}/files"), &foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(r["code"], 403);
    assert!(r.get("data").is_none(), "{r}");
    let (status, _) = app.upload_callback(&foreign, callback_body("fp-foreign")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, r) = app.get(&format!("/manage/api/v1/users/{WS}/users"), &foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!r.to_string().contains("pilot123"));
    // a path naming a workspace that does not exist answers the same as one that does
    let (status2, r2) = app.get("/media/api/v1/files/no-such-workspace/files", &foreign).await;
    assert_eq!((status2, r2), (StatusCode::FORBIDDEN, r));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.count("rm_media_files").await, 1, "the foreign callback wrote nothing");
    app.stop().await;
}

#[tokio::test]
async fn current_user_workspace_and_user_list() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (_, r) = app.get("/manage/api/v1/users/current", &token).await;
    assert_eq!(r["code"], 0);
    assert_eq!(r["data"]["username"], "adminPC");
    assert_eq!(r["data"]["mqtt_addr"], "tcp://127.0.0.1:1883");
    assert!(r["data"].get("access_token").is_none());

    let (_, r) = app.get("/manage/api/v1/workspaces/current", &token).await;
    assert_eq!(r["data"]["workspace_id"], WS);
    assert_eq!(r["data"]["workspace_name"], "Test Group One");
    assert_eq!(r["data"]["workspace_desc"], "Cloud Sample Test Platform");
    assert_eq!(r["data"]["platform_name"], "Cloud Api Platform");
    assert_eq!(r["data"]["bind_code"], "qwe");
    assert!(r["data"]["id"].is_i64());

    let (_, r) = app.get(&format!("/manage/api/v1/users/{WS}/users?page=1&page_size=1"), &token).await;
    assert_eq!(r["data"]["pagination"], json!({"page": 1, "page_size": 1, "total": 2}));
    let (_, r) = app.get(&format!("/manage/api/v1/users/{WS}/users"), &token).await;
    assert_eq!(r["data"]["pagination"]["page_size"], 50);
    let list = r["data"]["list"].as_array().unwrap();
    let pilot = list.iter().find(|u| u["username"] == "pilot").unwrap();
    assert_eq!(pilot["user_type"], "Pilot");
    assert_eq!(pilot["workspace_name"], "Test Group One");
    assert_eq!(pilot["user_id"], PILOT_ID);
    assert!(pilot["create_time"].as_str().unwrap().len() == 19, "yyyy-MM-dd HH:mm:ss: {pilot}");
    app.stop().await;
}

#[tokio::test]
async fn user_update_changes_mqtt_credentials_only() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let path = format!("/manage/api/v1/users/{WS}/users/{PILOT_ID}");
    let (_, r) =
        app.put(&path, &token, json!({"mqtt_username": "p2", "mqtt_password": "s3cret", "username": "hacker"})).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    app.wait_for("credentials projected", || async {
        app.login("pilot", "pilot123", 2).await["data"]["mqtt_username"] == "p2"
    })
    .await;
    let r = app.login("pilot", "pilot123", 2).await;
    assert_eq!(r["data"]["mqtt_password"], "s3cret");
    assert_eq!(r["data"]["username"], "pilot");

    let (_, r) =
        app.put(&format!("/manage/api/v1/users/{WS}/users/no-such-user"), &token, json!({"mqtt_username": "x"})).await;
    assert_eq!(r["code"], -1);
    assert_eq!(r["message"], "The user does not exist.");
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_envelope_never_a_server_error() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let cb = format!("/media/api/v1/workspaces/{WS}/upload-callback");
    for body in ["{not json", "[]", "{\"object_key\": 5}", "{\"object_key\":\"k\",\"name\":\"n\"}", "null"] {
        let (status, r) = app.post_raw(&cb, &token, body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(r["code"], -1, "{body}: {r}");
        assert!(r["message"].as_str().unwrap().starts_with("Invalid request body"), "{r}");
    }
    let mut wrong = callback_body("fp");
    wrong["sub_file_type"] = json!("SIDEWAYS");
    let (_, r) = app.upload_callback(&token, wrong).await;
    assert!(r["message"].as_str().unwrap().contains("sub_file_type"), "{r}");
    let (_, r) = app.get(&format!("/media/api/v1/files/{WS}/files?page=abc"), &token).await;
    assert_eq!(r["code"], -1, "{r}");
    let (status, r) = app.get(&format!("/media/api/v1/files/{WS}/file/no-such-file/url"), &token).await;
    assert_eq!((status, r["code"].clone()), (StatusCode::OK, json!(-1)));
    let (status, r) = app.get("/no/such/endpoint", &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(r["code"], -1);
    let (status, r) = app.request(Method::DELETE, &cb, Some(&token), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r["code"], -1);
    app.stop().await;
}

#[tokio::test]
async fn cors_headers_and_unauthenticated_options() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .request(Method::OPTIONS, format!("{}/media/api/v1/files/{WS}/files", app.base))
        .header("Origin", "http://web.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("DELETE"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("x-auth-token"));
    assert_eq!(res.text().await.unwrap(), "");
    let res = app.http.get(format!("{}/manage/api/v1/users/current", app.base)).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*", "401s carry CORS too");
    app.stop().await;
}

#[tokio::test]
async fn websocket_needs_a_token_in_the_query() {
    use futures::StreamExt;
    let app = TestApp::spawn().await;
    let url = format!("ws://{}/api/v1/ws", app.addr);
    let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 401),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    let err = tokio_tungstenite::connect_async(format!("{url}?x-auth-token=bad")).await.unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 401));
    let token = app.admin_token().await;
    let (mut ws, res) = tokio_tungstenite::connect_async(format!("{url}?x-auth-token={token}")).await.unwrap();
    assert_eq!(res.status(), 101);
    // the connection stays open; nothing is pushed without device activity
    let next = tokio::time::timeout(std::time::Duration::from_millis(300), ws.next()).await;
    assert!(next.is_err(), "no message expected: {next:?}");
    app.stop().await;
}
