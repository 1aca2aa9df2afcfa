//! Process metrics in Prometheus text format: counters, gauges and latency summaries. Lock-free on
//! the hot path; a summary keeps every sample in log-linear buckets (about 1% resolution from 1 µs
//! to 1,000 s), so quantiles are exact to that resolution rather than guessed from coarse buckets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

#[derive(Default)]
struct Registry {
    counters: RwLock<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: RwLock<BTreeMap<String, Arc<AtomicI64>>>,
    summaries: RwLock<BTreeMap<String, Arc<Summary>>>,
    float_gauges: RwLock<BTreeMap<String, Arc<FloatGauge>>>,
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "'"))).collect();
    format!("{name}{{{}}}", l.join(","))
}

fn get_or_insert<T: Default>(map: &RwLock<BTreeMap<String, Arc<T>>>, k: String) -> Arc<T> {
    if let Some(v) = map.read().unwrap_or_else(|e| e.into_inner()).get(&k) {
        return v.clone();
    }
    map.write().unwrap_or_else(|e| e.into_inner()).entry(k).or_default().clone()
}

pub fn counter(name: &str, labels: &[(&str, &str)]) -> Arc<AtomicU64> {
    get_or_insert(&REGISTRY.counters, key(name, labels))
}

pub fn gauge(name: &str, labels: &[(&str, &str)]) -> Arc<AtomicI64> {
    get_or_insert(&REGISTRY.gauges, key(name, labels))
}

pub fn summary(name: &str, labels: &[(&str, &str)]) -> Arc<Summary> {
    get_or_insert(&REGISTRY.summaries, key(name, labels))
}

/// A gauge whose value is not a whole number (an age in seconds).
pub fn float_gauge(name: &str, labels: &[(&str, &str)]) -> Arc<FloatGauge> {
    get_or_insert(&REGISTRY.float_gauges, key(name, labels))
}

#[derive(Default)]
pub struct FloatGauge(AtomicU64);

impl FloatGauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Counters of one metric told apart by one label whose values are known only at run time but
/// come from a small set (MQTT topic kinds): looked up by value without allocating.
pub struct CounterFamily {
    name: &'static str,
    label: &'static str,
    members: RwLock<std::collections::HashMap<Box<str>, Arc<AtomicU64>>>,
}

impl CounterFamily {
    pub fn new(name: &'static str, label: &'static str) -> Self {
        Self { name, label, members: RwLock::default() }
    }

    pub fn get(&self, value: &str) -> Arc<AtomicU64> {
        if let Some(c) = self.members.read().unwrap_or_else(|e| e.into_inner()).get(value) {
            return c.clone();
        }
        let c = counter(self.name, &[(self.label, value)]);
        self.members.write().unwrap_or_else(|e| e.into_inner()).entry(value.into()).or_insert(c).clone()
    }
}

const DECADES: usize = 9; // 1 µs .. 1,000 s
const PER_DECADE: usize = 90; // mantissa 10..99

/// A latency distribution.
pub struct Summary {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            buckets: (0..10 + DECADES * PER_DECADE).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Summary {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn index(us: u64) -> usize {
        if us < 10 {
            return us as usize; // exact below 10 µs (shares the first decade's slots 0..9)
        }
        let mut decade = 0usize;
        let mut v = us;
        while v >= 100 {
            v /= 10;
            decade += 1;
        }
        (10 + decade * PER_DECADE + (v as usize - 10)).min(9 + DECADES * PER_DECADE)
    }

    fn value(index: usize) -> u64 {
        if index < 10 {
            return index as u64;
        }
        let i = index - 10;
        let (decade, m) = (i / PER_DECADE, i % PER_DECADE + 10);
        (m as u64) * 10u64.pow(decade as u32)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The q-quantile (0..=1), or None without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Duration::from_micros(Self::value(i)));
            }
        }
        None
    }

    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
    }
}

/// Everything registered, in Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    for (k, v) in REGISTRY.counters.read().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(out, "{k} {}", v.load(Ordering::Relaxed));
    }
    for (k, v) in REGISTRY.gauges.read().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(out, "{k} {}", v.load(Ordering::Relaxed));
    }
    for (k, v) in REGISTRY.float_gauges.read().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(out, "{k} {}", v.get());
    }
    for (k, s) in REGISTRY.summaries.read().unwrap_or_else(|e| e.into_inner()).iter() {
        let (name, labels) = match k.split_once('{') {
            Some((n, l)) => (n, format!(",{}", l.trim_end_matches('}'))),
            None => (k.as_str(), String::new()),
        };
        for q in [0.5, 0.9, 0.99, 0.999] {
            if let Some(d) = s.quantile(q) {
                let _ = writeln!(out, "{name}{{quantile=\"{q}\"{labels}}} {}", d.as_secs_f64());
            }
        }
        let plain = if labels.is_empty() { String::new() } else { format!("{{{}}}", &labels[1..]) };
        let _ = writeln!(out, "{name}_count{plain} {}", s.count());
        let _ = writeln!(out, "{name}_sum{plain} {}", s.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_two_percent() {
        let s = Summary::default();
        for ms in 1..=1000u64 {
            s.observe(Duration::from_millis(ms));
        }
        let p50 = s.quantile(0.5).unwrap().as_secs_f64();
        let p99 = s.quantile(0.99).unwrap().as_secs_f64();
        assert!((p50 - 0.5).abs() / 0.5 < 0.02, "{p50}");
        assert!((p99 - 0.99).abs() / 0.99 < 0.02, "{p99}");
        assert_eq!(s.count(), 1000);
        assert!(Summary::default().quantile(0.5).is_none());
    }

    #[test]
    fn tiny_and_huge_values_do_not_panic() {
        let s = Summary::default();
        s.observe(Duration::ZERO);
        s.observe(Duration::from_secs(1_000_000));
        assert_eq!(s.quantile(0.0).unwrap(), Duration::ZERO);
    }

    #[test]
    fn rendered_with_labels() {
        counter("hangar_test_total", &[("p", "x")]).fetch_add(2, Ordering::Relaxed);
        summary("hangar_test_seconds", &[("p", "x")]).observe(Duration::from_millis(5));
        let r = render();
        assert!(r.contains("hangar_test_total{p=\"x\"} 2"), "{r}");
        assert!(r.contains("hangar_test_seconds{quantile=\"0.5\",p=\"x\"} 0.005"), "{r}");
        assert!(r.contains("hangar_test_seconds_count{p=\"x\"} 1"), "{r}");
        float_gauge("hangar_test_age_seconds", &[]).set(1.25);
        CounterFamily::new("hangar_test_kind_total", "kind").get("status").fetch_add(3, Ordering::Relaxed);
        let r = render();
        assert!(r.contains("hangar_test_age_seconds 1.25"), "{r}");
        assert!(r.contains("hangar_test_kind_total{kind=\"status\"} 3"), "{r}");
    }
}
