//! A custom flight area of a workspace (FlightAreaController): a geofence the aircraft must stay
//! inside (`dfence`) or a no-fly zone (`nfz`), a circle or a polygon, which docks receive as a
//! GeoJSON file when the workspace's areas are synchronised to them. Its id is the uuid the web
//! client generated.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const AGGREGATE_TYPE: &str = "flight_area";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFlightArea {
    pub workspace_id: String,
    pub name: String,
    /// `dfence` or `nfz`.
    pub area_type: String,
    /// `{properties: {color, clampToGround}, geometry: Circle | Polygon}` as the client sent it.
    pub content: Value,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlightAreaCommand {
    Create(NewFlightArea),
    Update { workspace_id: String, name: Option<String>, content: Option<Value>, status: Option<bool> },
    Delete { workspace_id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlightAreaEvent {
    FlightAreaCreated(NewFlightArea),
    FlightAreaUpdated { name: Option<String>, content: Option<Value>, status: Option<bool> },
    FlightAreaDeleted,
}
crate::domain_event!(FlightAreaEvent, "1.0", { FlightAreaCreated, FlightAreaUpdated, FlightAreaDeleted });

#[derive(Debug, thiserror::Error)]
pub enum FlightAreaError {
    #[error("A flight area with this id already exists.")]
    Exists,
    #[error("The flight area does not exist.")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
}

impl crate::error::DjiCode for FlightAreaError {}

/// The geometry's type, `Circle` or `Polygon`, when the content is a valid area: a circle's centre
/// `[lng, lat]` with a radius of at least 10 m, a polygon's one ring of at least three positions,
/// longitudes within ±180° and latitudes within ±90°.
pub fn check_content(content: &Value) -> Result<&'static str, FlightAreaError> {
    let invalid = |m: &str| Err(FlightAreaError::Invalid(m.to_string()));
    let Some(geometry) = content.get("geometry").filter(|g| g.is_object()) else {
        return invalid("content.geometry is required.");
    };
    let position = super::map_element::is_position;
    let coordinates = geometry.get("coordinates").unwrap_or(&Value::Null);
    match geometry.get("type").and_then(Value::as_str) {
        Some("Circle") => {
            let radius = geometry.get("radius").and_then(Value::as_f64).unwrap_or(0.0);
            if !position(coordinates) {
                return invalid("A circle's coordinates are its centre, [longitude, latitude].");
            }
            if radius < 10.0 {
                return invalid("A circle's radius is at least 10 m.");
            }
            Ok("Circle")
        }
        Some("Polygon") => {
            let ring = coordinates.as_array().filter(|r| r.len() == 1).and_then(|r| r[0].as_array());
            if !ring.is_some_and(|r| r.len() >= 3 && r.iter().all(position)) {
                return invalid("A polygon's coordinates are one ring of at least three [longitude, latitude].");
            }
            Ok("Polygon")
        }
        _ => invalid("content.geometry.type must be Circle or Polygon."),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FlightArea {
    area: Option<NewFlightArea>,
    enabled: bool,
}

impl FlightArea {
    /// The workspace of an area that exists.
    pub fn workspace_id(&self) -> Option<&str> {
        self.area.as_ref().map(|a| a.workspace_id.as_str())
    }

    fn in_workspace(&self, workspace_id: &str) -> Result<&NewFlightArea, FlightAreaError> {
        self.area.as_ref().filter(|a| a.workspace_id == workspace_id).ok_or(FlightAreaError::NotFound)
    }
}

impl Aggregate for FlightArea {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = FlightAreaCommand;
    type Event = FlightAreaEvent;
    type Error = FlightAreaError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            FlightAreaCommand::Create(new) => {
                if self.area.is_some() {
                    return Err(FlightAreaError::Exists);
                }
                if new.area_type != "dfence" && new.area_type != "nfz" {
                    return Err(FlightAreaError::Invalid("type must be dfence or nfz.".into()));
                }
                if new.name.trim().is_empty() {
                    return Err(FlightAreaError::Invalid("name is required.".into()));
                }
                check_content(&new.content)?;
                sink.write(FlightAreaEvent::FlightAreaCreated(new), self).await;
            }
            FlightAreaCommand::Update { workspace_id, name, content, status } => {
                let area = self.in_workspace(&workspace_id)?;
                if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                    return Err(FlightAreaError::Invalid("name must not be empty.".into()));
                }
                if let Some(c) = &content {
                    if check_content(c)? != check_content(&area.content)? {
                        return Err(FlightAreaError::Invalid("The geometry type of an area cannot change.".into()));
                    }
                }
                let name = name.filter(|n| *n != area.name);
                let content = content.filter(|c| *c != area.content);
                let status = status.filter(|s| *s != self.enabled);
                if name.is_some() || content.is_some() || status.is_some() {
                    sink.write(FlightAreaEvent::FlightAreaUpdated { name, content, status }, self).await;
                }
            }
            FlightAreaCommand::Delete { workspace_id } => {
                self.in_workspace(&workspace_id)?;
                sink.write(FlightAreaEvent::FlightAreaDeleted, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            FlightAreaEvent::FlightAreaCreated(new) => {
                self.area = Some(new);
                self.enabled = true;
            }
            FlightAreaEvent::FlightAreaUpdated { name, content, status } => {
                if let Some(a) = self.area.as_mut() {
                    if let Some(n) = name {
                        a.name = n;
                    }
                    if let Some(c) = content {
                        a.content = c;
                    }
                }
                if let Some(s) = status {
                    self.enabled = s;
                }
            }
            FlightAreaEvent::FlightAreaDeleted => {
                self.area = None;
                self.enabled = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    type Given = TestFramework<FlightArea>;

    fn circle() -> NewFlightArea {
        NewFlightArea {
            workspace_id: "w".into(),
            name: "Airport".into(),
            area_type: "nfz".into(),
            content: json!({"properties": {"color": "#FF0000", "clampToGround": true},
                "geometry": {"type": "Circle", "coordinates": [113.94, 22.57], "radius": 500.0}}),
            username: "adminPC".into(),
        }
    }

    #[test]
    fn areas_are_circles_or_polygons_of_a_known_type() {
        Given::with(())
            .given_no_previous_events()
            .when(FlightAreaCommand::Create(circle()))
            .then_expect_events(vec![FlightAreaEvent::FlightAreaCreated(circle())]);
        let mut odd = circle();
        odd.area_type = "fence".into();
        Given::with(())
            .given_no_previous_events()
            .when(FlightAreaCommand::Create(odd))
            .then_expect_error_message("type must be dfence or nfz.");
        let geometry = |g: Value| json!({"geometry": g});
        assert_eq!(
            check_content(&geometry(json!({"type": "Polygon", "coordinates": [[[1, 2], [3, 4], [5, 6]]]}))).unwrap(),
            "Polygon"
        );
        assert!(check_content(&geometry(json!({"type": "Circle", "coordinates": [1, 2], "radius": 5}))).is_err());
        assert!(check_content(&geometry(json!({"type": "Circle", "coordinates": [[1, 2]], "radius": 50}))).is_err());
        assert!(check_content(&geometry(json!({"type": "Polygon", "coordinates": [[[1, 2], [3, 4]]]}))).is_err());
        assert!(check_content(&geometry(json!({"type": "Point", "coordinates": [1, 2]}))).is_err());
    }

    #[test]
    fn updates_change_what_differs_and_never_the_geometry_type() {
        let given = || Given::with(()).given(vec![FlightAreaEvent::FlightAreaCreated(circle())]);
        given()
            .when(FlightAreaCommand::Update {
                workspace_id: "w".into(),
                name: None,
                content: None,
                status: Some(false),
            })
            .then_expect_events(vec![FlightAreaEvent::FlightAreaUpdated {
                name: None,
                content: None,
                status: Some(false),
            }]);
        given()
            .when(FlightAreaCommand::Update {
                workspace_id: "w".into(),
                name: Some("Airport".into()),
                content: None,
                status: Some(true),
            })
            .then_expect_events(vec![]);
        let polygon = json!({"geometry": {"type": "Polygon", "coordinates": [[[1, 2], [3, 4], [5, 6]]]}});
        given()
            .when(FlightAreaCommand::Update {
                workspace_id: "w".into(),
                name: None,
                content: Some(polygon),
                status: None,
            })
            .then_expect_error_message("The geometry type of an area cannot change.");
        given()
            .when(FlightAreaCommand::Delete { workspace_id: "other".into() })
            .then_expect_error_message("The flight area does not exist.");
        given()
            .when(FlightAreaCommand::Delete { workspace_id: "w".into() })
            .then_expect_events(vec![FlightAreaEvent::FlightAreaDeleted]);
    }
}
