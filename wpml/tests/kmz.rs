//! Reading KMZ files: fixtures written from DJI's WPML specification, a real DJI Pilot 2 export,
//! limits against zip bombs and huge files, and the round trip of generated waylines.

mod fixtures;

use fixtures::{
    first_entry_uses_data_descriptor, kmz, kmz_with_data_descriptors, MAPPING2D_TEMPLATE, WAYLINES_TWO_FOLDERS,
    WAYPOINT_TEMPLATE,
};
use serde_json::{json, Value};
use wpml::{parse_rate_fixture, read_kmz, read_kmz_with, write_kmz, Limits, Mission, MissionPoint, WpmlError};

/// A DJI Pilot 2 export (Mavic 3 Enterprise series, two waypoints, entries with data
/// descriptors), from github.com/lawrencejesse/QGIS-GeoJSON-DJI-Pilot2-waypoints (`Seed.kmz`, MIT).
const PILOT2_EXPORT: &[u8] = include_bytes!("fixtures/pilot2_waypoint_m3e.kmz");

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn waypoint_template_gives_keys_types_and_waypoints_with_actions() {
    let kmz = read_kmz(&kmz(&[("wpmz/template.kml", WAYPOINT_TEMPLATE.as_bytes())])).unwrap();

    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-67-1"));
    assert_eq!(kmz.payload_model_keys(), vec!["1-53-0"]);
    assert_eq!(kmz.template_types(), vec![0]);
    let template = kmz.template.as_ref().unwrap();
    assert_eq!(template.author.as_deref(), Some("pilot"));
    assert_eq!(template.create_time, Some(1702051864938));
    assert_eq!(template.mission_config.finish_action.as_deref(), Some("goHome"));
    assert_eq!(template.mission_config.take_off_security_height, Some(20.0));
    // Unknown elements are kept where they were.
    assert_eq!(template.mission_config.extra["futureSetting"], json!("on"));
    assert_eq!(template.folders[0].extra["payloadParam"]["imageFormat"], json!("wide,zoom"));

    let points = kmz.waypoints();
    assert_eq!(points.len(), 3);
    assert_eq!((points[0].index, points[0].longitude, points[0].latitude), (0, 113.943, 22.577));
    assert_eq!(points[0].height, 100.0);
    assert_eq!(points[0].speed, None);
    assert_eq!(points[1].speed, Some(5.0));
    let funcs: Vec<_> = points[1].actions.iter().map(|a| a.action_actuator_func.as_str()).collect();
    assert_eq!(funcs, ["gimbalRotate", "takePhoto"]);
    assert_eq!(points[1].actions[0].params["gimbalPitchRotateAngle"], json!(-90));
    assert_eq!(points[1].actions[1].params["fileSuffix"], json!("point1"));
    assert_eq!(points[2].actions[0].action_actuator_func, "hover");
    assert_eq!(points[2].actions[0].params["hoverTime"], json!(5));
    let group = &template.folders[0].placemarks[1].action_groups[0];
    assert_eq!(group.action_trigger_type.as_deref(), Some("reachPoint"));
    assert_eq!((group.action_group_start_index, group.action_group_end_index), (Some(1), Some(1)));
}

#[test]
fn mapping_template_has_a_polygon_and_no_waypoints_and_lists_its_dsm() {
    let kmz = read_kmz(&kmz(&[
        ("wpmz/template.kml", MAPPING2D_TEMPLATE.as_bytes()),
        ("wpmz/res/dsm/tile.tif", b"II*\0 not really a tiff"),
    ]))
    .unwrap();

    assert_eq!(kmz.template_types(), vec![1]);
    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-91-0"));
    assert_eq!(kmz.payload_model_keys(), vec!["1-80-0"]);
    assert_eq!(kmz.resources, vec!["wpmz/res/dsm/tile.tif"]);
    assert!(kmz.waypoints().is_empty());
    let area = &kmz.template.as_ref().unwrap().folders[0].placemarks[0];
    let polygon = area.polygon.as_ref().unwrap();
    assert_eq!(polygon.len(), 4);
    assert!(close(polygon[2].longitude, 113.95) && close(polygon[2].latitude, 22.58));
    assert_eq!(area.extra["overlap"]["orthoCameraOverlapH"], json!(80));
}

#[test]
fn template_without_folders_is_accepted() {
    let doc = r#"<kml xmlns:wpml="http://www.dji.com/wpmz/1.0.6"><Document><wpml:missionConfig><wpml:droneInfo>
        <wpml:droneEnumValue>77</wpml:droneEnumValue><wpml:droneSubEnumValue>0</wpml:droneSubEnumValue>
        </wpml:droneInfo></wpml:missionConfig></Document></kml>"#;
    let kmz = read_kmz(&kmz(&[("wpmz/template.kml", doc.as_bytes())])).unwrap();
    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-77-0"));
    assert!(kmz.template_types().is_empty());
    assert!(kmz.payload_model_keys().is_empty());
    assert!(kmz.waypoints().is_empty());
}

