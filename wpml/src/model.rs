//! The typed content of `template.kml` and `waylines.wpml`, and what the wayline endpoints read
//! from it.
//!
//! Both documents share one shape (a mission config and folders of placemarks); the template
//! describes the route as planned (`templateType`, `height`, polygons of mapping routes), the
//! waylines file the route as flown (`waylineId`, `executeHeight`, `waypointSpeed`). Every element
//! the model has no field for lands in the `extra` map of its parent, so nothing a newer firmware
//! or another planner writes is lost, and a value that does not parse is kept there as written.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::xml::{self, insert_repeated, Element};
use crate::WpmlError;

/// A parsed KMZ. Unknown elements are kept (not an error).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kmz {
    /// `wpmz/template.kml`, when present.
    pub template: Option<Document>,
    /// `wpmz/waylines.wpml`, when present.
    pub waylines: Option<Document>,
    /// Names of the entries under `wpmz/res/` (DSM tiles, …), as stored; they are not expanded.
    pub resources: Vec<String>,
}

/// One WPML document (`template.kml` or `waylines.wpml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Document {
    pub author: Option<String>,
    /// Epoch milliseconds.
    pub create_time: Option<i64>,
    /// Epoch milliseconds.
    pub update_time: Option<i64>,
    pub mission_config: MissionConfig,
    /// The waylines (`Folder`s), in file order; a mapping template may have one without points,
    /// a template may have none.
    pub folders: Vec<Folder>,
    /// Other elements of the `Document`, by local name.
    pub extra: Map<String, Value>,
}

/// `wpml:missionConfig`: what applies to the whole mission.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MissionConfig {
    pub fly_to_wayline_mode: Option<String>,
    pub finish_action: Option<String>,
    pub exit_on_rc_lost: Option<String>,
    pub execute_rc_lost_action: Option<String>,
    pub take_off_security_height: Option<f64>,
    pub global_transitional_speed: Option<f64>,
    pub global_rth_height: Option<f64>,
    /// `"lat,lon,alt"` as written.
    pub take_off_ref_point: Option<String>,
    pub drone_info: Option<DroneInfo>,
    /// One per payload; aircraft with several gimbals list several.
    pub payload_info: Vec<PayloadInfo>,
    pub extra: Map<String, Value>,
}

/// `wpml:droneInfo`: the aircraft model (device domain 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DroneInfo {
    pub drone_enum_value: i32,
    pub drone_sub_enum_value: i32,
}

/// `wpml:payloadInfo`: one payload model (device domain 1) and its mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PayloadInfo {
    pub payload_enum_value: i32,
    pub payload_sub_enum_value: i32,
    pub payload_position_index: i32,
}

/// A `Folder`: one wayline (waylines.wpml) or one template (template.kml).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Folder {
    /// `waypoint`, `mapping2d`, `mapping3d` or `mappingStrip` (template.kml only).
    pub template_type: Option<String>,
    pub template_id: Option<i64>,
    /// waylines.wpml only.
    pub wayline_id: Option<i64>,
    pub auto_flight_speed: Option<f64>,
    /// waylines.wpml: `WGS84`, `EGM96`, `relativeToStartPoint`, …
    pub execute_height_mode: Option<String>,
    /// Metres, as computed by the planner (waylines.wpml).
    pub distance: Option<f64>,
    /// Seconds, as computed by the planner (waylines.wpml).
    pub duration: Option<f64>,
    pub placemarks: Vec<Placemark>,
    pub extra: Map<String, Value>,
}

/// A `Placemark`: a waypoint (with a `Point`) or, in mapping templates, the surveyed area (with a
/// `Polygon`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Placemark {
    pub index: Option<i64>,
    pub point: Option<Coordinate>,
    /// The outer boundary of a mapping area.
    pub polygon: Option<Vec<Coordinate>>,
    /// template.kml: the planned height.
    pub height: Option<f64>,
    pub ellipsoid_height: Option<f64>,
    /// waylines.wpml: the height flown, in the folder's `execute_height_mode`.
    pub execute_height: Option<f64>,
    /// `waypointSpeed`, m/s.
    pub speed: Option<f64>,
    /// Every action of every action group, in order.
    pub actions: Vec<Action>,
    /// The groups the actions belong to (trigger, range, mode), without their actions.
    pub action_groups: Vec<ActionGroup>,
    pub extra: Map<String, Value>,
}

