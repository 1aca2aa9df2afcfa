//! The S3-compatible endpoint of the default run, driven by a real S3 client (boto3, through
//! `s3_client.py` beside this file) with the credentials `sts` hands DJI Pilot 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// Runs boto3 steps against the endpoint; one result per step. (Off the test's runtime thread,
/// which also serves Hangar.)
async fn boto3(endpoint: &str, bucket: &str, steps: Vec<Value>) -> Vec<Value> {
    let (endpoint, bucket) = (endpoint.to_string(), bucket.to_string());
    tokio::task::spawn_blocking(move || boto3_blocking(&endpoint, &bucket, steps)).await.unwrap()
}

fn boto3_blocking(endpoint: &str, bucket: &str, steps: Vec<Value>) -> Vec<Value> {
    use std::io::Write as _;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/s3_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with boto3 (scripts/test-deps.sh installs it)");
    let input = json!({"endpoint": endpoint, "bucket": bucket, "region": "us-east-1", "steps": steps});
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Credentials as a step's fields.
fn creds(sts: &Value) -> Value {
    let c = &sts["credentials"];
    json!({"ak": c["access_key_id"], "sk": c["access_key_secret"], "token": c["security_token"]})
}

fn step(creds: &Value, fields: Value) -> Value {
    let mut s = creds.clone();
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

async fn sts(app: &TestApp, token: &str) -> Value {
    let (status, r) = app.post(&format!("/storage/api/v1/workspaces/{WS}/sts"), token, json!({})).await;
    assert_eq!((status, r["code"].clone()), (StatusCode::OK, json!(0)), "{r}");
    r["data"].clone()
}

/// Every file under the store's folder (parts of multipart uploads included).
fn stored_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

async fn download(app: &TestApp, token: &str, fingerprint: &str) -> Vec<u8> {
    let file_id = shared::domain::media::file_id(WS, fingerprint);
    app.follow(&format!("/media/api/v1/files/{WS}/file/{file_id}/url"), token).await
}

#[tokio::test]
async fn pilot_uploads_a_small_and_a_multipart_file_with_sts_credentials_and_downloads_them() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let d = sts(&app, &token).await;
    let endpoint = app.s3_base.clone().expect("the S3 endpoint runs with the local store");
    // DJI's shape, with the workspace's own folder
    assert_eq!(d["endpoint"], endpoint.as_str());
    assert_eq!(d["bucket"], "hangar");
    assert_eq!(d["object_key_prefix"], format!("media/{WS}"));
    assert_eq!(d["provider"], "minio");
    assert_eq!(d["region"], "us-east-1");
    let expire = d["credentials"]["expire"].as_i64().unwrap();
    assert!((3290..=3300).contains(&expire), "validity minus 300 s: {expire}");
    let c = creds(&d);

    let small_key = format!("media/{WS}/job-1/DJI_0001_W.JPG");
    let big_key = format!("media/{WS}/job-1/DJI_0002_W.MP4");
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let big_file = app.config.storage_dir.with_extension("upload.bin");
    std::fs::write(&big_file, &big).unwrap();
    let r = boto3(
        &endpoint,
        "hangar",
        vec![
            step(&c, json!({"op": "put", "key": small_key, "body": "real jpeg bytes"})),
            step(&c, json!({"op": "upload_file", "key": big_key, "file": big_file})),
            step(&c, json!({"op": "head", "key": big_key})),
            step(&c, json!({"op": "get", "key": small_key, "range": "bytes=5-8"})),
            step(&c, json!({"op": "list", "prefix": format!("media/{WS}/")})),
            step(&c, json!({"op": "list", "prefix": format!("media/{WS}/"), "delimiter": "/"})),
            step(&c, json!({"op": "put", "key": format!("media/{WS}/tmp.txt"), "body": "x"})),
            step(&c, json!({"op": "delete", "key": format!("media/{WS}/tmp.txt")})),
            step(&c, json!({"op": "head", "key": format!("media/{WS}/tmp.txt")})),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&big_file);
    assert_eq!(r[0]["ok"], true, "{r:?}");
    assert_eq!(r[0]["etag"], md5_hex(b"real jpeg bytes"), "PutObject's ETag is the body's MD5, as SDKs check");
    assert_eq!(r[1]["ok"], true, "{r:?}");
    assert_eq!(r[2]["len"], 20 * 1024 * 1024);
    assert_eq!((r[3]["text"].clone(), r[3]["content_range"].clone()), (json!("jpeg"), json!("bytes 5-8/15")));
    assert_eq!(r[4]["keys"], json!([small_key, big_key]));
    assert_eq!(r[5]["prefixes"], json!([format!("media/{WS}/job-1/")]));
    assert_eq!((r[7]["ok"].clone(), r[8]["code"].clone()), (json!(true), json!("404")), "{r:?}");

    // Pilot 2 reports both; the web client downloads them through the file URL
    for (key, fp) in [(&small_key, "s3-small"), (&big_key, "s3-big")] {
        let mut body = callback_body(fp);
        body["object_key"] = json!(key);
        let (_, r) = app.upload_callback(&token, body).await;
        assert_eq!(r["data"], json!(key), "{r}");
    }
    app.wait_for("files listed", || async { app.files(&token, 1, 10).await["pagination"]["total"] == 2 }).await;
    assert_eq!(download(&app, &token, "s3-small").await, b"real jpeg bytes");
    assert!(download(&app, &token, "s3-big").await == big, "the multipart file comes back byte for byte");
    // no part is left behind
    let files = stored_files(&app.config.storage_dir);
    assert_eq!(files.len(), 2, "{files:?}");
    app.stop().await;
}

fn md5_hex(b: &[u8]) -> String {
    let out = Command::new("python3")
        .args(["-c", "import hashlib,sys; print(hashlib.md5(sys.stdin.buffer.read()).hexdigest())"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn the_endpoint_refuses_what_the_credentials_do_not_allow_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let d = sts(&app, &token).await;
    let endpoint = app.s3_base.clone().unwrap();
    let c = creds(&d);
    let keys = shared::storage::UploadKeys::new(&app.config.jwt_secret);
    let now = chrono::Utc::now().timestamp();
    let expired = keys.mint(WS, now - 1);
    let expired =
        json!({"ak": expired.access_key_id, "sk": expired.access_key_secret, "token": expired.security_token});
    let other = keys.mint("another-workspace", now + 600);
    let other = json!({"ak": other.access_key_id, "sk": other.access_key_secret, "token": other.security_token});
    let mut wrong_secret = c.clone();
    wrong_secret["sk"] = json!("0".repeat(64));
    let mut wrong_token = c.clone();
    wrong_token["token"] = json!("0".repeat(64));
    let mut no_token = c.clone();
    no_token.as_object_mut().unwrap().remove("token");
    let forged = {
        // the key id rewritten to another workspace, signed with the real secret
        let ak = c["ak"].as_str().unwrap();
        let forged_ak = format!("{}{}", &ak[..13], hex_upper("another-workspace"));
        json!({"ak": forged_ak, "sk": c["sk"], "token": c["token"]})
    };
    let mine = format!("media/{WS}/DJI_0001.JPG");
    let put = |cr: &Value, key: &str| step(cr, json!({"op": "put", "key": key, "body": "x"}));
    let r = boto3(
        &endpoint,
        "hangar",
        vec![
            put(&expired, &mine),
            put(&c, "media/another-workspace/DJI_0001.JPG"),
            put(&c, "media/DJI_0001.JPG"),
            put(&c, &format!("media/{WS}/../another-workspace/x.JPG")),
            put(&wrong_secret, &mine),
            put(&other, &mine),
            put(&wrong_token, &mine),
            put(&no_token, &mine),
            put(&forged, &mine),
            step(&c, json!({"op": "list", "prefix": "media/"})),
            step(&c, json!({"op": "list", "prefix": "media/another-workspace/"})),
            step(&other, json!({"op": "get", "key": mine})),
        ],
    )
    .await;
    let codes: Vec<_> = r.iter().map(|x| (x["ok"].clone(), x["code"].clone())).collect();
    let refused = |code: &str| (json!(false), json!(code));
    assert_eq!(
        codes,
        vec![
            refused("ExpiredToken"),
            refused("AccessDenied"),
            refused("AccessDenied"),
            refused("AccessDenied"),
            refused("SignatureDoesNotMatch"),
            refused("AccessDenied"),
            refused("InvalidToken"),
            refused("InvalidToken"),
            refused("SignatureDoesNotMatch"),
            refused("AccessDenied"),
            refused("AccessDenied"),
            refused("AccessDenied"),
        ],
        "{r:?}"
    );
    assert_eq!(stored_files(&app.config.storage_dir), Vec::<PathBuf>::new());
    app.stop().await;
}

fn hex_upper(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

#[tokio::test]
async fn bad_bodies_get_s3_errors_and_the_endpoint_keeps_serving() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let d = sts(&app, &token).await;
    let endpoint = app.s3_base.clone().unwrap();
    let c = creds(&d);
    let key = |n: &str| format!("media/{WS}/{n}");
    let r = boto3(
        &endpoint,
        "hangar",
        vec![
            // the connection ends 990 bytes short of the announced length
            step(&c, json!({"op": "raw_put", "key": key("truncated.bin"), "declared": 1000, "body": "0123456789"})),
            // fewer bytes announced than signed: the body read is not the signed one
            step(
                &c,
                json!({"op": "raw_put", "key": key("short.bin"), "declared": 5, "body": "helloworld", "sign_payload": true}),
            ),
            // a completion naming a part never uploaded
            step(&c, json!({"op": "multipart_missing_part", "key": key("parts.bin")})),
            step(&c, json!({"op": "multipart_abort", "key": key("aborted.bin")})),
            step(&c, json!({"op": "put", "key": key("after.txt"), "body": "still serving"})),
            step(&c, json!({"op": "list", "prefix": key("")})),
        ],
    )
    .await;
    assert_eq!((r[0]["status"].clone(), r[0]["code"].clone()), (json!(400), json!("IncompleteBody")), "{r:?}");
    assert_eq!((r[1]["ok"].clone(), r[1]["code"].clone()), (json!(false), json!("BadDigest")), "{r:?}");
    assert_eq!((r[2]["ok"].clone(), r[2]["code"].clone()), (json!(false), json!("InvalidPart")), "{r:?}");
    assert_eq!(r[3]["after_abort"], "NoSuchUpload", "{r:?}");
    assert_eq!(r[4]["ok"], true, "{r:?}");
    assert_eq!(r[5]["keys"], json!([key("after.txt")]), "nothing of the bad requests was stored: {r:?}");
    let files = stored_files(&app.config.storage_dir);
    assert_eq!(files.len(), 1, "no part or partial file left: {files:?}");
    app.stop().await;
}

#[tokio::test]
async fn upload_callback_refuses_keys_outside_the_workspace_folder() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    for key in [
        "../../../../etc/passwd".to_string(),
        "/etc/passwd".to_string(),
        format!("media/{WS}/../../etc/passwd"),
        "media/another-workspace/DJI_0001.JPG".to_string(),
        "media/DJI_0001.JPG".to_string(),
        String::new(),
    ] {
        let mut body = callback_body("refused");
        body["object_key"] = json!(key);
        let (status, r) = app.upload_callback(&token, body).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert_eq!(r["code"], -1, "{key}: {r}");
        assert!(r["message"].as_str().unwrap().contains("object_key"), "{r}");
    }
    // a good key afterwards is the only file recorded
    let (_, r) = app.upload_callback(&token, callback_body("accepted")).await;
    assert_eq!(r["code"], 0, "{r}");
    app.wait_for("file listed", || async { app.files(&token, 1, 10).await["pagination"]["total"] == 1 }).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'media_file'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_bound_dock_uploads_with_the_credentials_of_storage_config_get() {
    use crate::devices::{app_with_bridge, bind, device_client, fleet, prefix};
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let dock = f.docks()[0].dock_sn.clone();
    bind(&app, &token, &dock).await;
    app.wait_for("dock bound", || async {
        sqlx::query_scalar::<_, bool>("SELECT bound FROM rm_devices WHERE device_sn = $1")
            .bind(&dock)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            == Some(true)
    })
    .await;
    let (client, mut rx) = device_client(&[format!("thing/product/{dock}/requests_reply")]).await;
    // every Hangar of the tests running at once shares the broker, and those that do not know this
    // dock answer too (no workspace): wait for this one's answer
    let tid = uuid::Uuid::new_v4().to_string();
    let msg = json!({"tid": tid, "bid": tid, "timestamp": 1, "gateway": dock, "method": "storage_config_get", "data": {"module": 0}});
    client
        .publish(format!("thing/product/{dock}/requests"), rumqttc::QoS::AtLeastOnce, false, msg.to_string())
        .await
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let (topic, v) = rx.recv().await.unwrap();
            if topic.ends_with("/requests_reply") && v["tid"] == tid.as_str() && v["data"]["result"] == 0 {
                break v["data"].clone();
            }
        }
    })
    .await
    .expect("storage_config_get answered with credentials");
    assert_eq!(reply["result"], 0, "{reply}");
    let out = &reply["output"];
    assert_eq!(out["object_key_prefix"], format!("media/{WS}"));
    assert_eq!(out["endpoint"], app.s3_base.clone().unwrap().as_str());
    let c = creds(out);
    let key = format!("media/{WS}/DJI_dock_0001.JPG");
    let r = boto3(
        out["endpoint"].as_str().unwrap(),
        out["bucket"].as_str().unwrap(),
        vec![
            step(&c, json!({"op": "put", "key": key, "body": "dock photo"})),
            step(&c, json!({"op": "get", "key": key})),
            step(&c, json!({"op": "put", "key": "media/another-workspace/x.JPG", "body": "x"})),
        ],
    )
    .await;
    assert_eq!(r[1]["text"], "dock photo", "{r:?}");
    assert_eq!(r[2]["code"], "AccessDenied", "{r:?}");
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn presigned_links_download_and_abandoned_uploads_are_swept() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let d = sts(&app, &token).await;
    let endpoint = app.s3_base.clone().unwrap();
    let c = creds(&d);
    let key = format!("media/{WS}/DJI_presigned.JPG");
    let r = boto3(
        &endpoint,
        "hangar",
        vec![
            step(&c, json!({"op": "put", "key": key, "body": "presigned bytes"})),
            step(&c, json!({"op": "presign_get", "key": key})),
            step(&c, json!({"op": "multipart_leave", "key": format!("media/{WS}/left.bin")})),
        ],
    )
    .await;
    // a pre-signed GET (security token in the query) works without any header
    let url = r[1]["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Security-Token="), "{url}");
    let got = reqwest::get(url).await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.text().await.unwrap(), "presigned bytes");
    let tampered = url.replace("DJI_presigned", "DJI_other");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), StatusCode::FORBIDDEN);

    // the abandoned upload: its part waits until a sweep finds it older than the limit
    let upload_id = r[2]["upload_id"].as_str().unwrap().to_string();
    assert_eq!(stored_files(&app.config.storage_dir).len(), 3, "object, upload marker and part");
    // a file a crash left while it was being received
    let stray = app.config.storage_dir.join(".multipart-uploads/incoming/0123456789abcdef0123456789abcdef");
    std::fs::write(&stray, b"half a body").unwrap();
    let store = shared::storage::Storage::new(&app.config).unwrap().store();
    let old = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    assert_eq!(command_api::s3_endpoint::sweep_once(&store, old).await.unwrap(), 0, "a recent upload stays");
    let later = chrono::Utc::now() + chrono::TimeDelta::minutes(1);
    assert_eq!(command_api::s3_endpoint::sweep_once(&store, later).await.unwrap(), 1);
    assert_eq!(stored_files(&app.config.storage_dir).len(), 1, "only the object is left");
    assert!(!stray.exists(), "the stray incoming file is swept with the abandoned upload");
    let r = boto3(
        &endpoint,
        "hangar",
        vec![step(&c, json!({"op": "upload_part", "key": format!("media/{WS}/left.bin"), "upload_id": upload_id}))],
    )
    .await;
    assert_eq!(r[0]["code"], "NoSuchUpload", "{r:?}");
    app.stop().await;
}

