//! DJI's WayPoint Markup Language (WPML): the KMZ wayline files a dock or DJI Pilot 2 flies.
//!
//! A KMZ is a zip holding `wpmz/template.kml` (the route as planned), `wpmz/waylines.wpml` (the route
//! as the aircraft executes it) and optional resources under `wpmz/res/` (DSM terrain tiles, …).
//! This crate reads such files leniently — exports of DJI Pilot 2, FlightHub 2, DJI Fly and
//! third-party planners, any WPML namespace version, several waylines per file, mapping templates
//! without waypoints, elements it does not know (kept, never an error) — and refuses zip bombs and
//! huge files before expanding them. It also writes a valid KMZ for a simple waypoint mission.
//!
//! Modules:
//! - [`archive`]: the zip layer; every size, count and ratio limit is enforced here, before and
//!   while expanding.
//! - `xml`: a namespace-blind element tree built with quick-xml (prefixes and WPML versions vary
//!   between exporters, local names do not).
//! - [`model`]: the typed documents ([`Document`], [`Folder`], [`Placemark`], …) and what the
//!   wayline endpoints read from them (model keys, template types, waypoints, JSON).
//! - [`write`](mod@write): [`Mission`] → KMZ, for wayline generation.

pub mod archive;
pub mod model;
pub mod write;
mod xml;

pub use archive::Limits;
pub use model::{
    Action, ActionGroup, Coordinate, Document, DroneInfo, Folder, Kmz, MissionConfig, PayloadInfo, Placemark, Waypoint,
};
pub use write::{parse_rate_fixture, write_kmz, Mission, MissionPoint};

/// Why a KMZ was refused. The messages are the ones the HTTP API shows to users.
#[derive(Debug, thiserror::Error)]
pub enum WpmlError {
    /// The bytes are not a readable zip archive (or an entry in it cannot be read).
    #[error("The file is not a KMZ (zip) archive.")]
    NotZip,
    /// The archive holds neither `wpmz/template.kml` nor `wpmz/waylines.wpml`.
    #[error("The KMZ holds no wpmz/template.kml or wpmz/waylines.wpml.")]
    MissingWpml,
    /// A size or count limit of [`Limits`] was exceeded; the text says which.
    #[error("The file is too large: {0}")]
    TooLarge(String),
    /// An entry expands far more than its compressed size, or more than it declared.
    #[error("The file looks like a zip bomb: {0}")]
    ZipBomb(String),
    /// `template.kml` or `waylines.wpml` is not well-formed UTF-8 XML.
    #[error("The file encoding format is incorrect: {0}")]
    Xml(String),
    /// [`write_kmz`] was given a mission it cannot turn into a valid route; the text says why.
    #[error("The mission is invalid: {0}")]
    InvalidMission(String),
}

/// Reads a KMZ under [`Limits::default()`].
pub fn read_kmz(bytes: &[u8]) -> Result<Kmz, WpmlError> {
    read_kmz_with(bytes, Limits::default())
}

/// Reads a KMZ, refusing it as soon as one of `limits` is exceeded.
pub fn read_kmz_with(bytes: &[u8], limits: Limits) -> Result<Kmz, WpmlError> {
    let raw = archive::open(bytes, limits)?;
    let template = raw.template.as_deref().map(|b| model::parse_document(b, "wpmz/template.kml")).transpose()?;
    let waylines = raw.waylines.as_deref().map(|b| model::parse_document(b, "wpmz/waylines.wpml")).transpose()?;
    Ok(Kmz { template, waylines, resources: raw.resources })
}
