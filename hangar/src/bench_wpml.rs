//! `hangar bench --only wpml`: how fast a 1,000-waypoint KMZ is read (unzipped, parsed, checked
//! against the zip-bomb limits), beside merely inflating the same archive's entries, in the same run.

use std::io::Read as _;
use std::time::{Duration, Instant};

pub struct WpmlReport {
    pub bytes: usize,
    pub inflate_per_sec: f64,
    pub parse_per_sec: f64,
}

impl std::fmt::Display for WpmlReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "baseline  inflate a 1,000-waypoint KMZ ({} bytes)   {:>8.0} files/s",
            self.bytes, self.inflate_per_sec
        )?;
        write!(
            f,
            "hangar    read_kmz of the same file                {:>8.0} files/s = {:.1}% of inflating ({:.0} waypoints/s)",
            self.parse_per_sec,
            100.0 * self.parse_per_sec / self.inflate_per_sec,
            self.parse_per_sec * 1000.0
        )
    }
}

/// Runs `op` repeatedly for about `for_how_long`; returns runs per second.
fn rate(for_how_long: Duration, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < for_how_long {
        op()?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

pub fn run(seconds: u64) -> anyhow::Result<WpmlReport> {
    let kmz = wpml::parse_rate_fixture(1000);
    let window = Duration::from_secs(seconds.max(1));
    eprintln!("bench: inflating and parsing a 1,000-waypoint KMZ ({seconds} s each)…");
    let inflate_per_sec = rate(window, || {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&kmz))?;
        let mut sink = Vec::new();
        for i in 0..zip.len() {
            sink.clear();
            zip.by_index(i)?.read_to_end(&mut sink)?;
        }
        Ok(())
    })?;
    let parse_per_sec = rate(window, || {
        let k = wpml::read_kmz(&kmz)?;
        anyhow::ensure!(k.waypoints().len() == 1000, "the fixture has 1,000 waypoints");
        Ok(())
    })?;
    Ok(WpmlReport { bytes: kmz.len(), inflate_per_sec, parse_per_sec })
}