#[test]
fn several_waylines_are_read_in_order_from_waylines_wpml() {
    let kmz = read_kmz(&kmz(&[
        ("wpmz/template.kml", MAPPING2D_TEMPLATE.as_bytes()),
        ("wpmz/waylines.wpml", WAYLINES_TWO_FOLDERS.as_bytes()),
    ]))
    .unwrap();

    let waylines = kmz.waylines.as_ref().unwrap();
    assert_eq!(waylines.folders.len(), 2);
    assert_eq!(waylines.folders[0].wayline_id, Some(0));
    assert_eq!(waylines.folders[1].wayline_id, Some(1));
    assert_eq!(waylines.folders[0].distance, Some(1234.5));
    assert_eq!(waylines.folders[0].execute_height_mode.as_deref(), Some("WGS84"));
    assert_eq!(waylines.mission_config.finish_action.as_deref(), Some("noAction"));

    let points = kmz.waypoints();
    let heights: Vec<f64> = points.iter().map(|p| p.height).collect();
    assert_eq!(heights, [132.5, 133.0, 134.0, 135.0]);
    assert_eq!(points[3].speed, Some(8.0));
    assert_eq!(points[1].actions[0].action_actuator_func, "takePhoto");
    let group = &waylines.folders[0].placemarks[1].action_groups[0];
    // A trigger with a parameter keeps its type and the whole trigger.
    assert_eq!(group.action_trigger_type.as_deref(), Some("multipleTiming"));
    assert_eq!(group.extra["actionTrigger"]["actionTriggerParam"], json!(2));
    // The types come from the template, the waypoints from what is flown.
    assert_eq!(kmz.template_types(), vec![1]);
}

#[test]
fn waylines_without_template_are_enough() {
    let kmz = read_kmz(&kmz(&[("wpmz/waylines.wpml", WAYLINES_TWO_FOLDERS.as_bytes())])).unwrap();
    assert!(kmz.template.is_none());
    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-91-0"));
    assert_eq!(kmz.waypoints().len(), 4);
}

#[test]
fn bom_and_crlf_are_accepted() {
    let crlf = format!("\u{feff}{}", WAYPOINT_TEMPLATE.replace('\n', "\r\n"));
    let kmz = read_kmz(&kmz(&[("wpmz/template.kml", crlf.as_bytes())])).unwrap();
    assert_eq!(kmz.waypoints().len(), 3);
    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-67-1"));
}

#[test]
fn other_namespace_versions_and_prefixes_are_accepted() {
    let old = WAYPOINT_TEMPLATE
        .replace("http://www.dji.com/wpmz/1.0.2", "http://www.dji.com/wpml/1.0")
        .replace("wpml:", "dji:")
        .replace("xmlns:wpml", "xmlns:dji");
    let kmz = read_kmz(&kmz(&[("wpmz/template.kml", old.as_bytes())])).unwrap();
    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-67-1"));
    assert_eq!(kmz.waypoints().len(), 3);
}

#[test]
fn entries_with_data_descriptors_are_read() {
    let bytes = kmz_with_data_descriptors(&[("wpmz/template.kml", WAYPOINT_TEMPLATE.as_bytes())]);
    assert!(first_entry_uses_data_descriptor(&bytes));
    let kmz = read_kmz(&bytes).unwrap();
    assert_eq!(kmz.waypoints().len(), 3);
}

#[test]
fn real_pilot2_export_is_read() {
    assert!(first_entry_uses_data_descriptor(PILOT2_EXPORT));
    let kmz = read_kmz(PILOT2_EXPORT).unwrap();
    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-77-2"));
    assert_eq!(kmz.payload_model_keys(), vec!["1-68-0"]);
    assert_eq!(kmz.template_types(), vec![0]);
    let points = kmz.waypoints();
    assert_eq!(points.len(), 2);
    assert!(close(points[0].longitude, -101.148371034063));
    assert!(close(points[0].latitude, 49.7155414935301));
    assert_eq!(points[0].height, 10.0);
    assert_eq!(points[0].speed, Some(15.0));
    let wayline = &kmz.waylines.as_ref().unwrap().folders[0];
    assert_eq!(wayline.execute_height_mode.as_deref(), Some("relativeToStartPoint"));
    assert_eq!(wayline.placemarks[0].extra["waypointTurnParam"]["waypointTurnDampingDist"], json!(0));
}

