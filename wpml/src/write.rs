//! Wayline generation: a simple waypoint mission → a KMZ that DJI Pilot 2 and docks fly.
//!
//! The files follow WPML 1.0.6 as DJI Pilot 2 exports it: `template.kml` with a `waypoint`
//! template, `waylines.wpml` with one wayline whose every waypoint states its height, speed,
//! heading and turn mode explicitly (the aircraft does not resolve template globals).
//! Heights are relative to the take-off point.

use std::fmt::Write as _;
use std::io::{Cursor, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use quick_xml::escape::escape;
use serde::{Deserialize, Deserializer};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::WpmlError;

/// The namespace of the WPML version written.
const WPML_NAMESPACE: &str = "http://www.dji.com/wpmz/1.0.6";

/// Actions a [`MissionPoint`] may name, each needing only the payload's mount index.
const ACTIONS: [&str; 3] = ["takePhoto", "startRecord", "stopRecord"];

/// What the aircraft does after the last waypoint.
const FINISH_ACTIONS: [&str; 4] = ["goHome", "noAction", "autoLand", "gotoFirstWaypoint"];

/// Speeds DJI's aircraft accept for a wayline, m/s.
const MAX_SPEED: f64 = 15.0;

/// What wayline generation takes (extensions.md): a simple waypoint mission. Deserialises from
/// the generate request, with its defaults for the optional fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Mission {
    pub name: String,
    /// `0-<type>-<sub_type>`, e.g. `0-67-0`.
    pub drone_model_key: String,
    /// `1-<type>-<sub_type>`, e.g. `1-53-0`; empty for none.
    #[serde(deserialize_with = "or_default")]
    pub payload_model_key: String,
    pub waypoints: Vec<MissionPoint>,
    /// m/s; the speed of points without their own. Default 10.
    #[serde(deserialize_with = "or_default_speed")]
    pub auto_flight_speed: f64,
    /// `goHome` (default), `noAction`, `autoLand` or `gotoFirstWaypoint`.
    #[serde(deserialize_with = "or_default_finish_action")]
    pub finish_action: String,
    /// Metres the aircraft climbs before heading to the first point. Default 20.
    #[serde(deserialize_with = "or_default_security_height")]
    pub take_off_security_height: f64,
}

impl Default for Mission {
    fn default() -> Self {
        Mission {
            name: String::new(),
            drone_model_key: String::new(),
            payload_model_key: String::new(),
            waypoints: Vec::new(),
            auto_flight_speed: 10.0,
            finish_action: "goHome".to_owned(),
            take_off_security_height: 20.0,
        }
    }
}

/// One waypoint of a [`Mission`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MissionPoint {
    pub longitude: f64,
    pub latitude: f64,
    /// Metres above the take-off point.
    pub height: f64,
    /// m/s; the mission's `auto_flight_speed` when absent.
    pub speed: Option<f64>,
    /// `takePhoto`, `startRecord` or `stopRecord`, done in order on reaching the point.
    #[serde(deserialize_with = "or_default")]
    pub actions: Vec<String>,
}

// Web clients send `null` for optional fields as often as they leave them out; both mean "the
// default".
fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn or_default_speed<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(Mission::default().auto_flight_speed))
}

fn or_default_finish_action<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(|| Mission::default().finish_action))
}

fn or_default_security_height<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(Mission::default().take_off_security_height))
}

/// A model key split into its type and sub type, checked for its domain.
fn model_key(key: &str, domain: i32, what: &str) -> Result<(i32, i32), WpmlError> {
    let invalid = || WpmlError::InvalidMission(format!("{what} {key:?} is not \"{domain}-<type>-<sub_type>\""));
    let parts: Vec<i32> =
        key.trim().split('-').map(|p| p.trim().parse::<i32>()).collect::<Result<_, _>>().map_err(|_| invalid())?;
    match parts.as_slice() {
        [d, t, s] if *d == domain => Ok((*t, *s)),
        _ => Err(invalid()),
    }
}

/// The mission checked, with its model numbers.
struct Checked<'a> {
    mission: &'a Mission,
    drone: (i32, i32),
    payload: Option<(i32, i32)>,
    finish_action: &'a str,
}