/// `lon,lat[,alt]` of a KML `coordinates` tuple.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Coordinate {
    pub longitude: f64,
    pub latitude: f64,
    pub altitude: Option<f64>,
}

/// `wpml:actionGroup`, its actions listed in [`Placemark::actions`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActionGroup {
    pub action_group_id: Option<i64>,
    pub action_group_start_index: Option<i64>,
    pub action_group_end_index: Option<i64>,
    /// `sequence`, …
    pub action_group_mode: Option<String>,
    /// `reachPoint`, `betweenAdjacentPoints`, `multipleTiming`, `multipleDistance`, …
    pub action_trigger_type: Option<String>,
    pub extra: Map<String, Value>,
}

/// `wpml:action`: one thing the aircraft or payload does.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Action {
    pub action_group_id: Option<i64>,
    pub action_id: Option<i64>,
    /// `takePhoto`, `startRecord`, `gimbalRotate`, `hover`, …
    pub action_actuator_func: String,
    /// `wpml:actionActuatorFuncParam`, by local name.
    pub params: Map<String, Value>,
}

/// A waypoint as flown, for lists, maps and the JSON endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waypoint {
    pub index: i64,
    pub longitude: f64,
    pub latitude: f64,
    /// `executeHeight` (waylines.wpml), else `height`, `ellipsoidHeight` or the point's altitude.
    pub height: f64,
    pub speed: Option<f64>,
    pub actions: Vec<Action>,
}

/// The `templateType` names and DJI's numbers for them (wayline list `template_types`).
const TEMPLATE_TYPES: [(&str, i32); 4] = [("waypoint", 0), ("mapping2d", 1), ("mapping3d", 2), ("mappingstrip", 3)];

