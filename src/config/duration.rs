//! Durations in the config are written the way people say them: `"500ms"`, `"30s"`, `"2m"`.
//!
//! A bare integer is refused on purpose: `timeout = 30` could mean seconds or milliseconds,
//! and guessing wrong on a payment path is worse than asking for a unit.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[allow(dead_code)] // serde's `with` wants both halves; we never serialize configs.
pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*value).to_string())
}

/// The same, for optional keys: `#[serde(default, with = "duration::option")]`.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }

    #[allow(dead_code)] // see above
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// Parses a duration with a unit, such as `"250ms"` or `"1m 30s"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write it with a unit, like \"500ms\" or \"30s\"")
    })
}

/// Reports each of a table's timeouts outside 1ms to its maximum, as `table.key`.
pub(super) fn check_timeouts(
    table: &str,
    timeouts: &[(&str, Duration, Duration)],
    issue: &mut impl FnMut(String, String),
) {
    for &(key, d, max) in timeouts {
        if d < Duration::from_millis(1) || d > max {
            issue(
                format!("{table}.{key}"),
                format!("must be from 1ms to {max:?}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_understood() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse(" 2m "), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn a_missing_unit_is_an_error() {
        let err = parse("30").unwrap_err();
        assert!(err.contains("with a unit"), "{err}");
    }
}