/// An S3 client in Rust (object_store's, SigV4 with the body's SHA-256 signed) with `sts`'s
/// credentials, for what the steps of `s3_client.py` do not show: ETags of parts and completions.
fn rust_client(d: &Value) -> object_store::aws::AmazonS3 {
    let c = &d["credentials"];
    let s = |v: &Value| v.as_str().unwrap().to_string();
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s(&d["endpoint"]))
        .with_allow_http(true)
        .with_bucket_name(s(&d["bucket"]))
        .with_region(s(&d["region"]))
        .with_access_key_id(s(&c["access_key_id"]))
        .with_secret_access_key(s(&c["access_key_secret"]))
        .with_token(s(&c["security_token"]))
        .build()
        .unwrap()
}

fn md5_of(b: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(b).into()
}

/// Bytes that differ from one upload to the next.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[tokio::test]
async fn uploads_land_whole_on_disk_with_s3_etags() {
    use object_store::{ObjectStore as _, PutPayload};
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let store = rust_client(&sts(&app, &token).await);
    let on_disk = |key: &str| std::fs::read(app.config.storage_dir.join(key)).unwrap();

    // one PutObject of several batches and a ragged end, and an empty one
    let key = format!("media/{WS}/put.bin");
    let body = noise(5 * 1024 * 1024 + 12_345, 1);
    let put = store.put(&key.as_str().into(), PutPayload::from(body.clone())).await.unwrap();
    assert_eq!(put.e_tag.unwrap().trim_matches('"'), hex::encode(md5_of(&body)), "PutObject's ETag is the body's MD5");
    assert!(on_disk(&key) == body, "the file holds exactly the body");
    let empty = format!("media/{WS}/empty.bin");
    let put = store.put(&empty.as_str().into(), PutPayload::new()).await.unwrap();
    assert_eq!(put.e_tag.unwrap().trim_matches('"'), hex::encode(md5_of(b"")));
    assert_eq!(on_disk(&empty), b"");

    // a multipart upload: each part's ETag its MD5, the object's that of the parts' MD5s, "-2"
    let key = format!("media/{WS}/parts.bin");
    let (first, second) = (noise(6 * 1024 * 1024, 2), noise(1024 * 1024 + 7, 3));
    let mut upload = store.put_multipart(&key.as_str().into()).await.unwrap();
    let parts = [upload.put_part(PutPayload::from(first.clone())), upload.put_part(PutPayload::from(second.clone()))];
    futures::future::try_join_all(parts).await.unwrap();
    let done = upload.complete().await.unwrap();
    let expected = format!("{}-2", hex::encode(md5_of(&[md5_of(&first), md5_of(&second)].concat())));
    assert_eq!(done.e_tag.unwrap().trim_matches('"'), expected, "S3's ETag of a multipart object");
    assert!(on_disk(&key) == [first, second].concat(), "the file holds the parts in order, and nothing else");

    let mut files = stored_files(&app.config.storage_dir);
    files.sort();
    let root = &app.config.storage_dir;
    let expected: Vec<PathBuf> =
        ["empty.bin", "parts.bin", "put.bin"].iter().map(|f| root.join(format!("media/{WS}/{f}"))).collect();
    assert_eq!(files, expected, "no part, marker or incoming file is left");
    app.stop().await;
}

