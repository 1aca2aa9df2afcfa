//! WeatherController: the weather at a position or in an administrative region, for planning
//! flights. Sources, in order: the configured provider (`HANGAR_WEATHER_PROVIDER`: Open-Meteo by
//! position, AMap by region code and, through its reverse geocoding, by position), then the
//! sensors of the workspace's nearest online dock, as its latest OSD reports them (the TELEMETRY
//! stream). `source` says which answered.
//!
//! `data`: `{temperature (°C), humidity (%), wind_speed (m/s), wind_direction?, rainfall?, weather?,
//! source, observed_at}`; a dock's answer adds its `sn` and `distance` (m). `rainfall` is what the
//! source measures: a dock's level (0 none, 1 light, 2 moderate, 3 heavy), Open-Meteo's
//! millimetres.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::auth::Auth;
use shared::error::ok;
use shared::http::DjiQuery;
use shared::protocol::as_i64;
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

const PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(by_region)).routes(routes!(by_position))
}

/// `GET /manage/api/v1/weather/regions/{region_code}`: the weather of an administrative region
/// (China's six-digit adcode), from a provider that knows region codes (AMap).
#[utoipa::path(
    get,
    path = "/manage/api/v1/weather/regions/{region_code}",
    tag = "WeatherController",
    summary = "根据区域编码获取天气信息",
    params(("region_code" = String, Path)),
)]
pub async fn by_region(State(s): State<AppState>, Path(region_code): Path<String>) -> ApiResult<Response> {
    let code = region_code.trim();
    if code.is_empty() || code.len() > 12 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::failed("region_code must be an administrative region code (digits, e.g. 440305)."));
    }
    if s.config.weather_provider != "amap" {
        return Err(ApiError::failed(
            "No weather source knows region codes here: set HANGAR_WEATHER_PROVIDER=amap with HANGAR_WEATHER_KEY \
             (AMap's weather service), or ask by latitude and longitude.",
        ));
    }
    let weather = amap_weather(&s, code).await.map_err(|e| {
        tracing::warn!(error = %e, code, "weather provider");
        ApiError::failed(format!("The weather provider did not answer for region {code}: {e}"))
    })?;
    Ok(ok(weather))
}

#[derive(Debug, Deserialize)]
pub struct PositionQuery {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// `GET /manage/api/v1/weather?latitude=…&longitude=…`: the provider's weather there, or else the
/// readings of the workspace's online dock nearest to it.
#[utoipa::path(get, path = "/manage/api/v1/weather", tag = "WeatherController", summary = "通过经纬度查询天气")]
pub async fn by_position(
    State(s): State<AppState>,
    Auth(claims): Auth,
    DjiQuery(q): DjiQuery<PositionQuery>,
) -> ApiResult<Response> {
    let (Some(lat), Some(lng)) = (q.latitude, q.longitude) else {
        return Err(ApiError::failed("latitude and longitude are required."));
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
        return Err(ApiError::failed("latitude must be within ±90 and longitude within ±180."));
    }
    let provider = match s.config.weather_provider.as_str() {
        "" => None,
        "open-meteo" => Some(open_meteo(&s, lat, lng).await),
        "amap" => Some(amap_at(&s, lat, lng).await),
        other => Some(Err(anyhow::anyhow!("unknown provider {other:?} (open-meteo or amap)"))),
    };
    let why_not = match provider {
        Some(Ok(weather)) => return Ok(ok(weather)),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "weather provider; trying the docks");
            format!("the weather provider did not answer ({e})")
        }
        None => "no weather provider is configured (HANGAR_WEATHER_PROVIDER)".to_string(),
    };
    match nearest_dock(&s, &claims.workspace_id, lat, lng).await? {
        Some(weather) => Ok(ok(weather)),
        None => Err(ApiError::failed(format!(
            "No weather source: {why_not}, and no dock of this workspace is online with its sensors' readings."
        ))),
    }
}

async fn get_json(url: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client =
        CLIENT.get_or_init(|| reqwest::Client::builder().timeout(PROVIDER_TIMEOUT).build().unwrap_or_default());
    let res = client.get(url).query(query).send().await?.error_for_status()?;
    serde_json::from_slice(&res.bytes().await?).map_err(|e| anyhow::anyhow!("not JSON: {e}"))
}

fn base(s: &AppState, default: &str) -> String {
    let b = s.config.weather_url.trim_end_matches('/');
    if b.is_empty() {
        default.to_string()
    } else {
        b.to_string()
    }
}

