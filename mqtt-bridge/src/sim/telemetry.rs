//! What a dock says without being asked: topology, OSD of the dock and its aircraft, HMS.

use std::f64::consts::TAU;

use rand::Rng as _;
use serde_json::{json, Value};

use super::flighttask::Tasks;
use super::{now_ms, tid, SimDock};

/// One dock and its aircraft, moving through a flight cycle.
pub(super) struct DockState {
    pub(super) ids: SimDock,
    pub(super) lat: f64,
    pub(super) lon: f64,
    phase: f64,
    /// `update_topo` is due (set on every connection).
    pub(super) announce: bool,
    /// In remote-debug mode (`debug_mode_open` until `debug_mode_close`): OSD `mode_code` 2.
    pub(super) debug_mode: bool,
    /// Cover opened by `cover_open` while on the ground; closed again by `cover_close` or when a
    /// flight ends (the dock closes it after landing).
    pub(super) cover_open: bool,
    /// Flies the automatic round every ten minutes (`FleetConfig::cycle_flights`).
    pub(super) cycle_flights: bool,
    /// Flight tasks: prepared ones and the one in progress, which the OSD shows while the
    /// aircraft is out, whatever the automatic round says.
    pub(super) tasks: Tasks,
    /// DRC link state as the dock's OSD says it: 0 not connected, 2 connected.
    pub(super) drc_state: i64,
    /// Took off on its own (`takeoff_to_point`) and hovers until `return_home`.
    pub(super) airborne: bool,
    // what the last `advance` computed
    pub(super) flying: bool,
    progress: f64,
    battery: f64,
    temperature: f64,
    humidity: f64,
    wind: f64,
}

const CYCLE_SECS: f64 = 600.0;
const FLIGHT_SECS: f64 = 120.0;
/// Aircraft model key (domain-type-subtype) of the M3D.
pub(super) const M3D: &str = "0-91-0";

impl DockState {
    pub(super) fn new(ids: SimDock, index: usize) -> Self {
        // Docks on a grid around Shenzhen, about 1 km apart.
        let (row, col) = ((index / 50) as f64, (index % 50) as f64);
        let mut rng = rand::thread_rng();
        Self {
            ids,
            lat: 22.54 + row * 0.009,
            lon: 113.93 + col * 0.0097,
            phase: rng.gen_range(0.0..CYCLE_SECS),
            announce: false,
            debug_mode: false,
            cover_open: false,
            cycle_flights: true,
            tasks: Tasks::default(),
            drc_state: 0,
            airborne: false,
            flying: false,
            progress: 0.0,
            battery: 100.0,
            temperature: rng.gen_range(18.0..30.0),
            humidity: rng.gen_range(40.0..80.0),
            wind: rng.gen_range(0.0..6.0),
        }
    }

    pub(super) fn advance(&mut self, t: f64) {
        let in_cycle = (t + self.phase) % CYCLE_SECS;
        let round = self.cycle_flights && in_cycle < FLIGHT_SECS;
        let task = self.tasks.airborne();
        let was_flying = self.flying;
        self.flying = round || task.is_some() || self.airborne;
        if was_flying && !self.flying {
            self.cover_open = false;
        }
        self.progress = match task {
            Some(done) => done,
            None if round => in_cycle / FLIGHT_SECS,
            // hovering at cruise height
            None if self.airborne => 0.5,
            None => 0.0,
        };
        self.battery = if self.flying {
            100.0 - 60.0 * self.progress
        } else if self.cycle_flights {
            // Charging back up after the round.
            (40.0 + (in_cycle - FLIGHT_SECS) / 4.0).clamp(40.0, 100.0)
        } else {
            100.0
        };
        let mut rng = rand::thread_rng();
        self.temperature = (self.temperature + rng.gen_range(-0.05..0.05)).clamp(-20.0, 50.0);
        self.humidity = (self.humidity + rng.gen_range(-0.2..0.2)).clamp(5.0, 100.0);
        self.wind = (self.wind + rng.gen_range(-0.1..0.1)).clamp(0.0, 15.0);
    }

