//! Durations as operators write them: `30`, `2.5`, `"30s"`, `"500ms"`, `"5m"`, `"1h"`.
//!
//! PgBouncer takes plain seconds; people coming from Kubernetes and systemd write `"30s"`. Both
//! mean the same thing here, so a unit is never a reason to refuse a config. Values stay `f64`
//! seconds in [`super::Config`] so the rest of the code keeps using [`super::secs`].

use serde::de::{self, Deserializer, Visitor};

/// What the error says is accepted.
pub const EXPECTED: &str =
    "a duration: seconds as a number (30, 2.5) or a string with a unit (\"30s\", \"500ms\", \"5m\", \"1h\")";

/// Parses `"30"`, `"30s"`, `"1.5 s"`, `"500ms"`, `"5m"`, `"1h"`, `"1d"` into seconds.
pub fn parse(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "msec" | "millisecond" | "milliseconds" => 0.001,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => return None,
    };
    let secs = value * scale;
    secs.is_finite().then_some(secs)
}

struct Seconds;

impl Visitor<'_> for Seconds {
    type Value = f64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// `deserialize_with` for a duration in seconds (validated as positive by `Config::validate`).
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(Seconds)
}

/// `deserialize_with` for an optional duration in seconds (None when the key is absent).
pub fn opt_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(Seconds).map(Some)
}

/// `deserialize_with` for an optional duration kept as whole seconds (rounded up, at least 1).
pub fn opt_whole_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = d.deserialize_any(Seconds)?;
    if !(v.is_finite() && v > 0.0) {
        return Err(de::Error::invalid_value(de::Unexpected::Float(v), &Seconds));
    }
    Ok(Some(v.ceil().min(u64::MAX as f64) as u64))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn units_people_write() {
        assert_eq!(parse("30"), Some(30.0));
        assert_eq!(parse("30s"), Some(30.0));
        assert_eq!(parse("1.5 s"), Some(1.5));
        assert_eq!(parse("500ms"), Some(0.5));
        assert_eq!(parse("5m"), Some(300.0));
        assert_eq!(parse("1h"), Some(3600.0));
        assert_eq!(parse("2d"), Some(172_800.0));
        assert_eq!(parse("30 seconds"), Some(30.0));
        for bad in ["", "s", "thirty", "30x", "-5s", "1e400", "5m30s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
