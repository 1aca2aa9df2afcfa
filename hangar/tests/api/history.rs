//! Time travel: an aggregate's state at a past time or sequence (`hangar state-at`, the history
//! endpoint) and a workspace's devices as of a past time, each checked against the aggregate's
//! events applied by hand.

use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::Aggregate;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use shared::domain::{device::Device, media, media::MediaFile, user::User};
use shared::history::{state_at, Point};

use crate::devices::{app_with_bridge, bind, fleet, prefix};
use crate::helpers::*;

/// Up to where events are applied by hand.
#[derive(Clone, Copy)]
enum Upto {
    Time(DateTime<Utc>),
    Sequence(i64),
}

/// The aggregate's events read straight from the `events` table up to `upto`, each applied with the
/// aggregate's own `apply`, serialised; `None` when it had no event by then.
async fn by_hand<A: Aggregate + Serialize>(app: &TestApp, id: &str, upto: Upto) -> Option<Value> {
    let sql = |upto: &str| {
        format!(
            "SELECT payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND {upto} ORDER BY sequence"
        )
    };
    let payloads: Vec<Value> = match upto {
        Upto::Time(t) => {
            sqlx::query_scalar(&sql("recorded_at <= $3")).bind(A::TYPE).bind(id).bind(t).fetch_all(&app.pool).await
        }
        Upto::Sequence(n) => {
            sqlx::query_scalar(&sql("sequence <= $3")).bind(A::TYPE).bind(id).bind(n).fetch_all(&app.pool).await
        }
    }
    .unwrap();
    if payloads.is_empty() {
        return None;
    }
    let mut aggregate = A::default();
    for p in payloads {
        aggregate.apply(serde_json::from_value(p).unwrap());
    }
    Some(serde_json::to_value(&aggregate).unwrap())
}

/// A moment clearly between what happened before and what happens after it.
async fn mark() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let t = Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    t
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The history endpoint for one aggregate; `query` is `at=…` or `sequence=…`.
async fn past(app: &TestApp, token: &str, ws: &str, kind: &str, id: &str, query: &str) -> Value {
    let (status, body) =
        app.get(&format!("/history/api/v1/workspaces/{ws}/aggregates/{kind}/{id}?{query}"), token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Checks the library, the endpoint and the hand-applied events agree at `upto`.
async fn agree<A: Aggregate + Serialize>(app: &TestApp, token: &str, id: &str, upto: Upto) -> Option<Value> {
    let hand = by_hand::<A>(app, id, upto).await;
    let (point, query) = match upto {
        Upto::Time(t) => (Point::At(t), format!("at={}", rfc3339(t))),
        Upto::Sequence(n) => (Point::Sequence(n), format!("sequence={n}")),
    };
    let lib = state_at(&app.pool, A::TYPE, id, point).await.ok().map(|p| p.state);
    assert_eq!(lib, hand, "{} {id} at {query}", A::TYPE);
    let http = past(app, token, WS, A::TYPE, id, &query).await;
    match &hand {
        Some(state) => {
            assert_eq!(http["code"], 0, "{http}");
            // the envelope leaves out nulls, as DJI's does
            assert_eq!(http["data"]["state"], shared::error::strip_nulls(state.clone()), "{query}");
            assert_eq!(http["data"]["workspace_id"], WS);
        }
        None => assert_eq!(http["code"], -1, "{http}"),
    }
    hand
}

#[tokio::test]
async fn state_at_of_media_files_and_users_is_their_events_applied_up_to_that_point() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let t0 = mark().await;
    app.upload_callback(&token, callback_body("h-a")).await;
    let t1 = mark().await;
    app.upload_callback(&token, callback_body("h-b")).await;
    let users = format!("/manage/api/v1/users/{WS}/users/{PILOT_ID}");
    assert_eq!(app.put(&users, &token, json!({"mqtt_password": "p1"})).await.1["code"], 0);
    let t2 = mark().await;
    assert_eq!(app.put(&users, &token, json!({"mqtt_username": "u2", "mqtt_password": "p2"})).await.1["code"], 0);
    app.upload_callback(&token, callback_body("h-a")).await; // the same file again: no new event
    let t3 = mark().await;

    let (a, b) = (media::file_id(WS, "h-a"), media::file_id(WS, "h-b"));
    for t in [t0, t1, t2, t3] {
        agree::<MediaFile>(&app, &token, &a, Upto::Time(t)).await;
        agree::<MediaFile>(&app, &token, &b, Upto::Time(t)).await;
        agree::<User>(&app, &token, PILOT_ID, Upto::Time(t)).await;
    }
    assert!(agree::<MediaFile>(&app, &token, &a, Upto::Time(t0)).await.is_none(), "not uploaded yet");
    assert_eq!(agree::<MediaFile>(&app, &token, &a, Upto::Time(t1)).await.unwrap()["uploaded"], true);
    assert!(agree::<MediaFile>(&app, &token, &b, Upto::Time(t1)).await.is_none());
    let pilot = |t| agree::<User>(&app, &token, PILOT_ID, Upto::Time(t));
    assert_eq!(pilot(t1).await.unwrap()["mqtt_password"], "pilot123");
    assert_eq!(pilot(t2).await.unwrap()["mqtt_password"], "p1");
    assert_eq!(pilot(t3).await.unwrap()["mqtt_username"], "u2");
    for n in 1..=4 {
        agree::<User>(&app, &token, PILOT_ID, Upto::Sequence(n)).await;
    }
    assert_eq!(agree::<User>(&app, &token, PILOT_ID, Upto::Sequence(2)).await.unwrap()["mqtt_password"], "p1");

    // where in its history the point fell
    let at_t2 = past(&app, &token, WS, "user", PILOT_ID, &format!("at={}", t2.timestamp_millis())).await;
    assert_eq!(at_t2["data"]["sequence"], 2, "milliseconds work as well: {at_t2}");
    assert_eq!(at_t2["data"]["aggregate_type"], "user");
    assert_eq!(at_t2["data"]["aggregate_id"], PILOT_ID);
    let latest = past(&app, &token, WS, "user", PILOT_ID, "").await;
    assert_eq!(latest["data"]["sequence"], 3, "without a point: now");

    // the command operators run
    let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["state-at", "--aggregate-type", "user", "--id", PILOT_ID, "--at", &rfc3339(t2)])
        .env("HANGAR_DATABASE_URL", &app.config.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["state"], by_hand::<User>(&app, PILOT_ID, Upto::Time(t2)).await.unwrap());
    assert_eq!(printed["sequence"], 2);
    let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["state-at", "--aggregate-type", "no_such_type", "--id", "x", "--sequence", "1"])
        .env("HANGAR_DATABASE_URL", &app.config.database_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown aggregate type"));
    app.stop().await;
}