fn check(mission: &Mission) -> Result<Checked<'_>, WpmlError> {
    let invalid = |m: String| Err(WpmlError::InvalidMission(m));
    let drone = model_key(&mission.drone_model_key, 0, "drone_model_key")?;
    let payload = if mission.payload_model_key.trim().is_empty() {
        None
    } else {
        Some(model_key(&mission.payload_model_key, 1, "payload_model_key")?)
    };
    let finish_action = match mission.finish_action.trim() {
        "" => "goHome",
        f => match FINISH_ACTIONS.iter().find(|a| a.eq_ignore_ascii_case(f)) {
            Some(a) => a,
            None => return invalid(format!("finish_action {f:?} is not one of {FINISH_ACTIONS:?}")),
        },
    };
    // A wayline is flown between points: one point is not a route.
    if mission.waypoints.len() < 2 {
        return invalid("a wayline needs at least 2 waypoints".to_owned());
    }
    let speed_ok = |s: f64| s.is_finite() && s > 0.0 && s <= MAX_SPEED;
    if !speed_ok(mission.auto_flight_speed) {
        return invalid(format!("auto_flight_speed must be above 0 and at most {MAX_SPEED} m/s"));
    }
    if !(1.5..=1500.0).contains(&mission.take_off_security_height) {
        return invalid("take_off_security_height must be between 1.5 and 1500 m".to_owned());
    }
    for (i, p) in mission.waypoints.iter().enumerate() {
        // `contains` is false for NaN and infinities, so these checks also refuse them.
        if !((-180.0..=180.0).contains(&p.longitude) && (-90.0..=90.0).contains(&p.latitude)) {
            return invalid(format!("waypoint {i} has no valid longitude and latitude"));
        }
        if !(-1500.0..=1500.0).contains(&p.height) {
            return invalid(format!("waypoint {i} has a height outside -1500..1500 m"));
        }
        if p.speed.is_some_and(|s| !speed_ok(s)) {
            return invalid(format!("waypoint {i} has a speed outside 0..{MAX_SPEED} m/s"));
        }
        if let Some(a) = p.actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
            return invalid(format!("waypoint {i} has the unknown action {a:?} (known: {ACTIONS:?})"));
        }
        if !p.actions.is_empty() && payload.is_none() {
            return invalid(format!("waypoint {i} has actions but the mission has no payload"));
        }
    }
    Ok(Checked { mission, drone, payload, finish_action })
}

/// A valid DJI WPML KMZ (wpmz/template.kml + wpmz/waylines.wpml) for the mission.
pub fn write_kmz(mission: &Mission) -> Result<Vec<u8>, WpmlError> {
    let checked = check(mission)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let template = template_kml(&checked, now);
    let waylines = waylines_wpml(&checked);

    let zip_error = |e: zip::result::ZipError| WpmlError::InvalidMission(format!("the KMZ could not be written: {e}"));
    let io_error = |e: std::io::Error| WpmlError::InvalidMission(format!("the KMZ could not be written: {e}"));
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    zip.start_file("wpmz/template.kml", options).map_err(zip_error)?;
    zip.write_all(template.as_bytes()).map_err(io_error)?;
    zip.start_file("wpmz/waylines.wpml", options).map_err(zip_error)?;
    zip.write_all(waylines.as_bytes()).map_err(io_error)?;
    Ok(zip.finish().map_err(zip_error)?.into_inner())
}

/// A KMZ with `n` waypoints (at least 2, a route's minimum) and a photo at every tenth, for
/// measuring the parse rate of realistic files.
pub fn parse_rate_fixture(n: usize) -> Vec<u8> {
    let waypoints = (0..n.max(2))
        .map(|i| MissionPoint {
            // A lawnmower pattern about 10 m between points, 50 points per row.
            longitude: 113.9400 + (i % 50) as f64 * 0.0001,
            latitude: 22.5700 + (i / 50) as f64 * 0.0001,
            height: 60.0 + (i % 7) as f64,
            speed: (i % 3 == 0).then_some(8.0),
            actions: if i % 10 == 0 { vec!["takePhoto".to_owned()] } else { Vec::new() },
        })
        .collect();
    let mission = Mission {
        name: format!("parse-rate-{n}"),
        drone_model_key: "0-67-0".to_owned(),
        payload_model_key: "1-53-0".to_owned(),
        waypoints,
        ..Mission::default()
    };
    // The mission above is valid by construction; an empty result would only mean a writer bug,
    // which the crate's tests catch.
    write_kmz(&mission).unwrap_or_default()
}