/// DJI's number of a `templateType` name, ignoring case.
pub fn template_type_number(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_lowercase();
    TEMPLATE_TYPES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

impl Kmz {
    /// `"<domain>-<type>-<sub_type>"` of the aircraft (domain 0), from template.kml else
    /// waylines.wpml.
    pub fn drone_model_key(&self) -> Option<String> {
        self.documents()
            .find_map(|d| d.mission_config.drone_info)
            .map(|d| format!("0-{}-{}", d.drone_enum_value, d.drone_sub_enum_value))
    }

    /// `"<domain>-<type>-<sub_type>"` of each payload (domain 1), in order, deduplicated.
    pub fn payload_model_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for doc in self.documents() {
            for p in &doc.mission_config.payload_info {
                let key = format!("1-{}-{}", p.payload_enum_value, p.payload_sub_enum_value);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// DJI's template type numbers of every folder: waypoint 0, mapping2d 1, mapping3d 2,
    /// mappingStrip 3 (unknown names skipped), deduplicated, in order of appearance.
    pub fn template_types(&self) -> Vec<i32> {
        let mut types = Vec::new();
        for doc in self.documents() {
            for folder in &doc.folders {
                if let Some(n) = folder.template_type.as_deref().and_then(template_type_number) {
                    if !types.contains(&n) {
                        types.push(n);
                    }
                }
            }
        }
        types
    }

    /// Every waypoint of every wayline (waylines.wpml, else template.kml), in order. Placemarks
    /// without a point (mapping areas) are skipped.
    pub fn waypoints(&self) -> Vec<Waypoint> {
        // waylines.wpml is what the aircraft flies; a template alone is all some planners export,
        // and a waylines file without points says nothing the template does not.
        let flown = self.waylines.as_ref().map(document_waypoints).unwrap_or_default();
        if !flown.is_empty() {
            return flown;
        }
        self.template.as_ref().map(document_waypoints).unwrap_or_default()
    }

    /// JSON for the kmz-to-json endpoint, snake_case: the model keys and template types, both
    /// documents in full (mission config, folders with their placemarks, unknown elements) and
    /// every waypoint with coordinates, height, speed and actions.
    pub fn to_json(&self) -> Value {
        json!({
            "drone_model_key": self.drone_model_key(),
            "payload_model_keys": self.payload_model_keys(),
            "template_types": self.template_types(),
            "template": self.template,
            "waylines": self.waylines,
            "resources": self.resources,
            "waypoints": self.waypoints(),
        })
    }

    /// template.kml first: it is the file DJI's software reads the model keys from.
    fn documents(&self) -> impl Iterator<Item = &Document> {
        self.template.iter().chain(self.waylines.iter())
    }
}

fn document_waypoints(doc: &Document) -> Vec<Waypoint> {
    let mut out = Vec::new();
    for folder in &doc.folders {
        for (position, p) in folder.placemarks.iter().enumerate() {
            let Some(point) = p.point else { continue };
            let height = p
                .execute_height
                .or(p.height)
                .or(p.ellipsoid_height)
                .or(point.altitude)
                .or_else(|| folder.extra.get("globalHeight").and_then(Value::as_f64))
                .unwrap_or(0.0);
            out.push(Waypoint {
                index: p.index.unwrap_or(position as i64),
                longitude: point.longitude,
                latitude: point.latitude,
                height,
                speed: p.speed,
                actions: p.actions.clone(),
            });
        }
    }
    out
}

/// Parses one WPML document; `what` names it in errors.
pub(crate) fn parse_document(bytes: &[u8], what: &str) -> Result<Document, WpmlError> {
    let root = xml::parse(bytes).map_err(|e| WpmlError::Xml(format!("{what}: {e}")))?;
    // `<kml><Document>…` per KML; tolerate a bare `<Document>` root or a `<kml>` without one.
    let doc = if root.name == "Document" { &root } else { root.child("Document").unwrap_or(&root) };
    Ok(document(doc))
}

fn document(el: &Element) -> Document {
    let mut doc = Document::default();
    for c in &el.children {
        match c.name.as_str() {
            "author" => doc.author = Some(c.text.clone()),
            "createTime" => set_or_keep(&mut doc.create_time, int(c), c, &mut doc.extra),
            "updateTime" => set_or_keep(&mut doc.update_time, int(c), c, &mut doc.extra),
            "missionConfig" => doc.mission_config = mission_config(c),
            "Folder" => folders(c, &mut doc.folders),
            _ => keep(&mut doc.extra, c),
        }
    }
    doc
}

/// KML allows folders inside folders; DJI's files do not nest them, others might, so nested
/// folders are flattened in document order.
fn folders(el: &Element, out: &mut Vec<Folder>) {
    let mut folder = Folder::default();
    let mut nested = Vec::new();
    for c in &el.children {
        match c.name.as_str() {
            "templateType" => folder.template_type = Some(c.text.clone()),
            "templateId" => set_or_keep(&mut folder.template_id, int(c), c, &mut folder.extra),
            "waylineId" => set_or_keep(&mut folder.wayline_id, int(c), c, &mut folder.extra),
            "autoFlightSpeed" => set_or_keep(&mut folder.auto_flight_speed, float(c), c, &mut folder.extra),
            "executeHeightMode" => folder.execute_height_mode = Some(c.text.clone()),
            "distance" => set_or_keep(&mut folder.distance, float(c), c, &mut folder.extra),
            "duration" => set_or_keep(&mut folder.duration, float(c), c, &mut folder.extra),
            "Placemark" => folder.placemarks.push(placemark(c)),
            "Folder" => nested.push(c),
            _ => keep(&mut folder.extra, c),
        }
    }
    out.push(folder);
    for n in nested {
        folders(n, out);
    }
}

fn mission_config(el: &Element) -> MissionConfig {
    let mut mc = MissionConfig::default();
    for c in &el.children {
        match c.name.as_str() {
            "flyToWaylineMode" => mc.fly_to_wayline_mode = Some(c.text.clone()),
            "finishAction" => mc.finish_action = Some(c.text.clone()),
            "exitOnRCLost" => mc.exit_on_rc_lost = Some(c.text.clone()),
            "executeRCLostAction" => mc.execute_rc_lost_action = Some(c.text.clone()),
            "takeOffSecurityHeight" => set_or_keep(&mut mc.take_off_security_height, float(c), c, &mut mc.extra),
            "globalTransitionalSpeed" => set_or_keep(&mut mc.global_transitional_speed, float(c), c, &mut mc.extra),
            "globalRTHHeight" => set_or_keep(&mut mc.global_rth_height, float(c), c, &mut mc.extra),
            "takeOffRefPoint" => mc.take_off_ref_point = Some(c.text.clone()),
            "droneInfo" => match c.child("droneEnumValue").and_then(int) {
                Some(t) => {
                    mc.drone_info = Some(DroneInfo {
                        drone_enum_value: t as i32,
                        // Absent in some third-party files; 0 is the sub type of most models.
                        drone_sub_enum_value: c.child("droneSubEnumValue").and_then(int).unwrap_or(0) as i32,
                    })
                }
                None => keep(&mut mc.extra, c),
            },
            "payloadInfo" => match c.child("payloadEnumValue").and_then(int) {
                Some(t) => mc.payload_info.push(PayloadInfo {
                    payload_enum_value: t as i32,
                    payload_sub_enum_value: c.child("payloadSubEnumValue").and_then(int).unwrap_or(0) as i32,
                    payload_position_index: c.child("payloadPositionIndex").and_then(int).unwrap_or(0) as i32,
                }),
                None => keep(&mut mc.extra, c),
            },
            _ => keep(&mut mc.extra, c),
        }
    }
    mc
}

fn placemark(el: &Element) -> Placemark {
    let mut p = Placemark::default();
    for c in &el.children {
        match c.name.as_str() {
            "index" => set_or_keep(&mut p.index, int(c), c, &mut p.extra),
            "Point" => match c.child("coordinates").map(|co| coordinates(&co.text)) {
                Some(points) if !points.is_empty() => p.point = points.first().copied(),
                _ => keep(&mut p.extra, c),
            },
            "Polygon" => {
                let ring = c
                    .child("outerBoundaryIs")
                    .and_then(|b| b.child("LinearRing"))
                    .and_then(|r| r.child("coordinates"))
                    .map(|co| coordinates(&co.text));
                match ring {
                    Some(points) if !points.is_empty() => p.polygon = Some(points),
                    _ => keep(&mut p.extra, c),
                }
            }
            "height" => set_or_keep(&mut p.height, float(c), c, &mut p.extra),
            "ellipsoidHeight" => set_or_keep(&mut p.ellipsoid_height, float(c), c, &mut p.extra),
            "executeHeight" => set_or_keep(&mut p.execute_height, float(c), c, &mut p.extra),
            "waypointSpeed" => set_or_keep(&mut p.speed, float(c), c, &mut p.extra),
            "actionGroup" => action_group(c, &mut p),
            _ => keep(&mut p.extra, c),
        }
    }
    p
}

fn action_group(el: &Element, p: &mut Placemark) {
    let mut group = ActionGroup::default();
    let mut actions = Vec::new();
    for c in &el.children {
        match c.name.as_str() {
            "actionGroupId" => set_or_keep(&mut group.action_group_id, int(c), c, &mut group.extra),
            "actionGroupStartIndex" => set_or_keep(&mut group.action_group_start_index, int(c), c, &mut group.extra),
            "actionGroupEndIndex" => set_or_keep(&mut group.action_group_end_index, int(c), c, &mut group.extra),
            "actionGroupMode" => group.action_group_mode = Some(c.text.clone()),
            "actionTrigger" => match c.child("actionTriggerType") {
                Some(t) if c.children.len() == 1 => group.action_trigger_type = Some(t.text.clone()),
                // A trigger with parameters (multipleTiming, …) is kept whole.
                Some(t) => {
                    group.action_trigger_type = Some(t.text.clone());
                    keep(&mut group.extra, c);
                }
                None => keep(&mut group.extra, c),
            },
            "action" => actions.push(c),
            _ => keep(&mut group.extra, c),
        }
    }
    for a in actions {
        let mut action = Action { action_group_id: group.action_group_id, ..Action::default() };
        for c in &a.children {
            match c.name.as_str() {
                "actionId" => action.action_id = int(c),
                "actionActuatorFunc" => action.action_actuator_func = c.text.clone(),
                "actionActuatorFuncParam" => {
                    for param in &c.children {
                        keep(&mut action.params, param);
                    }
                }
                // Anything else about the action is kept with its parameters.
                _ => keep(&mut action.params, c),
            }
        }
        p.actions.push(action);
    }
    p.action_groups.push(group);
}

/// Parses KML `coordinates`: tuples `lon,lat[,alt]` separated by whitespace. Exporters also write
/// spaces after commas and line breaks inside tuples, so whitespace next to a comma is dropped
/// before splitting; tuples that do not parse are skipped.
pub(crate) fn coordinates(text: &str) -> Vec<Coordinate> {
    let joined = text.split(',').map(str::trim).collect::<Vec<_>>().join(",");
    joined
        .split_whitespace()
        .filter_map(|tuple| {
            let mut parts = tuple.split(',').map(|p| p.parse::<f64>());
            let longitude = parts.next()?.ok()?;
            let latitude = parts.next()?.ok()?;
            let altitude = parts.next().and_then(Result::ok);
            (longitude.is_finite() && latitude.is_finite()).then_some(Coordinate { longitude, latitude, altitude })
        })
        .collect()
}

fn int(el: &Element) -> Option<i64> {
    let t = el.text.trim();
    // Some planners write integers as decimals ("0.0"); accept those when they are whole.
    t.parse::<i64>()
        .ok()
        .or_else(|| t.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
}

fn float(el: &Element) -> Option<f64> {
    el.text.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Sets a typed field, or keeps the element as written when its value does not parse.
fn set_or_keep<T>(field: &mut Option<T>, value: Option<T>, el: &Element, extra: &mut Map<String, Value>) {
    match value {
        Some(v) => *field = Some(v),
        None => keep(extra, el),
    }
}

fn keep(extra: &mut Map<String, Value>, el: &Element) {
    insert_repeated(extra, &el.name, el.to_value());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_tolerate_spaces_line_breaks_and_missing_altitude() {
        let c = coordinates("\r\n  113.9, 22.5 ,10\n  114.0,22.6\t 114.1 ,  22.7  , 3 \n bad,1 ");
        assert_eq!(c.len(), 3);
        assert_eq!(c[0], Coordinate { longitude: 113.9, latitude: 22.5, altitude: Some(10.0) });
        assert_eq!(c[1].altitude, None);
        assert_eq!(c[2].latitude, 22.7);
    }

    #[test]
    fn template_type_names_map_to_dji_numbers() {
        assert_eq!(template_type_number("waypoint"), Some(0));
        assert_eq!(template_type_number("mapping2d"), Some(1));
        assert_eq!(template_type_number("mapping3d"), Some(2));
        assert_eq!(template_type_number("mappingStrip"), Some(3));
        assert_eq!(template_type_number("spiral"), None);
    }

    #[test]
    fn unparsable_values_are_kept_as_written() {
        let doc = br#"<kml><Document><Folder><wpml:autoFlightSpeed>fast</wpml:autoFlightSpeed>
            <wpml:newThing><wpml:a>1</wpml:a></wpml:newThing></Folder></Document></kml>"#;
        let d = parse_document(doc, "test").unwrap();
        assert_eq!(d.folders[0].auto_flight_speed, None);
        assert_eq!(d.folders[0].extra["autoFlightSpeed"], Value::from("fast"));
        assert_eq!(d.folders[0].extra["newThing"], json!({"a": 1}));
    }

    #[test]
    fn waypoints_come_from_the_template_when_waylines_have_none() {
        let template = b"<kml><Document><Folder><Placemark><Point><coordinates>1,2,3</coordinates></Point>\
            </Placemark></Folder></Document></kml>";
        let empty = b"<kml><Document><Folder/></Document></kml>";
        let kmz = Kmz {
            template: Some(parse_document(template, "t").unwrap()),
            waylines: Some(parse_document(empty, "w").unwrap()),
            resources: vec![],
        };
        let points = kmz.waypoints();
        assert_eq!(points.len(), 1);
        // Without any height element the point's altitude is the height.
        assert_eq!((points[0].index, points[0].longitude, points[0].height), (0, 1.0, 3.0));
    }

    #[test]
    fn integers_written_as_decimals_are_accepted() {
        let doc = b"<kml><Document><wpml:missionConfig><wpml:droneInfo><wpml:droneEnumValue>67.0</wpml:droneEnumValue>\
            </wpml:droneInfo></wpml:missionConfig></Document></kml>";
        let kmz = Kmz { template: Some(parse_document(doc, "t").unwrap()), waylines: None, resources: vec![] };
        assert_eq!(kmz.drone_model_key().as_deref(), Some("0-67-0"));
    }
}