    /// The aircraft's battery, percent.
    pub(super) fn battery_percent(&self) -> i64 {
        self.battery.round() as i64
    }

    /// The dock's `live_capacity` state: one stream of the aircraft's camera (`80-0-0`, the M3D's,
    /// switchable between its lenses) and one of the dock's own camera (`165-0-7`).
    pub(super) fn live_capacity(&self) -> Value {
        let camera = |index: &str, switchable: &[&str]| {
            json!({"camera_index": index, "available_video_number": 1, "coexist_video_number_max": 1,
                "video_list": [{"video_index": "normal-0", "video_type": "normal", "switchable_video_types": switchable}]})
        };
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "gateway": self.ids.dock_sn,
            "data": {"live_capacity": {
                "available_video_number": 2, "coexist_video_number_max": 1,
                "device_list": [
                    {"sn": self.ids.drone_sn, "available_video_number": 1, "coexist_video_number_max": 1,
                     "camera_list": [camera("80-0-0", &["normal", "wide", "zoom", "ir"])]},
                    {"sn": self.ids.dock_sn, "available_video_number": 1, "coexist_video_number_max": 1,
                     "camera_list": [camera("165-0-7", &["normal"])]},
                ],
            }},
        })
    }

    pub(super) fn update_topo(&self) -> Value {
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "method": "update_topo",
            "data": {
                "domain": 3, "type": 2, "sub_type": 0,
                "device_secret": "simulated", "nonce": "simulated", "thing_version": "1.2.0",
                "sub_devices": [{
                    "sn": self.ids.drone_sn, "domain": 0, "type": 91, "sub_type": 0, "index": "A",
                    "device_secret": "simulated", "nonce": "simulated", "thing_version": "1.2.0",
                }],
            },
        })
    }

    /// Dock `mode_code`: 2 remote debugging, 4 working (a flight), 0 idle.
    fn dock_mode_code(&self) -> i64 {
        if self.debug_mode {
            2
        } else if self.flying {
            4
        } else {
            0
        }
    }

    /// Dock `cover_state`: 1 open, 0 closed. Always open while the aircraft is out.
    fn cover_state(&self) -> i64 {
        i64::from(self.flying || self.cover_open)
    }

    /// Height above the dock, metres: climb to 80 m, hold, descend.
    fn altitude(&self) -> f64 {
        let p = self.progress;
        if !self.flying {
            0.0
        } else if p < 0.15 {
            80.0 * p / 0.15
        } else if p > 0.85 {
            80.0 * (1.0 - p) / 0.15
        } else {
            80.0
        }
    }

    pub(super) fn dock_osd(&self) -> Value {
        let mut osd = self.dock_osd_state();
        if let (Some(data), Value::Object(more)) = (osd["data"].as_object_mut(), self.dock_osd_hardware()) {
            data.extend(more);
        }
        osd
    }

    /// What the web client's dock panel shows besides the dock's state.
    fn dock_osd_hardware(&self) -> Value {
        json!({
            "acc_time": 3_600 * 1_200,
            "activation_time": 1_735_689_600,
            "first_power_on": 1_735_689_600_000i64,
            "electric_supply_voltage": 230,
            "working_voltage": 24_500,
            "working_current": 1_200,
            "supplement_light_state": 0,
            "battery_store_mode": 1,
            "drc_state": self.drc_state,
            "user_experience_improvement": 0,
            "air_conditioner": {"air_conditioner_state": 0, "switch_time": 0},
            "backup_battery": {"voltage": 26_000, "temperature": round1(self.temperature), "switch": 0},
            "alternate_land_point": {"latitude": self.lat + 0.0005, "longitude": self.lon, "safe_land_height": 30, "is_configured": 1},
            "wireless_link": {"4g_freq_band": 2.4, "4g_gnd_quality": 5, "4g_link_state": 1, "4g_quality": 5, "4g_uav_quality": 5,
                "dongle_number": 1, "link_workmode": 0, "sdr_freq_band": 5.8, "sdr_link_state": 1, "sdr_quality": 5},
            "drone_battery_maintenance_info": {"maintenance_state": 0, "maintenance_time_left": 0, "heat_state": 0,
                "batteries": [{"index": 0, "capacity_percent": self.battery.round() as i64, "voltage": 25_000, "temperature": round1(self.temperature)}]},
        })
    }

    fn dock_osd_state(&self) -> Value {
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "gateway": self.ids.dock_sn,
            "data": {
                "mode_code": self.dock_mode_code(),
                "latitude": self.lat, "longitude": self.lon, "height": 42.5,
                "environment_temperature": round1(self.temperature),
                "temperature": round1(self.temperature + 4.0),
                "humidity": round1(self.humidity),
                "wind_speed": round1(self.wind),
                "rainfall": 0,
                "drone_in_dock": !self.flying,
                "cover_state": self.cover_state(),
                "putter_state": 0,
                "flighttask_step_code": if self.flying { 1 } else { 5 },
                "drone_charge_state": {"state": if self.flying { 0 } else { 1 }, "capacity_percent": self.battery.round() as i64},
                "network_state": {"type": 2, "quality": 5, "rate": 1250.0},
                "position_state": {"is_calibration": 1, "is_fixed": 2, "quality": 5, "gps_number": 26, "rtk_number": 30},
                "storage": {"total": 82_045_336, "used": 1_204_224},
                "emergency_stop_state": false,
                "alarm_state": false,
                "sub_device": {"device_sn": self.ids.drone_sn, "device_model_key": M3D, "device_online_status": 1, "device_paired": 1},
            },
        })
    }

    pub(super) fn drone_osd(&self) -> Value {
        let angle = TAU * self.progress;
        let radius = if self.flying { 0.002 * (angle / 2.0).sin() } else { 0.0 };
        let height = self.altitude();
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "gateway": self.ids.dock_sn,
            "data": {
                "mode_code": if self.flying { 5 } else { 0 },
                "latitude": self.lat + radius * angle.cos(),
                "longitude": self.lon + radius * angle.sin(),
                "height": round1(42.5 + height),
                "elevation": round1(height),
                "attitude_head": round1((angle.to_degrees() + 90.0) % 360.0 - 180.0),
                "attitude_pitch": 0.0,
                "attitude_roll": 0.0,
                "horizontal_speed": if self.flying { 8.0 } else { 0.0 },
                "vertical_speed": 0.0,
                "wind_speed": round1(self.wind),
                "home_distance": round1(radius * 111_000.0),
                "gear": 1,
                "battery": {
                    "capacity_percent": self.battery.round() as i64,
                    "remain_flight_time": (self.battery * 24.0) as i64,
                    "return_home_power": 20,
                    "landing_power": 10,
                },
                "position_state": {"gps_number": 28, "is_fixed": 2, "quality": 5, "rtk_number": 32},
                "height_limit": 120,
                "rc_lost_action": 2,
                "rth_altitude": 100,
                "firmware_version": "10.01.0005",
            },
        })
    }

    pub(super) fn hms(&self) -> Value {
        let mut rng = rand::thread_rng();
        let (code, device_type, module) = if rng.gen_bool(0.5) {
            ("0x16100083", M3D, 3) // aircraft: compass interference
        } else {
            ("0x1B010001", "3-2-0", 3) // dock: environment
        };
        json!({
            "tid": tid(), "bid": tid(), "timestamp": now_ms(), "gateway": self.ids.dock_sn,
            "method": "hms", "need_reply": 1,
            "data": {"list": [{
                "level": rng.gen_range(0..=2), "module": module, "in_the_sky": i32::from(self.flying),
                "code": code, "device_type": device_type, "imminent": 0,
                "args": {"component_index": 0, "sensor_index": 0},
            }]},
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_has_the_fields_dashboards_read() {
        let mut d = DockState::new(SimDock::new("X", 1), 0);
        d.phase = 0.0;
        d.advance(30.0);
        assert!(d.flying);
        let dock = d.dock_osd();
        for key in [
            "mode_code",
            "latitude",
            "longitude",
            "height",
            "environment_temperature",
            "humidity",
            "wind_speed",
            "rainfall",
            "drone_in_dock",
            "cover_state",
        ] {
            assert!(dock["data"].get(key).is_some(), "dock osd lacks {key}");
        }
        assert_eq!(dock["data"]["cover_state"], 1);
        let drone = d.drone_osd();
        for key in ["latitude", "longitude", "height", "elevation", "attitude_head", "horizontal_speed", "mode_code"] {
            assert!(drone["data"].get(key).is_some(), "drone osd lacks {key}");
        }
        assert!(drone["data"]["battery"]["capacity_percent"].as_i64().unwrap() < 100);
        assert_eq!(drone["gateway"], "XDOCK0001");
        let topo = d.update_topo();
        assert_eq!(topo["data"]["sub_devices"][0]["sn"], "XUAV0001");
        assert_eq!((topo["data"]["domain"].as_i64(), topo["data"]["type"].as_i64()), (Some(3), Some(2)));
        let hms = d.hms();
        assert_eq!((hms["method"].as_str(), hms["need_reply"].as_i64()), (Some("hms"), Some(1)));
        assert!(hms["data"]["list"][0]["args"].get("sensor_index").is_some());
        assert_ne!(d.dock_osd()["tid"], dock["tid"]);
    }

    #[test]
    fn debug_mode_and_cover_show_in_dock_osd() {
        let mut d = DockState::new(SimDock::new("X", 1), 0);
        d.phase = 0.0;
        d.advance(300.0);
        assert!(!d.flying);
        assert_eq!(
            (d.dock_osd()["data"]["mode_code"].as_i64(), d.dock_osd()["data"]["cover_state"].as_i64()),
            (Some(0), Some(0))
        );
        d.debug_mode = true;
        d.cover_open = true;
        assert_eq!(
            (d.dock_osd()["data"]["mode_code"].as_i64(), d.dock_osd()["data"]["cover_state"].as_i64()),
            (Some(2), Some(1))
        );
        // A flight that ends closes the cover behind the aircraft.
        d.advance(600.0 + 30.0);
        assert!(d.flying);
        d.advance(600.0 + 300.0);
        assert_eq!(d.dock_osd()["data"]["cover_state"], 0);
    }

    #[test]
    fn a_flight_task_shows_as_working_whatever_the_round_says() {
        use crate::sim::flighttask::FlightSettings;
        use crate::sim::{FlightOutcome, PreparedTask, ResourceGet};
        use std::time::{Duration, Instant};

        let mut d = DockState::new(SimDock::new("X", 1), 0);
        d.cycle_flights = false;
        d.phase = 0.0;
        d.advance(30.0);
        assert!(!d.flying, "no automatic round");
        assert_eq!((d.dock_osd()["data"]["mode_code"].as_i64(), d.battery_percent()), (Some(0), 100));
        let now = Instant::now();
        let settings =
            FlightSettings { steps: 4, interval: Duration::ZERO, media: 0, resource_get: ResourceGet::WhenNoUrl };
        let g =
            d.tasks.prepare(PreparedTask { flight_id: "j1".into(), url: "http://x".into(), ..Default::default() }, now);
        d.tasks.file_checked("j1", g.unwrap(), &Ok(()));
        d.tasks.execute("j1", now, settings, FlightOutcome::Ok);
        d.tasks.poll(now, 0, 100);
        d.advance(31.0);
        assert!(d.flying);
        assert_eq!(d.dock_osd()["data"]["mode_code"], 4);
        assert_eq!(
            (d.drone_osd()["data"]["mode_code"].as_i64(), d.dock_osd()["data"]["drone_in_dock"].as_bool()),
            (Some(5), Some(false))
        );
        while d.tasks.busy() {
            d.tasks.poll(now, 0, 100);
        }
        d.advance(32.0);
        assert_eq!(d.dock_osd()["data"]["mode_code"], 0, "back in the dock");
    }
}