fn mission_config(out: &mut String, c: &Checked<'_>) {
    let m = c.mission;
    let _ = write!(
        out,
        "    <wpml:missionConfig>
      <wpml:flyToWaylineMode>safely</wpml:flyToWaylineMode>
      <wpml:finishAction>{finish}</wpml:finishAction>
      <wpml:exitOnRCLost>executeLostAction</wpml:exitOnRCLost>
      <wpml:executeRCLostAction>goBack</wpml:executeRCLostAction>
      <wpml:takeOffSecurityHeight>{security}</wpml:takeOffSecurityHeight>
      <wpml:globalTransitionalSpeed>{speed}</wpml:globalTransitionalSpeed>
      <wpml:droneInfo>
        <wpml:droneEnumValue>{dt}</wpml:droneEnumValue>
        <wpml:droneSubEnumValue>{ds}</wpml:droneSubEnumValue>
      </wpml:droneInfo>
",
        finish = c.finish_action,
        security = m.take_off_security_height,
        speed = m.auto_flight_speed,
        dt = c.drone.0,
        ds = c.drone.1,
    );
    if let Some((pt, ps)) = c.payload {
        let _ = write!(
            out,
            "      <wpml:payloadInfo>
        <wpml:payloadEnumValue>{pt}</wpml:payloadEnumValue>
        <wpml:payloadSubEnumValue>{ps}</wpml:payloadSubEnumValue>
        <wpml:payloadPositionIndex>0</wpml:payloadPositionIndex>
      </wpml:payloadInfo>
"
        );
    }
    out.push_str("    </wpml:missionConfig>\n");
}

fn header(out: &mut String) {
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\" xmlns:wpml=\"{WPML_NAMESPACE}\">\n  <Document>\n"
    );
}

fn template_kml(c: &Checked<'_>, now_ms: u128) -> String {
    let m = c.mission;
    let mut out = String::with_capacity(1024 + m.waypoints.len() * 700);
    header(&mut out);
    let _ = write!(
        out,
        "    <wpml:author>{author}</wpml:author>
    <wpml:createTime>{now_ms}</wpml:createTime>
    <wpml:updateTime>{now_ms}</wpml:updateTime>
",
        author = escape(m.name.as_str())
    );
    mission_config(&mut out, c);
    let first_height = m.waypoints.first().map_or(0.0, |p| p.height);
    let _ = write!(
        out,
        "    <Folder>
      <wpml:templateType>waypoint</wpml:templateType>
      <wpml:templateId>0</wpml:templateId>
      <wpml:waylineCoordinateSysParam>
        <wpml:coordinateMode>WGS84</wpml:coordinateMode>
        <wpml:heightMode>relativeToStartPoint</wpml:heightMode>
      </wpml:waylineCoordinateSysParam>
      <wpml:autoFlightSpeed>{speed}</wpml:autoFlightSpeed>
      <wpml:globalHeight>{first_height}</wpml:globalHeight>
      <wpml:caliFlightEnable>0</wpml:caliFlightEnable>
      <wpml:gimbalPitchMode>manual</wpml:gimbalPitchMode>
      <wpml:globalWaypointHeadingParam>
        <wpml:waypointHeadingMode>followWayline</wpml:waypointHeadingMode>
        <wpml:waypointHeadingAngle>0</wpml:waypointHeadingAngle>
        <wpml:waypointPoiPoint>0.000000,0.000000,0.000000</wpml:waypointPoiPoint>
        <wpml:waypointHeadingPoiIndex>0</wpml:waypointHeadingPoiIndex>
      </wpml:globalWaypointHeadingParam>
      <wpml:globalWaypointTurnMode>toPointAndStopWithDiscontinuityCurvature</wpml:globalWaypointTurnMode>
      <wpml:globalUseStraightLine>1</wpml:globalUseStraightLine>
",
        speed = m.auto_flight_speed,
    );
    let mut group_id = 0;
    for (i, p) in m.waypoints.iter().enumerate() {
        let _ = write!(
            out,
            "      <Placemark>
        <Point>
          <coordinates>{lon},{lat}</coordinates>
        </Point>
        <wpml:index>{i}</wpml:index>
        <wpml:ellipsoidHeight>{h}</wpml:ellipsoidHeight>
        <wpml:height>{h}</wpml:height>
        <wpml:useGlobalHeight>0</wpml:useGlobalHeight>
",
            lon = p.longitude,
            lat = p.latitude,
            h = p.height,
        );
        match p.speed {
            Some(s) => {
                let _ = writeln!(out, "        <wpml:waypointSpeed>{s}</wpml:waypointSpeed>");
                out.push_str("        <wpml:useGlobalSpeed>0</wpml:useGlobalSpeed>\n");
            }
            None => out.push_str("        <wpml:useGlobalSpeed>1</wpml:useGlobalSpeed>\n"),
        }
        out.push_str(
            "        <wpml:useGlobalHeadingParam>1</wpml:useGlobalHeadingParam>
        <wpml:useGlobalTurnParam>1</wpml:useGlobalTurnParam>
        <wpml:useStraightLine>1</wpml:useStraightLine>
",
        );
        action_group(&mut out, &mut group_id, i, &p.actions);
        out.push_str("      </Placemark>\n");
    }
    if c.payload.is_some() {
        out.push_str(
            "      <wpml:payloadParam>
        <wpml:payloadPositionIndex>0</wpml:payloadPositionIndex>
      </wpml:payloadParam>
",
        );
    }
    out.push_str("    </Folder>\n  </Document>\n</kml>\n");
    out
}