/// Open-Meteo's current conditions (`/v1/forecast?current=…`), wind in m/s.
async fn open_meteo(s: &AppState, lat: f64, lng: f64) -> anyhow::Result<Value> {
    let url = format!("{}/v1/forecast", base(s, "https://api.open-meteo.com"));
    let current = "temperature_2m,relative_humidity_2m,wind_speed_10m,wind_direction_10m,precipitation,weather_code";
    let query = [
        ("latitude", lat.to_string()),
        ("longitude", lng.to_string()),
        ("current", current.to_string()),
        ("wind_speed_unit", "ms".to_string()),
        ("timezone", "GMT".to_string()),
    ];
    let v = get_json(&url, &query).await?;
    let c = v.get("current").ok_or_else(|| anyhow::anyhow!("no `current` in the answer"))?;
    let num = |k: &str| c.get(k).and_then(Value::as_f64);
    let need = |k: &str| num(k).ok_or_else(|| anyhow::anyhow!("no {k} in the answer"));
    let observed_at = c
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M").ok())
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now);
    Ok(json!({
        "temperature": need("temperature_2m")?,
        "humidity": need("relative_humidity_2m")?,
        "wind_speed": need("wind_speed_10m")?,
        "wind_direction": num("wind_direction_10m"),
        "rainfall": num("precipitation"),
        "weather": c.get("weather_code").and_then(as_i64).map(wmo_text),
        "source": "open-meteo",
        "observed_at": observed_at.to_rfc3339(),
    }))
}

/// The WMO weather code Open-Meteo reports, in words.
fn wmo_text(code: i64) -> &'static str {
    match code {
        0 => "clear",
        1..=3 => "cloudy",
        45 | 48 => "fog",
        51..=57 => "drizzle",
        61..=67 | 80..=82 => "rain",
        71..=77 | 85 | 86 => "snow",
        95..=99 => "thunderstorm",
        _ => "unknown",
    }
}

/// AMap's live weather of a region (`/v3/weather/weatherInfo?city=<adcode>`). Its wind is a
/// Beaufort force (`≤3`, `4`, …): given as the middle of that force's range in m/s.
async fn amap_weather(s: &AppState, adcode: &str) -> anyhow::Result<Value> {
    let url = format!("{}/v3/weather/weatherInfo", base(s, "https://restapi.amap.com"));
    let query = [("city", adcode.to_string()), ("key", s.config.weather_key.clone()), ("extensions", "base".into())];
    let v = get_json(&url, &query).await?;
    if v.get("status").and_then(Value::as_str) != Some("1") {
        anyhow::bail!("{}", v.get("info").and_then(Value::as_str).unwrap_or("refused"));
    }
    let live = v.pointer("/lives/0").ok_or_else(|| anyhow::anyhow!("no weather for region {adcode}"))?;
    let text = |k: &str| live.get(k).and_then(Value::as_str).unwrap_or_default();
    let number = |k: &str| text(k).trim().parse::<f64>().map_err(|_| anyhow::anyhow!("no {k} in the answer"));
    let force: i64 = text("windpower").trim_start_matches(['≤', '<', '=']).trim().parse().unwrap_or(0);
    let observed_at = NaiveDateTime::parse_from_str(text("reporttime"), "%Y-%m-%d %H:%M:%S")
        // AMap reports China's time (UTC+8)
        .map(|t| DateTime::<Utc>::from_naive_utc_and_offset(t - chrono::Duration::hours(8), Utc))
        .unwrap_or_else(|_| Utc::now());
    Ok(json!({
        "temperature": number("temperature")?,
        "humidity": number("humidity")?,
        "wind_speed": beaufort_ms(force),
        "wind_direction": text("winddirection"),
        "weather": text("weather"),
        "source": "amap",
        "region_code": text("adcode"),
        "observed_at": observed_at.to_rfc3339(),
    }))
}

/// The middle of a Beaufort force's wind speeds, in m/s.
fn beaufort_ms(force: i64) -> f64 {
    const MIDDLE: [f64; 13] = [0.1, 0.9, 2.5, 4.4, 6.7, 9.4, 12.3, 15.5, 18.9, 22.6, 26.4, 30.5, 34.8];
    MIDDLE[force.clamp(0, 12) as usize]
}

