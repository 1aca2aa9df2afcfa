//! StorageController and downloads against a real S3-compatible server with STS: moto's server
//! (PyPI `moto[server]`, installed by scripts/test-deps.sh) runs S3 and STS on one port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hangar::Components;
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use reqwest::StatusCode;

use crate::helpers::*;

struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server must be installed (scripts/test-deps.sh installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_for("moto_server", Duration::from_secs(30), || async { http.get(&endpoint).send().await.is_ok() }).await;
        Self { child, endpoint }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sts_credentials_let_pilot_upload_and_the_file_url_downloads_the_object() {
    let moto = Moto::start().await;
    let bucket = "hangar-media";
    // create the bucket (moto accepts the call without credentials)
    let res = reqwest::Client::new().put(format!("{}/{bucket}", moto.endpoint)).send().await.unwrap();
    assert!(res.status().is_success(), "create bucket: {}", res.status());

    let mut config = test_config();
    config.storage = "s3".into();
    config.s3_endpoint = moto.endpoint.clone();
    config.s3_bucket = bucket.into();
    config.s3_access_key = "AKIAHANGARSERVICE".into();
    config.s3_secret_key = "service-secret".into();
    config.sts_role_arn = "arn:aws:iam::123456789012:role/hangar-upload".into();
    config.sts_duration_secs = 3600;
    let app =
        TestApp::spawn_with(config, Components { command: true, query: true, projectors: true, bridge: false }).await;
    let token = app.pilot_token().await;

    // 1. Pilot 2 asks for temporary credentials
    let (status, r) = app.post(&format!("/storage/api/v1/workspaces/{WS}/sts"), &token, serde_json::json!({})).await;
    assert_eq!((status, r["code"].clone()), (StatusCode::OK, serde_json::json!(0)), "{r}");
    let d = &r["data"];
    assert_eq!(d["bucket"], bucket);
    assert_eq!(d["endpoint"], moto.endpoint.as_str());
    assert_eq!(d["object_key_prefix"], format!("media/{WS}"));
    assert_eq!(d["provider"], "minio");
    assert_eq!(d["region"], "us-east-1");
    let c = &d["credentials"];
    let expire = c["expire"].as_i64().unwrap();
    assert!((3290..=3300).contains(&expire), "validity minus 300 s: {expire}");
    let (ak, sk, st) = (
        c["access_key_id"].as_str().unwrap(),
        c["access_key_secret"].as_str().unwrap(),
        c["security_token"].as_str().unwrap(),
    );
    assert!(!ak.is_empty() && !sk.is_empty() && !st.is_empty(), "{c}");
    assert_ne!(ak, "AKIAHANGARSERVICE", "temporary keys, not the service account's");

    // 2. Pilot 2 uploads with them
    let pilot_s3 = AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(ak)
        .with_secret_access_key(sk)
        .with_token(st)
        .build()
        .unwrap();
    let key = format!("media/{WS}/DJI_20260101_0001_W.JPG");
    pilot_s3.put(&object_store::path::Path::from(key.as_str()), b"real jpeg bytes".to_vec().into()).await.unwrap();

    // 3. and reports it
    let mut body = callback_body("s3-fp");
    body["object_key"] = key.clone().into();
    let (_, r) = app.upload_callback(&token, body).await;
    assert_eq!(r["data"], key);
    app.wait_for("file projected", || async { app.count("rm_media_files").await == 1 }).await;

    // 4. the web client downloads it through a pre-signed link
    let file_id = shared::domain::media::file_id(WS, "s3-fp");
    let res = app
        .http
        .get(format!("{}/media/api/v1/files/{WS}/file/{file_id}/url", app.base))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&moto.endpoint) && location.contains("X-Amz-Signature="), "{location}");
    let got = reqwest::get(&location).await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"real jpeg bytes");
    app.stop().await;
}

#[tokio::test]
async fn sts_asks_assume_role_for_a_session_policy_limited_to_the_workspace_folder() {
    let moto = Moto::start().await;
    let mut config = test_config();
    config.storage = "s3".into();
    config.s3_endpoint = moto.endpoint.clone();
    config.s3_bucket = "hangar-media".into();
    config.s3_access_key = "AKIAHANGARSERVICE".into();
    config.s3_secret_key = "service-secret".into();
    let app =
        TestApp::spawn_with(config, Components { command: true, query: true, projectors: true, bridge: false }).await;
    assert!(app.s3_base.is_none(), "no own S3 endpoint when objects live in S3");
    let token = app.pilot_token().await;
    let (_, r) = app.post(&format!("/storage/api/v1/workspaces/{WS}/sts"), &token, serde_json::json!({})).await;
    assert_eq!(r["code"], 0, "{r}");
    // moto keeps what AssumeRole carried (it enforces neither policies nor signatures)
    let data: serde_json::Value =
        reqwest::get(format!("{}/moto-api/data.json", moto.endpoint)).await.unwrap().json().await.unwrap();
    let roles = data["sts"]["AssumedRole"].as_array().unwrap();
    let handed = &r["data"]["credentials"]["access_key_id"];
    let role = roles.iter().find(|role| &role["access_key_id"] == handed).unwrap_or_else(|| panic!("{data}"));
    let policy: serde_json::Value = serde_json::from_str(role["policy"].as_str().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements[0]["Effect"], "Allow");
    assert_eq!(statements[0]["Resource"], serde_json::json!([format!("arn:aws:s3:::hangar-media/media/{WS}/*")]));
    assert!(statements[0]["Action"].as_array().unwrap().contains(&"s3:PutObject".into()));
    assert_eq!(statements[1]["Action"], serde_json::json!(["s3:ListBucket"]));
    assert_eq!(statements[1]["Condition"]["StringLike"]["s3:prefix"], serde_json::json!([format!("media/{WS}/*")]));
    assert_eq!(statements.len(), 2, "nothing else is allowed: {policy}");
    app.stop().await;
}