#[test]
fn a_thousand_waypoints_are_read() {
    let bytes = parse_rate_fixture(1000);
    let kmz = read_kmz(&bytes).unwrap();
    let points = kmz.waypoints();
    assert_eq!(points.len(), 1000);
    assert!(points.iter().enumerate().all(|(i, p)| p.index == i as i64));
    assert_eq!(points.iter().filter(|p| !p.actions.is_empty()).count(), 100);
}

#[test]
fn json_has_config_folders_and_waypoints_in_snake_case() {
    let kmz = read_kmz(&kmz(&[
        ("wpmz/template.kml", WAYPOINT_TEMPLATE.as_bytes()),
        ("wpmz/waylines.wpml", WAYLINES_TWO_FOLDERS.as_bytes()),
    ]))
    .unwrap();
    let j = kmz.to_json();
    assert_eq!(j["drone_model_key"], json!("0-67-1"));
    assert_eq!(j["payload_model_keys"], json!(["1-53-0", "1-80-0"]));
    assert_eq!(j["template_types"], json!([0]));
    assert_eq!(
        j["template"]["mission_config"]["drone_info"],
        json!({"drone_enum_value": 67, "drone_sub_enum_value": 1})
    );
    assert_eq!(j["waylines"]["folders"][1]["wayline_id"], json!(1));
    assert_eq!(j["waylines"]["folders"][0]["placemarks"][0]["point"]["longitude"], json!(113.94));
    let first = &j["waypoints"][0];
    assert_eq!(first["longitude"], json!(113.94));
    assert_eq!(first["height"], json!(132.5));
    assert_eq!(first["speed"], json!(10.0));
    assert_eq!(j["waypoints"][1]["actions"][0]["action_actuator_func"], json!("takePhoto"));
    assert_eq!(j["waypoints"].as_array().map(Vec::len), Some(4));
    assert_eq!(j["resources"], json!([]));
}

#[test]
fn generated_mission_round_trips() {
    let mission = Mission {
        name: "Roof <inspection> & more".to_owned(),
        drone_model_key: "0-67-0".to_owned(),
        payload_model_key: "1-53-0".to_owned(),
        waypoints: vec![
            MissionPoint { longitude: 113.943, latitude: 22.577, height: 60.0, speed: None, actions: vec![] },
            MissionPoint {
                longitude: 113.9441234,
                latitude: 22.5781234,
                height: 75.5,
                speed: Some(6.5),
                actions: vec!["takePhoto".to_owned(), "startRecord".to_owned()],
            },
            MissionPoint {
                longitude: -0.1276,
                latitude: 51.5072,
                height: 40.0,
                speed: None,
                actions: vec!["stopRecord".to_owned()],
            },
        ],
        auto_flight_speed: 8.0,
        finish_action: "autoLand".to_owned(),
        take_off_security_height: 25.0,
    };
    let bytes = write_kmz(&mission).unwrap();
    let kmz = read_kmz(&bytes).unwrap();

    assert_eq!(kmz.drone_model_key().as_deref(), Some("0-67-0"));
    assert_eq!(kmz.payload_model_keys(), vec!["1-53-0"]);
    assert_eq!(kmz.template_types(), vec![0]);
    let points = kmz.waypoints();
    assert_eq!(points.len(), mission.waypoints.len());
    for (i, (got, want)) in points.iter().zip(&mission.waypoints).enumerate() {
        assert_eq!(got.index, i as i64);
        assert!(close(got.longitude, want.longitude) && close(got.latitude, want.latitude), "{i}");
        assert!(close(got.height, want.height), "{i}");
        // waylines.wpml states every point's speed; points without one fly the mission's speed.
        assert_eq!(got.speed, Some(want.speed.unwrap_or(mission.auto_flight_speed)), "{i}");
        let funcs: Vec<_> = got.actions.iter().map(|a| a.action_actuator_func.clone()).collect();
        assert_eq!(funcs, want.actions, "{i}");
    }
    for doc in [kmz.template.as_ref().unwrap(), kmz.waylines.as_ref().unwrap()] {
        let config = &doc.mission_config;
        assert_eq!(config.finish_action.as_deref(), Some("autoLand"));
        assert_eq!(config.take_off_security_height, Some(25.0));
        assert_eq!(config.global_transitional_speed, Some(8.0));
    }
    assert_eq!(kmz.template.as_ref().unwrap().author.as_deref(), Some("Roof <inspection> & more"));
    // Action group ids are unique in the file, as the aircraft requires.
    let ids: Vec<_> = kmz.waylines.as_ref().unwrap().folders[0]
        .placemarks
        .iter()
        .flat_map(|p| p.action_groups.iter().map(|g| g.action_group_id))
        .collect();
    assert_eq!(ids, [Some(0), Some(1)]);
    assert!(kmz.waylines.as_ref().unwrap().folders[0].distance.is_some_and(|d| d > 1000.0));
}