/// AMap by position: its reverse geocoding gives the region code (AMap takes `lng,lat`).
async fn amap_at(s: &AppState, lat: f64, lng: f64) -> anyhow::Result<Value> {
    let url = format!("{}/v3/geocode/regeo", base(s, "https://restapi.amap.com"));
    let query = [("location", format!("{lng:.6},{lat:.6}")), ("key", s.config.weather_key.clone())];
    let v = get_json(&url, &query).await?;
    let adcode = v
        .pointer("/regeocode/addressComponent/adcode")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow::anyhow!("no region at {lat},{lng}"))?;
    amap_weather(s, adcode).await
}

/// Metres between two positions (haversine).
fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// What a dock's OSD says of the weather where it stands: `(position, weather)`; `None` when the
/// message lacks its position or its sensors' readings.
fn dock_reading(sn: &str, osd: &Value) -> Option<((f64, f64), Value)> {
    let d = osd.get("data")?;
    let num = |k: &str| d.get(k).and_then(Value::as_f64);
    let position = (num("latitude")?, num("longitude")?);
    if position == (0.0, 0.0) {
        return None; // no fix yet
    }
    let observed_at =
        osd.get("timestamp").and_then(as_i64).and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or_else(Utc::now);
    let weather = json!({
        "temperature": num("environment_temperature")?,
        "humidity": num("humidity")?,
        "wind_speed": num("wind_speed")?,
        "rainfall": num("rainfall"),
        "source": "dock",
        "sn": sn,
        "observed_at": observed_at.to_rfc3339(),
    });
    Some((position, weather))
}

async fn nearest_dock(s: &AppState, workspace_id: &str, lat: f64, lng: f64) -> ApiResult<Option<Value>> {
    let docks: Vec<String> = sqlx::query_scalar(
        "SELECT device_sn FROM rm_devices WHERE workspace_id = $1 AND domain = 3 AND online AND bound ORDER BY device_sn",
    )
    .bind(workspace_id)
    .fetch_all(&s.pool)
    .await?;
    if docks.is_empty() {
        return Ok(None);
    }
    let js = async_nats::jetstream::new(s.nats.clone());
    let Ok(stream) = js.get_stream(s.names.telemetry_stream()).await else { return Ok(None) };
    // one latest-message read per dock, a few at a time: a workspace may have hundreds of docks
    let readings: Vec<Option<((f64, f64), Value)>> = futures::stream::iter(docks)
        .map(|sn| {
            let stream = &stream;
            async move {
                let m = stream.get_last_raw_message_by_subject(&s.names.telemetry_subject(&sn, "osd")).await.ok()?;
                dock_reading(&sn, &serde_json::from_slice::<Value>(&m.payload).ok()?)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut best: Option<(f64, Value)> = None;
    for (position, mut weather) in readings.into_iter().flatten() {
        let d = distance_m((lat, lng), position);
        // the nearest; between docks equally near, the first serial number
        let nearer =
            best.as_ref().is_none_or(|(b, w)| d < *b || (d == *b && weather["sn"].as_str() < w["sn"].as_str()));
        if nearer {
            weather["distance"] = json!(d.round());
            best = Some((d, weather));
        }
    }
    Ok(best.map(|(_, w)| w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docks_osd_reads_as_weather_and_distances_are_metres() {
        let osd = json!({"timestamp": 1_733_000_000_000i64, "data": {"latitude": 22.54, "longitude": 113.93,
            "environment_temperature": 21.5, "humidity": 60.0, "wind_speed": 3.2, "rainfall": 1}});
        let (pos, w) = dock_reading("D", &osd).unwrap();
        assert_eq!(pos, (22.54, 113.93));
        assert_eq!(
            (w["temperature"].as_f64(), w["rainfall"].as_f64(), w["source"].as_str()),
            (Some(21.5), Some(1.0), Some("dock"))
        );
        assert_eq!(w["observed_at"], "2024-11-30T20:53:20+00:00");
        // a partial OSD message without the sensors, or without a fix
        assert!(dock_reading("D", &json!({"data": {"latitude": 22.5, "longitude": 113.9, "mode_code": 0}})).is_none());
        assert!(dock_reading(
            "D",
            &json!({"data": {"latitude": 0.0, "longitude": 0.0, "environment_temperature": 1.0,
            "humidity": 1.0, "wind_speed": 1.0}})
        )
        .is_none());
        let d = distance_m((22.54, 113.93), (22.55, 113.93));
        assert!((d - 1112.0).abs() < 5.0, "{d}");
        assert_eq!((beaufort_ms(3), beaufort_ms(40), beaufort_ms(-1)), (4.4, 34.8, 0.1));
        assert_eq!((wmo_text(0), wmo_text(63), wmo_text(1000)), ("clear", "rain", "unknown"));
    }
}
