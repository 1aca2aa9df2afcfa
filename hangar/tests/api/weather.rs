//! WeatherController end to end: without a provider, the nearest online dock's sensors (simulated
//! docks through the bridge and the TELEMETRY stream); with a provider, its answer in DJI's
//! envelope, falling back to the docks when it fails; bad input answered with a message.
//!
//! The providers (Open-Meteo, AMap) are on the internet, which tests cannot reach: a local server
//! answers their requests in their documented formats.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::RawQuery;
use axum::routing::get;
use axum::Json;
use hangar::Components;
use mqtt_bridge::sim::{Fleet, FleetConfig};
use serde_json::{json, Value};

use crate::devices::{bind, prefix};
use crate::helpers::*;

/// A stand-in for the providers' web services; records the query of every request.
async fn provider() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = |seen: Arc<Mutex<Vec<String>>>, answer: Value| {
        move |RawQuery(q): RawQuery| {
            seen.lock().unwrap().push(q.unwrap_or_default());
            let answer = answer.clone();
            async move { Json(answer) }
        }
    };
    let app = axum::Router::new()
        .route(
            "/v1/forecast",
            get(record(
                seen.clone(),
                json!({"latitude": 22.5, "longitude": 113.9, "current": {"time": "2026-12-01T10:15",
                    "temperature_2m": 24.5, "relative_humidity_2m": 71, "wind_speed_10m": 3.5, "wind_direction_10m": 120,
                    "precipitation": 0.4, "weather_code": 61}}),
            )),
        )
        .route(
            "/v3/weather/weatherInfo",
            get(record(
                seen.clone(),
                json!({"status": "1", "info": "OK", "lives": [{"province": "广东", "city": "南山区", "adcode": "440305",
                    "weather": "晴", "temperature": "26", "winddirection": "东南", "windpower": "≤3", "humidity": "65",
                    "reporttime": "2026-12-01 18:00:00"}]}),
            )),
        )
        .route(
            "/v3/geocode/regeo",
            get(record(
                seen.clone(),
                json!({"status": "1", "regeocode": {"addressComponent": {"adcode": "440305", "district": "南山区"}}}),
            )),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn weather(app: &TestApp, token: &str, query: &str) -> Value {
    app.get(&format!("/manage/api/v1/weather{query}"), token).await.1
}

#[tokio::test]
async fn without_a_provider_the_nearest_online_docks_sensors_answer() {
    let app = TestApp::spawn_with(crate::wayline_job::bridge_config(), Components::ALL).await;
    let token = app.admin_token().await;

    let r = weather(&app, &token, "?latitude=22.54&longitude=113.93").await;
    assert_eq!(r["code"], -1, "{r}");
    let says = r["message"].as_str().unwrap();
    assert!(says.contains("no weather provider") && says.contains("no dock"), "{r}");

    let f =
        Fleet::start(FleetConfig { docks: 2, osd_hz: 2.0, sn_prefix: prefix(), hms_every: None, ..Default::default() })
            .await
            .unwrap();
    f.ready(Duration::from_secs(10)).await.unwrap();
    for d in f.docks() {
        bind(&app, &token, &d.dock_sn).await;
    }
    // the answer reads the device list (a read model): both bindings projected
    app.wait_for("both docks listed as bound", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rm_devices WHERE device_sn = ANY($1) AND bound AND online")
            .bind(f.docks().iter().map(|d| d.dock_sn.clone()).collect::<Vec<_>>())
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == 2
    })
    .await;
    // where each dock stands, as its OSD says
    let stream = app.js.get_stream(app.names.telemetry_stream()).await.unwrap();
    let mut at = Vec::new();
    for d in f.docks() {
        let subject = app.names.telemetry_subject(&d.dock_sn, "osd");
        let mut osd = None;
        for _ in 0..100 {
            if let Ok(m) = stream.get_last_raw_message_by_subject(&subject).await {
                osd = Some(serde_json::from_slice::<Value>(&m.payload).unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let data = osd.expect("the dock's OSD")["data"].clone();
        at.push((d.dock_sn.clone(), data["latitude"].as_f64().unwrap(), data["longitude"].as_f64().unwrap()));
    }
    for (sn, lat, lng) in &at {
        let r = weather(&app, &token, &format!("?latitude={lat}&longitude={lng}")).await;
        assert_eq!(r["code"], 0, "{r}");
        let w = &r["data"];
        assert_eq!((w["source"].as_str(), w["sn"].as_str()), (Some("dock"), Some(sn.as_str())), "nearest: {r}");
        assert_eq!(w["distance"], 0.0);
        let humidity = w["humidity"].as_f64().unwrap();
        assert!((5.0..=100.0).contains(&humidity), "{r}");
        assert!(w["temperature"].is_number() && w["wind_speed"].is_number() && w["observed_at"].is_string(), "{r}");
    }

    // region codes need a provider that knows them
    let (_, r) = app.get("/manage/api/v1/weather/regions/440305", &token).await;
    assert_eq!(r["code"], -1, "{r}");
    assert!(r["message"].as_str().unwrap().contains("HANGAR_WEATHER_PROVIDER=amap"), "{r}");
    // bad input
    for (path, says) in [
        ("/manage/api/v1/weather?latitude=95&longitude=113", "within"),
        ("/manage/api/v1/weather?latitude=north&longitude=113", ""),
        ("/manage/api/v1/weather?latitude=22.5", "required"),
        ("/manage/api/v1/weather/regions/nanshan", "region code"),
    ] {
        let (status, r) = app.get(path, &token).await;
        assert_eq!((status.as_u16(), r["code"].as_i64()), (200, Some(-1)), "{path}: {r}");
        assert!(r["message"].as_str().unwrap().contains(says), "{path}: {r}");
    }
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_providers_weather_comes_first_and_the_docks_stand_in_when_it_fails() {
    let (url, seen) = provider().await;

    // Open-Meteo by position
    let mut c = test_config();
    c.weather_provider = "open-meteo".into();
    c.weather_url = url.clone();
    let app = TestApp::spawn_with(c, Components::ALL).await;
    let token = app.admin_token().await;
    let r = weather(&app, &token, "?latitude=22.54&longitude=113.93").await;
    assert_eq!(
        r,
        json!({"code": 0, "message": "success", "data": {"temperature": 24.5, "humidity": 71.0, "wind_speed": 3.5,
            "wind_direction": 120.0, "rainfall": 0.4, "weather": "rain", "source": "open-meteo",
            "observed_at": "2026-12-01T10:15:00+00:00"}})
    );
    let q = seen.lock().unwrap().last().cloned().unwrap();
    assert!(q.contains("latitude=22.54") && q.contains("longitude=113.93") && q.contains("wind_speed_unit=ms"), "{q}");
    app.stop().await;

    // AMap by region code, and by position through its reverse geocoding
    let mut c = test_config();
    c.weather_provider = "amap".into();
    c.weather_url = url.clone();
    c.weather_key = "k123".into();
    let app = TestApp::spawn_with(c, Components::ALL).await;
    let token = app.admin_token().await;
    let (_, r) = app.get("/manage/api/v1/weather/regions/440305", &token).await;
    assert_eq!(r["code"], 0, "{r}");
    let w = &r["data"];
    assert_eq!(
        (w["temperature"].as_f64(), w["humidity"].as_f64(), w["wind_speed"].as_f64()),
        (Some(26.0), Some(65.0), Some(4.4))
    );
    assert_eq!((w["weather"].as_str(), w["source"].as_str()), (Some("晴"), Some("amap")));
    assert_eq!(w["observed_at"], "2026-12-01T10:00:00+00:00", "AMap reports China's time");
    assert!(seen.lock().unwrap().last().unwrap().contains("city=440305"));
    let r = weather(&app, &token, "?latitude=22.54&longitude=113.93").await;
    assert_eq!(r["data"]["region_code"], "440305", "{r}");
    let asked = seen.lock().unwrap().clone();
    assert!(asked.iter().any(|q| q.contains("location=113.930000%2C22.540000") && q.contains("key=k123")), "{asked:?}");
    app.stop().await;

    // a provider that does not answer: the docks stand in, and the message says both
    let mut c = crate::wayline_job::bridge_config();
    c.weather_provider = "open-meteo".into();
    c.weather_url = "http://127.0.0.1:9".into();
    let app = TestApp::spawn_with(c, Components::ALL).await;
    let token = app.admin_token().await;
    let r = weather(&app, &token, "?latitude=22.54&longitude=113.93").await;
    assert_eq!(r["code"], -1, "{r}");
    assert!(r["message"].as_str().unwrap().contains("did not answer"), "{r}");
    let f =
        Fleet::start(FleetConfig { docks: 1, osd_hz: 2.0, sn_prefix: prefix(), hms_every: None, ..Default::default() })
            .await
            .unwrap();
    f.ready(Duration::from_secs(10)).await.unwrap();
    let dock = f.docks()[0].dock_sn.clone();
    bind(&app, &token, &dock).await;
    app.wait_for("the dock's readings", || async {
        let r = weather(&app, &token, "?latitude=22.54&longitude=113.93").await;
        r["data"]["source"] == "dock" && r["data"]["sn"] == dock
    })
    .await;
    f.stop().await;
    app.stop().await;
}
