//! Correlation ids: the user-visible thread that ties a request to every event and action it caused.

use std::fmt;

/// The longest correlation id accepted from a caller.
pub const CORRELATION_ID_LEN_MAX: usize = 128;

/// An opaque correlation id: 1 to 128 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// Accepts a caller-supplied id, or says why not.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if text.is_empty() {
            return Err("must not be empty");
        }
        if text.len() > CORRELATION_ID_LEN_MAX {
            return Err("must be at most 128 characters");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters only");
        }
        Ok(CorrelationId(text.to_owned()))
    }

    /// Takes the trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
    ///
    /// Returns `None` for anything that is not a valid traceparent, including the all-zero trace id
    /// that the specification declares invalid.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        let is_hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !is_hex(version, 2) || version == "ff" || !is_hex(trace_id, 32) {
            return None;
        }
        if !is_hex(parent_id, 16) || !is_hex(flags, 2) {
            return None;
        }
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(CorrelationId(trace_id.to_owned()))
    }

    /// Wraps an id the runtime generated itself (a UUID, say).
    pub fn generated(id: String) -> Self {
        debug_assert!(CorrelationId::parse(&id).is_ok());
        CorrelationId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn traceparent_yields_its_trace_id() {
        let id = CorrelationId::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(id.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(CorrelationId::from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn caller_ids_are_bounded_and_visible() {
        assert!(CorrelationId::parse("order-123").is_ok());
        assert!(CorrelationId::parse("").is_err());
        assert!(CorrelationId::parse("has space").is_err());
        assert!(CorrelationId::parse(&"x".repeat(129)).is_err());
    }

    proptest! {
        #[test]
        fn header_parsing_never_panics(s in ".*") {
            let _ = CorrelationId::from_traceparent(&s);
            let _ = CorrelationId::parse(&s);
        }
    }
}
