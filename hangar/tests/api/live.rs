//! Live streams (LiveStreamController) with a simulated dock: the cameras it reports in its
//! `live_capacity` state are listed, and start, stop, quality and lens reach its gateway as DJI's
//! methods with the device's answer; what a device streams is recorded and answered.

use mqtt_bridge::sim::Answer;
use serde_json::{json, Value};

use crate::devices::{app_with_bridge, bind, fleet, prefix};

#[tokio::test]
async fn cameras_are_listed_and_streams_started_stopped_and_switched_on_the_dock() {
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let (dock, drone) = (f.docks()[0].dock_sn.clone(), f.docks()[0].drone_sn.clone());
    bind(&app, &token, &dock).await;
    bind(&app, &token, &drone).await;

    // the aircraft's camera and the dock's own, once the gateway's capacity is projected
    app.wait_for("live capacity", || async {
        let r = app.get("/manage/api/v1/live/capacity", &token).await.1;
        r["data"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    let capacity = app.get("/manage/api/v1/live/capacity", &token).await.1;
    assert_eq!(capacity["code"], 0);
    let of = |sn: &str| capacity["data"].as_array().unwrap().iter().find(|d| d["sn"] == sn).cloned().unwrap();
    let aircraft = of(&drone);
    assert_eq!(aircraft["name"], "Matrice 3D", "{aircraft}");
    let camera = &aircraft["cameras_list"][0];
    assert_eq!(camera["index"], "80-0-0");
    assert!(camera["id"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
    assert_eq!(camera["videos_list"][0]["index"], "normal-0");
    assert_eq!(camera["videos_list"][0]["type"], "normal");
    assert_eq!(camera["videos_list"][0]["switch_video_types"], json!(["normal", "wide", "zoom", "ir"]));
    assert_eq!(of(&dock)["cameras_list"][0]["index"], "165-0-7");
    // one device's item, and the device lists of the extensions (with state)
    let (_, one) = app.get(&format!("/manage/api/v1/live/capacity/{drone}"), &token).await;
    assert_eq!(one["data"], aircraft);
    let (_, all) = app.get("/manage/api/v1/live/devices", &token).await;
    let listed = all["data"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{all}");
    let (_, d) = app.get(&format!("/manage/api/v1/live/devices/{dock}"), &token).await;
    assert_eq!((d["data"]["online"].as_bool(), d["data"]["domain"].as_i64()), (Some(true), Some(3)), "{d}");
    assert_eq!(d["data"]["cameras_list"], of(&dock)["cameras_list"]);
    for path in ["/manage/api/v1/live/capacity/NO-SUCH-SN", "/manage/api/v1/live/devices/NO-SUCH-SN"] {
        let (_, r) = app.get(path, &token).await;
        assert_eq!(r["code"], -1, "{path}: {r}");
    }

    // RTMP: the dock pushes to the media server; the web client plays it over WebRTC
    let video_id = format!("{drone}/80-0-0/normal-0");
    let (_, r) = app
        .post(
            "/manage/api/v1/live/streams/start",
            &token,
            json!({"url_type": 1, "video_id": video_id, "video_quality": 3}),
        )
        .await;
    assert_eq!(
        r,
        json!({"code": 0, "message": "success", "data": {"url": format!("webrtc://127.0.0.1/live/{drone}-80-0-0")}})
    );
    let sent = f.received().into_iter().find(|c| c.method == "live_start_push").expect("live_start_push");
    assert_eq!(sent.dock_sn, dock, "asked through the aircraft's dock");
    assert_eq!(
        sent.data,
        json!({"url_type": 1, "url": format!("rtmp://127.0.0.1/live/{drone}-80-0-0"), "video_id": video_id, "video_quality": 3})
    );

    // RTSP: the device serves it and says where
    f.set_answer(
        "live_start_push",
        Answer::ok().with_output(json!("rtsp://user:password@192.168.1.5:8554/streaming/live/1")),
    );
    let dock_video = format!("{dock}/165-0-7/normal-0");
    let (_, r) =
        app.post("/manage/api/v1/live/streams/start", &token, json!({"url_type": 2, "video_id": dock_video})).await;
    assert_eq!(r["data"]["url"], "rtsp://user:password@192.168.1.5:8554/streaming/live/1", "{r}");
    let sent = f.received().into_iter().rfind(|c| c.method == "live_start_push").unwrap();
    assert_eq!(sent.data["url"], "userName=user&password=password&port=8554");
    assert_eq!(sent.data["video_quality"], 0, "auto when not given");

    // GB28181 with the parameters DJI's web client sends (none configured here)
    let gb = "serverIP=10.0.0.9&serverPort=5060&serverID=34020000002000000001&agentID=34020000001320000001&agentPassword=p&localPort=5060&channel=34020000001320000001";
    let (_, r) = app
        .post("/manage/api/v1/live/streams/start", &token, json!({"url_type": 3, "url": gb, "video_id": video_id}))
        .await;
    assert_eq!(r["data"]["url"], "webrtc://10.0.0.9/live/34020000001320000001@34020000001320000001", "{r}");
    assert_eq!(f.received().into_iter().rfind(|c| c.method == "live_start_push").unwrap().data["url"], gb);

    // what the aircraft streams now, as Hangar started it (the GB28181 start replaced the RTMP one)
    let watch = "webrtc://10.0.0.9/live/34020000001320000001@34020000001320000001";
    app.wait_for("the stream recorded", || async { stream_of(&app, &token, &drone).await["url"] == watch }).await;
    let now = stream_of(&app, &token, &drone).await;
    assert_eq!(
        (now["pushing"].as_bool(), now["url_type"].as_i64(), now["video_id"].as_str(), now["video_type"].as_str()),
        (Some(true), Some(3), Some(video_id.as_str()), Some("normal"))
    );
    assert!(now["started_at"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{now}");
    assert_eq!(stream_of(&app, &token, "NO-SUCH-SN").await, json!({"sn": "NO-SUCH-SN", "pushing": false}));

    let ok = json!({"code": 0, "message": "success", "data": ""});
    let (_, r) =
        app.post("/manage/api/v1/live/streams/update", &token, json!({"video_id": video_id, "video_quality": 1})).await;
    assert_eq!(r, ok);
    let (_, r) = app
        .post("/manage/api/v1/live/streams/switch", &token, json!({"video_id": video_id, "video_type": "zoom"}))
        .await;
    assert_eq!(r, ok);
    let (_, r) = app.post("/manage/api/v1/live/streams/stop", &token, json!({"video_id": video_id})).await;
    assert_eq!(r, ok);
    let got: Vec<(String, Value)> = f
        .received()
        .into_iter()
        .filter(|c| c.method.starts_with("live_") && c.method != "live_start_push")
        .map(|c| (c.method, c.data))
        .collect();
    assert_eq!(
        got,
        [
            ("live_set_quality".to_string(), json!({"video_id": video_id, "video_quality": 1})),
            ("live_lens_change".to_string(), json!({"video_id": video_id, "video_type": "zoom"})),
            ("live_stop_push".to_string(), json!({"video_id": video_id})),
        ]
    );
    app.wait_for("the stream stopped", || async { stream_of(&app, &token, &drone).await["pushing"] == false }).await;
    let last = stream_of(&app, &token, &drone).await;
    assert_eq!((last["video_quality"].as_i64(), last["video_type"].as_str()), (Some(1), Some("zoom")), "{last}");

    // the device's refusal is the answer
    f.set_answer("live_stop_push", Answer::error(13003));
    let (_, r) = app.post("/manage/api/v1/live/streams/stop", &token, json!({"video_id": video_id})).await;
    assert_eq!(r["code"], 13003, "{r}");

    // bad requests: DJI's live codes, nothing sent
    let before = f.received().len();
    for (path, body, code) in [
        ("start", json!({"url_type": 1, "video_id": "nonsense"}), 13014),
        ("start", json!({"url_type": 9, "video_id": video_id}), 13014),
        ("start", json!({"url_type": 1, "video_id": video_id, "video_quality": 7}), 13014),
        ("start", json!({"url_type": 4, "video_id": video_id}), 13013),
        ("start", json!({"url_type": 1, "video_id": "NO-SUCH-SN/80-0-0/normal-0"}), 13001),
        ("switch", json!({"video_id": video_id, "video_type": "fisheye"}), 13014),
        ("update", json!({"video_id": video_id}), 13014),
        ("stop", json!({}), 13014),
    ] {
        let (status, r) = app.post(&format!("/manage/api/v1/live/streams/{path}"), &token, body.clone()).await;
        assert_eq!((status.as_u16(), r["code"].as_i64()), (200, Some(code)), "{path} {body}: {r}");
    }
    assert_eq!(f.received().len(), before, "nothing sent for refused requests");
    f.stop().await;
    app.stop().await;
}

/// `data` of `GET /manage/api/v1/live/streams/{sn}`.
async fn stream_of(app: &crate::helpers::TestApp, token: &str, sn: &str) -> Value {
    let (_, r) = app.get(&format!("/manage/api/v1/live/streams/{sn}"), token).await;
    assert_eq!(r["code"], 0, "{r}");
    r["data"].clone()
}