/// A PUT through a pre-signed URL announcing `declared` bytes, of which only `sent` arrive: the
/// client then half-closes and reads the answer (`answer`), or drops the connection.
async fn cut_put(url: &reqwest::Url, declared: usize, sent: usize, answer: bool) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut conn = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n\r\n",
        url.path(),
        url.query().unwrap()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&noise(sent, 4)).await.unwrap();
    if !answer {
        return String::new();
    }
    conn.shutdown().await.unwrap();
    let mut text = String::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_string(&mut text)).await;
    text
}

#[tokio::test]
async fn a_body_cut_short_leaves_no_file_behind() {
    use object_store::{signer::Signer as _, ObjectStore as _};
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let store = rust_client(&sts(&app, &token).await);
    let key = format!("media/{WS}/cut.bin");
    let url = store
        .signed_url(reqwest::Method::PUT, &key.as_str().into(), std::time::Duration::from_secs(600))
        .await
        .unwrap();
    // several MiB arrive (and are written) before the body stops
    let answer = cut_put(&url, 16 * 1024 * 1024, 6 * 1024 * 1024, true).await;
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("<Code>IncompleteBody</Code>"), "{answer}");
    assert_eq!(stored_files(&app.config.storage_dir), Vec::<PathBuf>::new(), "nothing under the key, no incoming file");
    // the client vanishes: the request is dropped with its incoming file
    cut_put(&url, 16 * 1024 * 1024, 6 * 1024 * 1024, false).await;
    app.wait_for("the incoming file removed", || async { stored_files(&app.config.storage_dir).is_empty() }).await;
    let head = store.head(&key.as_str().into()).await;
    assert!(matches!(head, Err(object_store::Error::NotFound { .. })), "{head:?}");
    app.stop().await;
}
