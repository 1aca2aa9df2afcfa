//! The zip layer of a KMZ: finds the WPML entries and expands them within [`Limits`].
//!
//! A KMZ arrives from the network, so nothing it declares is trusted: limits are checked on the
//! declared sizes before anything is expanded (cheap refusal of honest huge files and of classic
//! zip bombs), and again on the bytes actually produced while expanding (declared sizes can lie).
//! Only the two WPML documents are ever expanded; resources (DSM tiles, …) are listed, not read.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::WpmlError;

/// Limits checked before anything is expanded (zip bombs, huge files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest KMZ accepted, compressed, as uploaded.
    pub max_kmz_bytes: u64,
    /// Most entries (files and folders) in the archive.
    pub max_entries: usize,
    /// Largest uncompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Largest uncompressed size of all entries together.
    pub max_total_bytes: u64,
    /// Largest uncompressed/compressed ratio of an entry (see [`RATIO_FLOOR_BYTES`]).
    pub max_ratio: u64,
}

impl Default for Limits {
    /// Generous for real routes: a 10,000-waypoint mapping route is a few MiB of XML, a DSM tile a
    /// few tens of MiB; WPML XML compresses about 5 to 20 times.
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Limits {
            max_kmz_bytes: 64 * MIB,
            max_entries: 1000,
            max_entry_bytes: 64 * MIB,
            max_total_bytes: 256 * MIB,
            max_ratio: 200,
        }
    }
}

/// Entries smaller than this are not held to `max_ratio`: a tiny file of repeated text can
/// legitimately compress beyond any ratio, and expanding it costs nothing.
pub const RATIO_FLOOR_BYTES: u64 = 1024 * 1024;

/// The entries of a KMZ that matter, expanded.
#[derive(Debug, Default)]
pub(crate) struct RawKmz {
    pub template: Option<Vec<u8>>,
    pub waylines: Option<Vec<u8>>,
    pub resources: Vec<String>,
}

/// Which WPML document an entry holds, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Template,
    Waylines,
    Resource,
    Other,
}

/// Names are compared with `/` separators and without case: some Windows tools write `\` and
/// upper-case folder names, and DJI's software reads those files anyway.
fn role(name: &str) -> (Role, bool) {
    let normalised = name.replace('\\', "/").to_ascii_lowercase();
    let canonical = normalised == "wpmz/template.kml" || normalised == "wpmz/waylines.wpml";
    let file = normalised.rsplit('/').next().unwrap_or("");
    let role = if normalised.ends_with('/') {
        Role::Other
    } else if normalised.starts_with("wpmz/res/") || normalised.contains("/wpmz/res/") {
        Role::Resource
    } else if file == "template.kml" {
        Role::Template
    } else if file == "waylines.wpml" {
        Role::Waylines
    } else {
        Role::Other
    };
    (role, canonical)
}

