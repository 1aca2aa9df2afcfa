//! A map element of a workspace (WorkspaceElementController): a point, a line or a polygon that the
//! web client and DJI Pilot 2 draw on the map and share, inside one of the workspace's element
//! groups. Its id is the uuid the client generated.
//!
//! Every workspace has the same three groups (DJI's: "Pilot Share Layer", "Default Layer",
//! "Custom Flight Area"), so groups are data ([`GROUPS`]), not an aggregate.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const AGGREGATE_TYPE: &str = "map_element";

/// An element group of every workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub id: &'static str,
    pub name: &'static str,
    /// 0 custom (flight areas), 1 default, 2 shared with the apps.
    pub group_type: i32,
    /// Whether the group is handed to DJI Pilot 2 and the web client's layer list
    /// (`is_distributed=true`); the flight areas' group is managed through its own API.
    pub distributed: bool,
    pub locked: bool,
}

/// The groups of every workspace, with DJI's ids.
pub const GROUPS: [Group; 3] = [
    Group {
        id: "e3dea0f5-37f2-4d79-ae58-490af3228060",
        name: "Pilot Share Layer",
        group_type: 2,
        distributed: true,
        locked: false,
    },
    Group {
        id: "e3dea0f5-37f2-4d79-ae58-490af3228011",
        name: "Default Layer",
        group_type: 1,
        distributed: true,
        locked: false,
    },
    Group {
        id: "d58479c8-4a80-4036-aa55-8beffb7158e9",
        name: "Custom Flight Area",
        group_type: 0,
        distributed: false,
        locked: false,
    },
];

pub fn group(id: &str) -> Option<&'static Group> {
    GROUPS.iter().find(|g| g.id == id)
}