fn waylines_wpml(c: &Checked<'_>) -> String {
    let m = c.mission;
    let mut out = String::with_capacity(1024 + m.waypoints.len() * 1200);
    header(&mut out);
    mission_config(&mut out, c);
    // Distance and duration are what Pilot 2 shows before a flight; straight legs at each leg's
    // speed are what the aircraft flies with `useStraightLine` and stop-at-point turns.
    let mut distance = 0.0;
    let mut duration = 0.0;
    for pair in m.waypoints.windows(2) {
        let leg = leg_metres(&pair[0], &pair[1]);
        distance += leg;
        duration += leg / pair[0].speed.unwrap_or(m.auto_flight_speed);
    }
    let _ = write!(
        out,
        "    <Folder>
      <wpml:templateId>0</wpml:templateId>
      <wpml:executeHeightMode>relativeToStartPoint</wpml:executeHeightMode>
      <wpml:waylineId>0</wpml:waylineId>
      <wpml:distance>{distance:.3}</wpml:distance>
      <wpml:duration>{duration:.3}</wpml:duration>
      <wpml:autoFlightSpeed>{speed}</wpml:autoFlightSpeed>
",
        speed = m.auto_flight_speed,
    );
    let mut group_id = 0;
    for (i, p) in m.waypoints.iter().enumerate() {
        let _ = write!(
            out,
            "      <Placemark>
        <Point>
          <coordinates>{lon},{lat}</coordinates>
        </Point>
        <wpml:index>{i}</wpml:index>
        <wpml:executeHeight>{h}</wpml:executeHeight>
        <wpml:waypointSpeed>{s}</wpml:waypointSpeed>
        <wpml:waypointHeadingParam>
          <wpml:waypointHeadingMode>followWayline</wpml:waypointHeadingMode>
          <wpml:waypointHeadingAngle>0</wpml:waypointHeadingAngle>
          <wpml:waypointPoiPoint>0.000000,0.000000,0.000000</wpml:waypointPoiPoint>
          <wpml:waypointHeadingAngleEnable>0</wpml:waypointHeadingAngleEnable>
          <wpml:waypointHeadingPoiIndex>0</wpml:waypointHeadingPoiIndex>
        </wpml:waypointHeadingParam>
        <wpml:waypointTurnParam>
          <wpml:waypointTurnMode>toPointAndStopWithDiscontinuityCurvature</wpml:waypointTurnMode>
          <wpml:waypointTurnDampingDist>0</wpml:waypointTurnDampingDist>
        </wpml:waypointTurnParam>
        <wpml:useStraightLine>1</wpml:useStraightLine>
",
            lon = p.longitude,
            lat = p.latitude,
            h = p.height,
            s = p.speed.unwrap_or(m.auto_flight_speed),
        );
        action_group(&mut out, &mut group_id, i, &p.actions);
        out.push_str("      </Placemark>\n");
    }
    out.push_str("    </Folder>\n  </Document>\n</kml>\n");
    out
}

