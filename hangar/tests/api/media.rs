//! MediaController and FileController: DJI Pilot 2's media upload path end to end.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn upload_callback_shows_in_the_file_list_with_every_field() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let (status, r) = app.upload_callback(&token, callback_body("7F78C9F1999425CB61F10E1FE206009E")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        r,
        json!({"code": 0, "message": "success", "data": format!("media/{WS}/DJI_7F78C9F1999425CB61F10E1FE206009E.JPG")})
    );

    app.wait_for("file listed", || async { app.files(&token, 1, 10).await["pagination"]["total"] == 1 }).await;
    let data = app.files(&token, 1, 10).await;
    assert_eq!(data["pagination"], json!({"page": 1, "page_size": 10, "total": 1}));
    let f = &data["list"][0];
    let expected_id = shared::domain::media::file_id(WS, "7F78C9F1999425CB61F10E1FE206009E");
    assert_eq!(f["file_id"], expected_id.as_str());
    assert_eq!(f["file_name"], "DJI_7F78C9F1999425CB61F10E1FE206009E.JPG");
    assert_eq!(f["file_path"], "DJI_202208311455_008_Waypoint1");
    assert_eq!(f["object_key"], format!("media/{WS}/DJI_7F78C9F1999425CB61F10E1FE206009E.JPG"));
    assert_eq!(f["is_original"], true);
    assert_eq!(f["drone"], "1AD3CA2VL3LAD6");
    assert_eq!(f["payload"], "M30T Camera", "payload model 1-53-0 by its dictionary name");
    assert_eq!(f["tinny_fingerprint"], "tiny-7F78C9F1999425CB61F10E1FE206009E");
    assert_eq!(f["fingerprint"], "7F78C9F1999425CB61F10E1FE206009E");
    assert_eq!(f["job_id"], "job-1");
    let ct = f["create_time"].as_str().unwrap();
    assert!(chrono::NaiveDateTime::parse_from_str(ct, "%Y-%m-%d %H:%M:%S").is_ok(), "{ct}");
    assert_eq!(f.as_object().unwrap().len(), 11, "exactly the MediaFileDTO fields: {f}");

    // the event is in Postgres with its metadata, and on JetStream under its subject
    let (event_type, payload): (String, serde_json::Value) =
        sqlx::query_as("SELECT event_type, payload FROM events WHERE aggregate_type = 'media_file'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(event_type, "MediaFileUploaded");
    assert_eq!(payload["MediaFileUploaded"]["metadata"]["shoot_position"]["lat"], 22.577666);
    assert_eq!(payload["MediaFileUploaded"]["sub_file_type"], 0);
    let msgs = app.stream_messages(&app.names.es_subject("media_file", &expected_id)).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(header(&msgs[0], "Nats-Msg-Id").unwrap(), format!("media_file/{expected_id}/1"));
    app.stop().await;
}