#[test]
fn an_invalid_mission_is_refused() {
    let mission = Mission { drone_model_key: "0-67-0".into(), ..Mission::default() };
    assert!(matches!(write_kmz(&mission), Err(WpmlError::InvalidMission(_))));
}

// Refusals.

#[test]
fn not_a_zip_is_refused() {
    assert!(matches!(read_kmz(b"<kml>not zipped</kml>"), Err(WpmlError::NotZip)));
    assert!(matches!(read_kmz(b""), Err(WpmlError::NotZip)));
}

#[test]
fn zip_without_wpml_is_refused() {
    let bytes = kmz(&[("doc.kml", b"<kml/>".as_slice()), ("wpmz/res/a.png", b"png")]);
    assert!(matches!(read_kmz(&bytes), Err(WpmlError::MissingWpml)));
}

#[test]
fn malformed_xml_is_refused_with_the_encoding_message() {
    let bytes = kmz(&[("wpmz/template.kml", b"<kml><Document></kml>".as_slice())]);
    let err = read_kmz(&bytes).unwrap_err();
    assert!(matches!(err, WpmlError::Xml(_)), "{err:?}");
    assert!(err.to_string().starts_with("The file encoding format is incorrect"));
}

#[test]
fn zip_bomb_is_refused_before_expanding() {
    // 32 MiB of zeros deflate to about 32 KiB: a ratio near 1000, under every size limit.
    let zeros = vec![0u8; 32 * 1024 * 1024];
    let bytes = kmz(&[("wpmz/template.kml", zeros.as_slice())]);
    assert!(bytes.len() < 100 * 1024);
    assert!(matches!(read_kmz(&bytes), Err(WpmlError::ZipBomb(_))));
}

#[test]
fn oversized_entry_is_refused() {
    let limits = Limits { max_entry_bytes: 1000, ..Limits::default() };
    let bytes = kmz(&[("wpmz/template.kml", WAYPOINT_TEMPLATE.as_bytes())]);
    let err = read_kmz_with(&bytes, limits).unwrap_err();
    assert!(matches!(&err, WpmlError::TooLarge(why) if why.contains("per entry")), "{err:?}");
}

#[test]
fn oversized_total_kmz_and_entry_count_are_refused() {
    let bytes = kmz(&[("wpmz/template.kml", WAYPOINT_TEMPLATE.as_bytes()), ("wpmz/res/a", b"a".as_slice())]);
    let too_large = |limits| matches!(read_kmz_with(&bytes, limits), Err(WpmlError::TooLarge(_)));
    assert!(too_large(Limits { max_kmz_bytes: 100, ..Limits::default() }));
    assert!(too_large(Limits { max_entries: 1, ..Limits::default() }));
    assert!(too_large(Limits { max_total_bytes: 1000, ..Limits::default() }));
    assert!(read_kmz_with(&bytes, Limits::default()).is_ok());
}

#[test]
fn an_entry_that_expands_past_its_declared_size_is_stopped() {
    // Declare 100 bytes for an entry that expands to the whole template, in the local header and
    // the central directory both, as a crafted archive would.
    let mut bytes = kmz(&[("wpmz/template.kml", WAYPOINT_TEMPLATE.as_bytes())]);
    let real = WAYPOINT_TEMPLATE.len() as u32;
    let lie = 100u32.to_le_bytes();
    let mut patched = 0;
    for at in 0..bytes.len().saturating_sub(4) {
        let sig = &bytes[at..at + 4];
        let size_at = if sig == b"PK\x03\x04" {
            at + 22
        } else if sig == b"PK\x01\x02" {
            at + 24
        } else {
            continue;
        };
        assert_eq!(u32::from_le_bytes(bytes[size_at..size_at + 4].try_into().unwrap()), real);
        bytes[size_at..size_at + 4].copy_from_slice(&lie);
        patched += 1;
    }
    assert_eq!(patched, 2);
    let limits = Limits { max_entry_bytes: 1000, ..Limits::default() };
    let err = read_kmz_with(&bytes, limits).unwrap_err();
    // The zip layer stops at the declared size and then fails the CRC (NotZip); the crate's own
    // cap on expanded bytes (ZipBomb) is the second line should a zip layer ever read on.
    assert!(matches!(err, WpmlError::ZipBomb(_) | WpmlError::NotZip), "{err:?}");
}

#[test]
fn error_messages_say_what_was_wrong() {
    assert_eq!(WpmlError::NotZip.to_string(), "The file is not a KMZ (zip) archive.");
    assert_eq!(WpmlError::MissingWpml.to_string(), "The KMZ holds no wpmz/template.kml or wpmz/waylines.wpml.");
    let v: Value = json!(WpmlError::Xml("x".into()).to_string());
    assert_eq!(v, json!("The file encoding format is incorrect: x"));
}
