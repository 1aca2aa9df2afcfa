//! DJI's date-time formats: `yyyy-MM-dd HH:mm:ss` in the server's zone for `LocalDateTime` fields, and
//! epoch milliseconds for raw timestamps (reference §0.2).

use chrono::{DateTime, Local, Utc};

pub fn datetime_string(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}