/// One `reachPoint` action group per waypoint that has actions; group ids are unique per file,
/// as the aircraft requires.
fn action_group(out: &mut String, group_id: &mut usize, index: usize, actions: &[String]) {
    if actions.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "        <wpml:actionGroup>
          <wpml:actionGroupId>{group_id}</wpml:actionGroupId>
          <wpml:actionGroupStartIndex>{index}</wpml:actionGroupStartIndex>
          <wpml:actionGroupEndIndex>{index}</wpml:actionGroupEndIndex>
          <wpml:actionGroupMode>sequence</wpml:actionGroupMode>
          <wpml:actionTrigger>
            <wpml:actionTriggerType>reachPoint</wpml:actionTriggerType>
          </wpml:actionTrigger>
"
    );
    for (action_id, func) in actions.iter().enumerate() {
        let _ = write!(
            out,
            "          <wpml:action>
            <wpml:actionId>{action_id}</wpml:actionId>
            <wpml:actionActuatorFunc>{func}</wpml:actionActuatorFunc>
            <wpml:actionActuatorFuncParam>
              <wpml:payloadPositionIndex>0</wpml:payloadPositionIndex>
            </wpml:actionActuatorFuncParam>
          </wpml:action>
",
            func = escape(func.as_str()),
        );
    }
    out.push_str("        </wpml:actionGroup>\n");
    *group_id += 1;
}

/// Great-circle distance in metres, with the height difference: legs are short, so the
/// haversine on a spherical Earth is well within what Pilot 2 shows.
fn leg_metres(a: &MissionPoint, b: &MissionPoint) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (la1, la2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dla = la2 - la1;
    let dlo = (b.longitude - a.longitude).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    let ground = 2.0 * EARTH_RADIUS_M * h.sqrt().asin();
    ground.hypot(b.height - a.height)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(lon: f64, lat: f64) -> MissionPoint {
        MissionPoint { longitude: lon, latitude: lat, height: 50.0, ..MissionPoint::default() }
    }

    fn mission() -> Mission {
        Mission {
            name: "m".to_owned(),
            drone_model_key: "0-67-0".to_owned(),
            payload_model_key: "1-53-0".to_owned(),
            waypoints: vec![point(113.0, 22.0), point(113.001, 22.0)],
            ..Mission::default()
        }
    }

    fn refused(m: &Mission) -> String {
        match check(m) {
            Err(WpmlError::InvalidMission(why)) => why,
            other => panic!("expected InvalidMission, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_valid_mission_passes() {
        assert!(check(&mission()).is_ok());
    }

    #[test]
    fn model_keys_must_have_the_right_domain() {
        assert!(refused(&Mission { drone_model_key: "1-67-0".into(), ..mission() }).contains("drone_model_key"));
        assert!(refused(&Mission { payload_model_key: "0-53".into(), ..mission() }).contains("payload_model_key"));
        assert!(check(&Mission { payload_model_key: String::new(), ..mission() }).is_ok());
    }

    #[test]
    fn bad_points_speeds_and_actions_are_refused() {
        let mut m = mission();
        m.waypoints.truncate(1);
        assert!(refused(&m).contains("at least 2"));
        let mut m = mission();
        m.waypoints[1].latitude = 91.0;
        assert!(refused(&m).contains("waypoint 1"));
        let mut m = mission();
        m.waypoints[0].speed = Some(0.0);
        assert!(refused(&m).contains("speed"));
        let mut m = mission();
        m.waypoints[0].actions = vec!["selfDestruct".into()];
        assert!(refused(&m).contains("unknown action"));
        assert!(refused(&Mission { finish_action: "crash".into(), ..mission() }).contains("finish_action"));
    }

    #[test]
    fn finish_action_defaults_to_go_home() {
        let m = Mission { finish_action: String::new(), ..mission() };
        assert_eq!(check(&m).map(|c| c.finish_action).ok(), Some("goHome"));
    }

    #[test]
    fn legs_are_measured_in_metres() {
        // 0.001° of longitude at the equator is about 111 m.
        let d = leg_metres(&point(0.0, 0.0), &point(0.001, 0.0));
        assert!((d - 111.2).abs() < 0.5, "{d}");
    }

    #[test]
    fn mission_deserialises_with_defaults() {
        let m: Mission = serde_json::from_str(
            r#"{"name":"n","drone_model_key":"0-67-0","payload_model_key":"1-53-0",
                "finish_action":null,"auto_flight_speed":null,
                "waypoints":[{"longitude":1,"latitude":2,"height":3,"actions":null},{"longitude":1.1,"latitude":2,"height":3,"speed":5,"actions":["takePhoto"]}]}"#,
        )
        .unwrap();
        assert_eq!(m.finish_action, "goHome");
        assert_eq!(m.auto_flight_speed, 10.0);
        assert_eq!(m.waypoints[1].actions, vec!["takePhoto".to_owned()]);
    }
}
