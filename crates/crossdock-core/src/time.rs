//! Points in time as whole microseconds since the Unix epoch, the one form crossdock stores.

use std::fmt;

/// A point in time with microsecond precision, UTC.
///
/// Stored as `i64` microseconds so that it sorts the same in SQLite and PostgreSQL and in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    pub const fn unix_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Parses an RFC 3339 timestamp such as `2026-11-26T14:05:00.123Z` or `…+01:00`.
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let ts: jiff::Timestamp = text
            .parse()
            .map_err(|e| format!("not an RFC 3339 timestamp ({e})"))?;
        Ok(Timestamp(ts.as_microsecond()))
    }

    /// The calendar day (`YYYY-MM-DD`) this time falls on at a fixed offset from UTC in minutes
    /// (a business day: `-300` for a business that closes its books on New York winter time).
    pub fn day(self, offset_minutes: i32) -> String {
        let shifted = self
            .0
            .saturating_add(i64::from(offset_minutes).saturating_mul(60_000_000));
        match jiff::Timestamp::from_microsecond(shifted) {
            Ok(ts) => ts.strftime("%Y-%m-%d").to_string(),
            Err(_) => "0000-00-00".to_owned(),
        }
    }

    /// Adds a number of milliseconds, saturating at the ends of the range.
    pub const fn plus_millis(self, millis: i64) -> Self {
        Timestamp(self.0.saturating_add(millis.saturating_mul(1000)))
    }
}

impl fmt::Display for Timestamp {
    /// Formats as RFC 3339 in UTC with the precision the value needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_microsecond(self.0) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "@{}us", self.0),
        }
    }
}

impl serde::Serialize for Timestamp {
    /// As RFC 3339 text, the way the API shows times.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// From RFC 3339 text, as it is serialized.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_microseconds() {
        let ts = Timestamp::parse_rfc3339("2026-11-26T14:05:00.123456Z").unwrap();
        assert_eq!(ts.to_string(), "2026-11-26T14:05:00.123456Z");
        let offset = Timestamp::parse_rfc3339("2026-11-26T15:05:00+01:00").unwrap();
        assert_eq!(offset.to_string(), "2026-11-26T14:05:00Z");
    }

    #[test]
    fn days_follow_the_offset() {
        let ts = Timestamp::parse_rfc3339("2026-11-27T03:30:00Z").unwrap();
        assert_eq!(ts.day(0), "2026-11-27");
        assert_eq!(ts.day(-300), "2026-11-26");
        assert_eq!(ts.day(600), "2026-11-27");
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let err = Timestamp::parse_rfc3339("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