#[tokio::test]
async fn the_same_callback_twice_is_one_file() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    for _ in 0..2 {
        let (_, r) = app.upload_callback(&token, callback_body("same-fp")).await;
        assert_eq!(r["code"], 0);
    }
    // DJI's demo integer form of sub_file_type is the same file too
    let mut again = callback_body("same-fp");
    again["sub_file_type"] = json!(0);
    assert_eq!(app.upload_callback(&token, again).await.1["code"], 0);
    app.wait_for("file listed", || async { app.count("rm_media_files").await == 1 }).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'media_file'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.files(&token, 1, 10).await["pagination"]["total"], 1);
    app.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_identical_callbacks_make_one_file() {
    let app = Arc::new(TestApp::spawn().await);
    let token = app.pilot_token().await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move { app.upload_callback(&token, callback_body("race")).await }));
    }
    for t in tasks {
        let (status, r) = t.await.unwrap();
        assert_eq!((status, r["code"].clone()), (StatusCode::OK, json!(0)), "{r}");
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'media_file'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
    app.wait_for("file listed", || async { app.count("rm_media_files").await == 1 }).await;
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn fifty_concurrent_commands_on_one_aggregate_lose_no_update() {
    let app = Arc::new(TestApp::spawn().await);
    let token = app.pilot_token().await;
    let mut tasks = Vec::new();
    for i in 1..=50 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            app.post(
                &format!("/media/api/v1/workspaces/{WS}/group-upload-callback"),
                &token,
                json!({"file_group_id": "job-50", "file_count": 50, "file_uploaded_count": i}),
            )
            .await
        }));
    }
    for t in tasks {
        let (status, r) = t.await.unwrap();
        assert_eq!((status, r.clone()), (StatusCode::OK, json!({"code": 0, "message": "success", "data": ""})));
    }
    // every command is an event, with gapless sequences 1..=50
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_type = 'file_group' ORDER BY sequence")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());
    app.wait_for("all reports projected", || async {
        sqlx::query_scalar::<_, i32>("SELECT reports FROM rm_media_groups WHERE file_group_id = 'job-50'")
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            == Some(50)
    })
    .await;
    let subject = app.names.es_subject("file_group", &shared::domain::file_group::group_id(WS, "job-50"));
    assert_eq!(app.stream_messages(&subject).await.len(), 50);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn fast_upload_and_tiny_fingerprints_know_stored_files() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let fast = format!("/media/api/v1/workspaces/{WS}/fast-upload");
    let body = json!({"fingerprint": "fp-a", "name": "a.jpg", "path": "",
                      "ext": {"drone_model_key": "0-67-0", "is_original": true, "payload_model_key": "1-53-0", "tinny_fingerprint": "tiny-fp-a", "sn": "X"}});
    let (_, r) = app.post(&fast, &token, body.clone()).await;
    assert_eq!(r, json!({"code": -1, "message": "fp-adon't exist."}));
    app.upload_callback(&token, callback_body("fp-a")).await;
    app.wait_for("file projected", || async { app.count("rm_media_files").await == 1 }).await;
    let (_, r) = app.post(&fast, &token, body).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));

    let (_, r) = app
        .post(
            &format!("/media/api/v1/workspaces/{WS}/files/tiny-fingerprints"),
            &token,
            json!({"tiny_fingerprints": ["nope", "tiny-fp-a"]}),
        )
        .await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": {"tiny_fingerprints": ["tiny-fp-a"]}}));
    app.stop().await;
}

#[tokio::test]
async fn file_list_pages_newest_first() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    for i in 0..5 {
        app.upload_callback(&token, callback_body(&format!("page-{i}"))).await;
    }
    app.wait_for("5 files", || async { app.count("rm_media_files").await == 5 }).await;
    let p1 = app.files(&token, 1, 2).await;
    assert_eq!(p1["pagination"], json!({"page": 1, "page_size": 2, "total": 5}));
    assert_eq!(p1["list"][0]["fingerprint"], "page-4");
    assert_eq!(p1["list"][1]["fingerprint"], "page-3");
    let p3 = app.files(&token, 3, 2).await;
    assert_eq!(p3["list"].as_array().unwrap().len(), 1);
    assert_eq!(p3["list"][0]["fingerprint"], "page-0");
    // DJI's defaults: page 1, page_size 10
    let (_, d) = app.get(&format!("/media/api/v1/files/{WS}/files"), &token).await;
    assert_eq!(d["data"]["pagination"]["page_size"], 10);
    app.stop().await;
}

#[tokio::test]
async fn file_url_redirects_to_a_signed_link_of_the_object() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let storage = shared::storage::Storage::new(&app.config).unwrap();
    let key = format!("media/{WS}/DJI_link.JPG");
    storage
        .store()
        .put(&object_store::path::Path::from(key.as_str()), object_store::PutPayload::from(b"jpeg bytes".to_vec()))
        .await
        .unwrap();
    app.upload_callback(&token, callback_body("link")).await;
    app.wait_for("file projected", || async { app.count("rm_media_files").await == 1 }).await;
    let file_id = shared::domain::media::file_id(WS, "link");
    let res = app
        .http
        .get(format!("{}/media/api/v1/files/{WS}/file/{file_id}/url", app.base))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND, "DJI answers 302");
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains(&format!("/storage/api/v1/objects/media/{WS}/DJI_link.JPG?expires=")), "{location}");
    // the link works without a token, and only with its signature
    let location = location.replace("http://127.0.0.1:6789", &app.base);
    let body = app.http.get(&location).send().await.unwrap();
    assert_eq!(body.status(), StatusCode::OK);
    assert_eq!(body.bytes().await.unwrap().as_ref(), b"jpeg bytes");
    let forged = location.replace("signature=", "signature=0");
    assert_eq!(app.http.get(&forged).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    app.stop().await;
}
