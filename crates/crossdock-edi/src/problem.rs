//! What is wrong with an interchange, where, and which acknowledgment code says so.

use serde::Serialize;

/// Where a problem is: which interchange, group and set (each counted from 1 in the input),
/// which segment of the set (ST is 1) and which element (counted from 1), and the byte offset of
/// the segment in the input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Position {
    pub interchange: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<u32>,
    /// The set's ST02, when inside a set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<u32>,
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.interchange == 0 {
            return write!(f, "byte {}", self.offset);
        }
        write!(f, "interchange {}", self.interchange)?;
        if let Some(group) = self.group {
            write!(f, ", group {group}")?;
        }
        if let Some(set) = self.set {
            write!(f, ", set {set}")?;
            if let Some(control) = &self.set_control {
                write!(f, " (ST02 {control})")?;
            }
        }
        if let Some(segment) = self.segment {
            write!(f, ", segment {segment}")?;
        }
        if let Some(id) = &self.segment_id {
            write!(f, " {id}")?;
        }
        if let Some(element) = self.element {
            write!(f, ", element {element:02}")?;
        }
        write!(f, ", byte {}", self.offset)
    }
}

/// The level a problem belongs to, with the X12 code a 997 reports it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "level", content = "code", rename_all = "snake_case")]
pub enum Level {
    /// The interchange envelope (ISA/IEA); a 997 cannot report these (a TA1 would). Reported by
    /// `validate`.
    Interchange,
    /// The functional group (GS/GE): an AK9 syntax error code (AK905..).
    Group(u8),
    /// The transaction set's envelope (ST/SE): an AK5 syntax error code (AK502..).
    Set(u8),
    /// A segment in a set: an AK3 syntax error code (AK304).
    Segment(u8),
    /// An element in a segment: an AK4 syntax error code (AK403).
    Element(u8),
    /// Worth knowing but not an error: the input is read and acknowledged as if it were fine.
    Warning,
}

/// AK3 codes (segment syntax errors).
pub mod segment_code {
    pub const UNRECOGNIZED: u8 = 1;
    pub const UNEXPECTED: u8 = 2;
    pub const MANDATORY_MISSING: u8 = 3;
    pub const LOOP_TOO_MANY: u8 = 4;
    pub const TOO_MANY: u8 = 5;
    pub const NOT_IN_SET: u8 = 6;
    pub const OUT_OF_ORDER: u8 = 7;
    pub const HAS_ELEMENT_ERRORS: u8 = 8;
}

/// AK4 codes (element syntax errors).
pub mod element_code {
    pub const MANDATORY_MISSING: u8 = 1;
    pub const CONDITIONAL_MISSING: u8 = 2;
    pub const TOO_MANY: u8 = 3;
    pub const TOO_SHORT: u8 = 4;
    pub const TOO_LONG: u8 = 5;
    pub const INVALID_CHARACTER: u8 = 6;
    pub const INVALID_CODE: u8 = 7;
    pub const INVALID_DATE: u8 = 8;
    pub const INVALID_TIME: u8 = 9;
}

/// AK5 codes (set syntax errors).
pub mod set_code {
    pub const NOT_SUPPORTED: u8 = 1;
    pub const TRAILER_MISSING: u8 = 2;
    pub const CONTROL_MISMATCH: u8 = 3;
    pub const SEGMENT_COUNT: u8 = 4;
    pub const SEGMENTS_IN_ERROR: u8 = 5;
}

/// AK9 codes (group syntax errors).
pub mod group_code {
    pub const NOT_SUPPORTED: u8 = 1;
    pub const VERSION_NOT_SUPPORTED: u8 = 2;
    pub const TRAILER_MISSING: u8 = 3;
    pub const CONTROL_MISMATCH: u8 = 4;
    pub const SET_COUNT: u8 = 5;
}

/// One problem: where, what, what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(flatten)]
    pub level: Level,
    pub position: Position,
    pub message: String,
    pub expected: String,
    pub found: String,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.level != Level::Warning
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = if self.is_error() { "error" } else { "warning" };
        write!(
            f,
            "{severity}: {}: {} (expected {}, found {})",
            self.position, self.message, self.expected, self.found
        )
    }
}