#[tokio::test]
async fn another_workspaces_aggregates_and_bad_points_are_refused_in_the_envelope() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    app.upload_callback(&token, callback_body("iso")).await;
    let file = media::file_id(WS, "iso");
    assert_eq!(past(&app, &token, WS, "media_file", &file, "sequence=1").await["code"], 0);

    // a user of another workspace, asking through its own workspace's path
    let other = "0d1e7a2c-0000-4000-8000-000000000001";
    let now = Utc::now().timestamp();
    let foreign = app.sign(json!({"iss": "DJI", "sub": "CloudApiSample", "iat": now, "nbf": now, "exp": now + 3600,
        "id": "u-other", "username": "other", "user_type": "1", "workspace_id": other}));
    let unknown = past(&app, &foreign, other, "media_file", "no-such-file", "sequence=1").await;
    assert_eq!(unknown["code"], -1);
    for (kind, id) in [("media_file", file.as_str()), ("user", PILOT_ID), ("workspace", WS)] {
        let r = past(&app, &foreign, other, kind, id, "sequence=1").await;
        assert_eq!(r["code"], -1, "{r}");
        assert!(r.get("data").is_none(), "{r}");
        // exactly as an id that does not exist
        assert_eq!(
            r["message"],
            unknown["message"].as_str().unwrap().replace("no-such-file", id).replace("media_file", kind)
        );
    }
    // and through this workspace's path: the workspace guard
    let (status, r) =
        app.get(&format!("/history/api/v1/workspaces/{WS}/aggregates/media_file/{file}?sequence=1"), &foreign).await;
    assert_eq!((status, r["code"].clone()), (StatusCode::FORBIDDEN, json!(403)));
    let (status, _) = app.get(&format!("/history/api/v1/workspaces/{WS}/devices"), &foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // bad input: DJI's envelope with a message that says what is wrong, never a 5xx
    for (path, says) in [
        (
            format!("aggregates/no_such_type/{file}?sequence=1"),
            "Unknown aggregate type \"no_such_type\"; known: media_file",
        ),
        (format!("aggregates/media_file/{file}?at=yesterday"), "at must be an RFC 3339 time"),
        (format!("aggregates/media_file/{file}?at=2026-13-01T00:00:00Z"), "at must be an RFC 3339 time"),
        (format!("aggregates/media_file/{file}?sequence=0"), "sequence must be a whole number from 1 on"),
        (format!("aggregates/media_file/{file}?sequence=two"), "sequence must be a whole number from 1 on"),
        (format!("aggregates/media_file/{file}?sequence=1&at=2026-01-01T00:00:00Z"), "either at or sequence"),
        ("aggregates/media_file/no-such-file?sequence=1".to_string(), "No media_file \"no-such-file\""),
        (format!("aggregates/media_file/{file}?at=2000-01-01T00:00:00Z"), "No media_file"),
        ("devices?at=soon".to_string(), "at must be an RFC 3339 time"),
        ("devices?sequence=3".to_string(), "give at, not sequence"),
    ] {
        let (status, r) = app.get(&format!("/history/api/v1/workspaces/{WS}/{path}"), &token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {r}");
        assert_eq!(r["code"], -1, "{path}: {r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{path}: {r}");
    }
    app.stop().await;
}

#[tokio::test]
async fn device_state_and_the_device_list_as_of_past_times() {
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let f = fleet(&prefix(), 1, None).await;
    let dock = f.docks()[0].dock_sn.clone();
    app.wait_for("dock online", || async { app.online(&dock).await == Some(true) }).await;
    let before = mark().await;
    bind(&app, &token, &dock).await;
    let bound = mark().await;
    let device = format!("/manage/api/v1/devices/{WS}/devices/{dock}");
    assert_eq!(app.put(&device, &token, json!({"nickname": "North"})).await.1["code"], 0);
    let named = mark().await;
    let unbind = format!("/manage/api/v1/devices/{dock}/unbinding");
    assert_eq!(app.request(reqwest::Method::DELETE, &unbind, Some(&token), None).await.1["code"], 0);
    let unbound = mark().await;

    let times = [before, bound, named, unbound];
    for t in times {
        let hand = by_hand::<Device>(&app, &dock, Upto::Time(t)).await.expect("the dock announced itself first");
        let lib = state_at(&app.pool, "device", &dock, Point::At(t)).await.unwrap();
        assert_eq!(lib.state, hand);
    }
    for n in 1..=by_hand_len(&app, &dock).await {
        let hand = by_hand::<Device>(&app, &dock, Upto::Sequence(n)).await;
        assert_eq!(state_at(&app.pool, "device", &dock, Point::Sequence(n)).await.ok().map(|p| p.state), hand);
    }
    // over HTTP only while bound to this workspace
    let at = |t: DateTime<Utc>| format!("at={}", rfc3339(t));
    assert_eq!(past(&app, &token, WS, "device", &dock, &at(before)).await["code"], -1, "not bound yet");
    let then = past(&app, &token, WS, "device", &dock, &at(bound)).await;
    assert_eq!(then["data"]["state"]["online"], true, "{then}");
    assert_ne!(then["data"]["state"]["nickname"], "North", "renamed later");
    let then = past(&app, &token, WS, "device", &dock, &at(named)).await;
    assert_eq!(then["data"]["state"]["nickname"], "North", "{then}");
    assert_eq!(then["data"]["state"]["model"], json!({"domain": 3, "type": 2, "sub_type": 0}));
    assert_eq!(past(&app, &token, WS, "device", &dock, &at(unbound)).await["code"], -1, "unbound since");

    // the device list as of each time: the devices bound then, each as it was
    let mut listed = Vec::new();
    for t in times {
        let (status, r) = app.get(&format!("/history/api/v1/workspaces/{WS}/devices?{}", at(t)), &token).await;
        assert_eq!((status, r["code"].clone()), (StatusCode::OK, json!(0)), "{r}");
        let list = r["data"]["list"].as_array().unwrap().clone();
        for d in &list {
            assert_eq!(d["workspace_id"], WS);
            let sn = d["aggregate_id"].as_str().unwrap();
            let hand = by_hand::<Device>(&app, sn, Upto::Time(t)).await.unwrap();
            assert_eq!(d["state"], shared::error::strip_nulls(hand), "{sn} at {t}");
        }
        let dock_then = list.iter().find(|d| d["aggregate_id"] == dock.as_str()).map(|d| d["state"].clone());
        listed.push(dock_then);
    }
    assert!(listed[0].is_none(), "not bound before the binding");
    assert_eq!(listed[1].as_ref().unwrap()["online"], true);
    assert_eq!(listed[2].as_ref().unwrap()["nickname"], "North");
    assert!(listed[3].is_none(), "unbound since");
    f.stop().await;
    app.stop().await;
}

async fn by_hand_len(app: &TestApp, sn: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'device' AND aggregate_id = $1")
        .bind(sn)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}