/// Opens the archive and expands its WPML documents within `limits`.
pub(crate) fn open(bytes: &[u8], limits: Limits) -> Result<RawKmz, WpmlError> {
    if bytes.len() as u64 > limits.max_kmz_bytes {
        return Err(WpmlError::TooLarge(format!(
            "the KMZ is {} bytes, over the limit of {} bytes",
            bytes.len(),
            limits.max_kmz_bytes
        )));
    }
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|_| WpmlError::NotZip)?;
    if archive.len() > limits.max_entries {
        return Err(WpmlError::TooLarge(format!(
            "the KMZ has {} entries, over the limit of {}",
            archive.len(),
            limits.max_entries
        )));
    }

    // Declared sizes first, from the central directory: nothing is expanded yet.
    let mut declared_total: u64 = 0;
    // (index, role, canonical name?) of the entries to expand.
    let mut wanted: Vec<(usize, Role, bool)> = Vec::new();
    let mut resources = Vec::new();
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).map_err(|_| WpmlError::NotZip)?;
        let name = entry.name().map_err(|_| WpmlError::NotZip)?.into_owned();
        let size = entry.size();
        let compressed = entry.compressed_size();
        if size > limits.max_entry_bytes {
            return Err(WpmlError::TooLarge(format!(
                "entry {name} declares {size} bytes, over the limit of {} bytes per entry",
                limits.max_entry_bytes
            )));
        }
        declared_total = declared_total.saturating_add(size);
        if declared_total > limits.max_total_bytes {
            return Err(WpmlError::TooLarge(format!(
                "the entries declare more than {} bytes in total",
                limits.max_total_bytes
            )));
        }
        if over_ratio(size, compressed, limits.max_ratio) {
            return Err(WpmlError::ZipBomb(format!(
                "entry {name} declares {size} bytes from {compressed} compressed, over the ratio of {}",
                limits.max_ratio
            )));
        }
        match role(&name) {
            (Role::Resource, _) => resources.push(name),
            (which @ (Role::Template | Role::Waylines), canonical) => wanted.push((index, which, canonical)),
            (Role::Other, _) => {}
        }
    }

    // Prefer the canonical `wpmz/…` paths; fall back to the same file names elsewhere (some
    // third-party planners zip the folder one level deeper).
    let pick = |which: Role| {
        let candidates: Vec<_> = wanted.iter().filter(|(_, r, _)| *r == which).collect();
        candidates.iter().find(|(_, _, canonical)| *canonical).or_else(|| candidates.first()).map(|(i, _, _)| *i)
    };
    let template_index = pick(Role::Template);
    let waylines_index = pick(Role::Waylines);
    if template_index.is_none() && waylines_index.is_none() {
        return Err(WpmlError::MissingWpml);
    }

    let mut budget = Budget { expanded: 0, limits };
    let template = template_index.map(|i| expand(&mut archive, i, &mut budget)).transpose()?;
    let waylines = waylines_index.map(|i| expand(&mut archive, i, &mut budget)).transpose()?;
    Ok(RawKmz { template, waylines, resources })
}

fn over_ratio(size: u64, compressed: u64, max_ratio: u64) -> bool {
    size > RATIO_FLOOR_BYTES && size / compressed.max(1) > max_ratio
}

/// What has been expanded so far, against the limits.
struct Budget {
    expanded: u64,
    limits: Limits,
}

/// Expands one entry, never producing more than the limits allow, whatever its header says.
fn expand(archive: &mut ZipArchive<Cursor<&[u8]>>, index: usize, budget: &mut Budget) -> Result<Vec<u8>, WpmlError> {
    let limits = budget.limits;
    let remaining_total = limits.max_total_bytes.saturating_sub(budget.expanded);
    let cap = limits.max_entry_bytes.min(remaining_total);
    let entry = archive.by_index(index).map_err(|_| WpmlError::NotZip)?;
    let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
    let declared = entry.size();
    let compressed = entry.compressed_size();
    let mut out = Vec::with_capacity(declared.min(cap).min(16 * 1024 * 1024) as usize);
    // One byte past the cap tells "exactly at the limit" from "over it".
    entry.take(cap.saturating_add(1)).read_to_end(&mut out).map_err(|_| WpmlError::NotZip)?;
    let produced = out.len() as u64;
    if produced > cap {
        return Err(WpmlError::ZipBomb(format!(
            "entry {name} expands past {cap} bytes although it declares {declared}"
        )));
    }
    if over_ratio(produced, compressed, limits.max_ratio) {
        return Err(WpmlError::ZipBomb(format!(
            "entry {name} expands to {produced} bytes from {compressed} compressed, over the ratio of {}",
            limits.max_ratio
        )));
    }
    budget.expanded += produced;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_lenient_names_are_recognised() {
        assert_eq!(role("wpmz/template.kml"), (Role::Template, true));
        assert_eq!(role("WPMZ\\waylines.wpml"), (Role::Waylines, true));
        assert_eq!(role("route/wpmz/template.kml"), (Role::Template, false));
        assert_eq!(role("wpmz/res/dsm/tile.tif").0, Role::Resource);
        assert_eq!(role("wpmz/res/").0, Role::Other);
        assert_eq!(role("readme.txt").0, Role::Other);
    }

    #[test]
    fn small_entries_are_not_held_to_the_ratio() {
        assert!(!over_ratio(100_000, 10, 200));
        assert!(over_ratio(10 * 1024 * 1024, 10 * 1024, 200));
        assert!(!over_ratio(10 * 1024 * 1024, 1024 * 1024, 200));
    }
}