/// What an element is: its geometry kind and its GeoJSON Feature (`{type: "Feature", properties:
/// {color, clampToGround}, geometry}`), kept as the client sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMapElement {
    pub workspace_id: String,
    pub group_id: String,
    pub name: String,
    /// 0 point, 1 line string, 2 polygon.
    pub element_type: i32,
    /// Who drew it (the token's user name).
    pub user_name: String,
    pub content: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MapElementCommand {
    Create(NewMapElement),
    Update {
        workspace_id: String,
        name: String,
        content: Value,
    },
    /// Deletes the element; with a group, only if it is in that group.
    Delete {
        workspace_id: String,
        group_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MapElementEvent {
    MapElementCreated(NewMapElement),
    MapElementUpdated { name: String, content: Value },
    MapElementDeleted { group_id: String },
}
crate::domain_event!(MapElementEvent, "1.0", { MapElementCreated, MapElementUpdated, MapElementDeleted });

#[derive(Debug, thiserror::Error)]
pub enum MapElementError {
    #[error("An element with this id already exists.")]
    Exists,
    #[error("The element does not exist.")]
    NotFound,
    #[error("The element group does not exist.")]
    NoSuchGroup,
    #[error("{0}")]
    Invalid(String),
}

impl crate::error::DjiCode for MapElementError {}

/// Checks a GeoJSON Feature against the element type (0 point, 1 line string, 2 polygon): the
/// geometry's `type` must be the type's, its coordinates positions `[lng, lat]` or
/// `[lng, lat, alt]` with a longitude within ±180° and a latitude within ±90°, a line at least two
/// of them, a polygon one ring of at least three.
pub fn check_content(element_type: i32, content: &Value) -> Result<(), MapElementError> {
    let invalid = |m: &str| Err(MapElementError::Invalid(m.to_string()));
    let Some(geometry) = content.get("geometry").filter(|g| g.is_object()) else {
        return invalid("content.geometry is required.");
    };
    let kind = geometry.get("type").and_then(Value::as_str).unwrap_or_default();
    let expected = match element_type {
        0 => "Point",
        1 => "LineString",
        2 => "Polygon",
        _ => return invalid("resource.type must be 0 (point), 1 (line) or 2 (polygon)."),
    };
    if kind != expected {
        return invalid(&format!("content.geometry.type must be {expected} for resource.type {element_type}."));
    }
    let coordinates = geometry.get("coordinates").unwrap_or(&Value::Null);
    let position = is_position;
    let positions = |v: &Value, min: usize| v.as_array().is_some_and(|a| a.len() >= min && a.iter().all(position));
    let ok = match element_type {
        0 => position(coordinates),
        1 => positions(coordinates, 2),
        _ => coordinates.as_array().is_some_and(|rings| rings.len() == 1 && positions(&rings[0], 3)),
    };
    if ok {
        Ok(())
    } else {
        invalid(&format!("content.geometry.coordinates are not a valid {expected}."))
    }
}

/// A GeoJSON position of the map: `[longitude, latitude]` or `[longitude, latitude, altitude]`,
/// numbers, with the longitude within ±180° and the latitude within ±90°.
pub fn is_position(p: &Value) -> bool {
    let Some(a) = p.as_array() else { return false };
    let n: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
    (n.len() == 2 || n.len() == 3) && n.len() == a.len() && n[0].abs() <= 180.0 && n[1].abs() <= 90.0
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MapElement {
    element: Option<NewMapElement>,
}

impl MapElement {
    /// The workspace of an element that exists.
    pub fn workspace_id(&self) -> Option<&str> {
        self.element.as_ref().map(|e| e.workspace_id.as_str())
    }

    fn in_workspace(&mut self, workspace_id: &str) -> Result<&mut NewMapElement, MapElementError> {
        self.element.as_mut().filter(|e| e.workspace_id == workspace_id).ok_or(MapElementError::NotFound)
    }
}

impl Aggregate for MapElement {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = MapElementCommand;
    type Event = MapElementEvent;
    type Error = MapElementError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            MapElementCommand::Create(new) => {
                if self.element.is_some() {
                    return Err(MapElementError::Exists);
                }
                if group(&new.group_id).is_none() {
                    return Err(MapElementError::NoSuchGroup);
                }
                check_content(new.element_type, &new.content)?;
                sink.write(MapElementEvent::MapElementCreated(new), self).await;
            }
            MapElementCommand::Update { workspace_id, name, content } => {
                let element = self.in_workspace(&workspace_id)?;
                check_content(element.element_type, &content)?;
                if element.name != name || element.content != content {
                    sink.write(MapElementEvent::MapElementUpdated { name, content }, self).await;
                }
            }
            MapElementCommand::Delete { workspace_id, group_id: only_in } => {
                let group_id = self.in_workspace(&workspace_id)?.group_id.clone();
                if only_in.is_some_and(|g| g != group_id) {
                    return Err(MapElementError::NotFound);
                }
                sink.write(MapElementEvent::MapElementDeleted { group_id }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            MapElementEvent::MapElementCreated(new) => self.element = Some(new),
            MapElementEvent::MapElementUpdated { name, content } => {
                if let Some(e) = self.element.as_mut() {
                    e.name = name;
                    e.content = content;
                }
            }
            MapElementEvent::MapElementDeleted { .. } => self.element = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    type Given = TestFramework<MapElement>;

    fn point() -> NewMapElement {
        NewMapElement {
            workspace_id: "w".into(),
            group_id: GROUPS[1].id.into(),
            name: "Pad".into(),
            element_type: 0,
            user_name: "adminPC".into(),
            content: json!({"type": "Feature", "properties": {"color": "#2D8CF0", "clampToGround": true},
                "geometry": {"type": "Point", "coordinates": [113.94, 22.57]}}),
        }
    }

    #[test]
    fn an_element_is_created_once_in_a_known_group() {
        Given::with(())
            .given_no_previous_events()
            .when(MapElementCommand::Create(point()))
            .then_expect_events(vec![MapElementEvent::MapElementCreated(point())]);
        Given::with(())
            .given(vec![MapElementEvent::MapElementCreated(point())])
            .when(MapElementCommand::Create(point()))
            .then_expect_error_message("An element with this id already exists.");
        let mut elsewhere = point();
        elsewhere.group_id = "nope".into();
        Given::with(())
            .given_no_previous_events()
            .when(MapElementCommand::Create(elsewhere))
            .then_expect_error_message("The element group does not exist.");
    }

    #[test]
    fn geometry_must_fit_the_element_type() {
        let c = |t: &str, coordinates: Value| json!({"geometry": {"type": t, "coordinates": coordinates}});
        assert!(check_content(0, &c("Point", json!([1.0, 2.0, 30.0]))).is_ok());
        assert!(check_content(1, &c("LineString", json!([[1, 2], [3, 4]]))).is_ok());
        assert!(check_content(2, &c("Polygon", json!([[[1, 2], [3, 4], [5, 6]]]))).is_ok());
        assert!(check_content(0, &c("LineString", json!([[1, 2], [3, 4]]))).is_err());
        assert!(check_content(0, &c("Point", json!([200, 2]))).is_err());
        assert!(check_content(0, &c("Point", json!(["1", 2]))).is_err());
        assert!(check_content(1, &c("LineString", json!([[1, 2]]))).is_err());
        assert!(check_content(2, &c("Polygon", json!([[1, 2], [3, 4], [5, 6]]))).is_err());
        assert!(check_content(3, &c("Point", json!([1, 2]))).is_err());
        assert!(check_content(0, &json!({})).is_err());
    }

    #[test]
    fn updates_and_deletes_stay_in_the_workspace() {
        let moved = json!({"type": "Feature", "properties": {"color": "#FF0000", "clampToGround": false},
            "geometry": {"type": "Point", "coordinates": [113.95, 22.58]}});
        Given::with(())
            .given(vec![MapElementEvent::MapElementCreated(point())])
            .when(MapElementCommand::Update { workspace_id: "w".into(), name: "Pad 2".into(), content: moved.clone() })
            .then_expect_events(vec![MapElementEvent::MapElementUpdated { name: "Pad 2".into(), content: moved }]);
        Given::with(())
            .given(vec![MapElementEvent::MapElementCreated(point())])
            .when(MapElementCommand::Update { workspace_id: "w".into(), name: "Pad".into(), content: point().content })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![MapElementEvent::MapElementCreated(point())])
            .when(MapElementCommand::Delete { workspace_id: "other".into(), group_id: None })
            .then_expect_error_message("The element does not exist.");
        Given::with(())
            .given(vec![MapElementEvent::MapElementCreated(point())])
            .when(MapElementCommand::Delete { workspace_id: "w".into(), group_id: Some(GROUPS[0].id.into()) })
            .then_expect_error_message("The element does not exist.");
        Given::with(())
            .given(vec![MapElementEvent::MapElementCreated(point())])
            .when(MapElementCommand::Delete { workspace_id: "w".into(), group_id: None })
            .then_expect_events(vec![MapElementEvent::MapElementDeleted { group_id: GROUPS[1].id.into() }]);
        Given::with(())
            .given(vec![
                MapElementEvent::MapElementCreated(point()),
                MapElementEvent::MapElementDeleted { group_id: GROUPS[1].id.into() },
            ])
            .when(MapElementCommand::Delete { workspace_id: "w".into(), group_id: None })
            .then_expect_error_message("The element does not exist.");
    }
}
