//! The envelope: interchanges (ISA/IEA), functional groups (GS/GE) and transaction sets (ST/SE),
//! checked as segments stream past — counts, control numbers and trailers — and handed to a
//! [`Handler`] as they open and close.

use std::io::Read;

use serde::Serialize;

use crate::problem::{Level, Position, Problem, group_code, set_code};
use crate::reader::{ReadError, SliceReader, StreamReader};
use crate::segment::{id_code, quote, text};
use crate::{Delimiters, Segment};

/// The interchange header (ISA), its padding trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InterchangeHeader {
    pub sender_qualifier: String,
    pub sender: String,
    pub receiver_qualifier: String,
    pub receiver: String,
    pub date: String,
    pub time: String,
    /// ISA12, e.g. `00401` or `00501`.
    pub version: String,
    /// ISA13.
    pub control: String,
    /// ISA14: `1` when the sender asks for an interchange acknowledgment.
    pub ack_requested: String,
    /// ISA15: `P` production, `T` test.
    pub usage: String,
    #[serde(skip)]
    pub delimiters: Option<Delimiters>,
    pub offset: u64,
}

/// The functional group header (GS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupHeader {
    /// GS01, e.g. `PO` for 850s, `IB` for 846s, `FA` for 997s.
    pub functional_id: String,
    pub sender: String,
    pub receiver: String,
    pub date: String,
    pub time: String,
    /// GS06.
    pub control: String,
    pub agency: String,
    /// GS08, e.g. `004010` or `005010VICS`.
    pub version: String,
    pub offset: u64,
}

/// The transaction set header (ST).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SetHeader {
    /// ST01, e.g. `850`.
    pub id: String,
    /// ST02.
    pub control: String,
    pub offset: u64,
}

/// A transaction set as it closed: its envelope problems and its size.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub header: SetHeader,
    /// Its place in the group, from 1.
    pub index: u32,
    /// Segments counted, ST and SE included.
    pub segments: u32,
    pub problems: Vec<Problem>,
}

impl SetReport {
    pub fn position(&self, interchange: u32, group: Option<u32>) -> Position {
        Position {
            interchange,
            group,
            set: Some(self.index),
            set_control: Some(self.header.control.clone()),
            offset: self.header.offset,
            ..Position::default()
        }
    }
}

/// A functional group as it closed.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub header: GroupHeader,
    pub index: u32,
    /// GE01, when a GE was seen.
    pub declared_sets: Option<u32>,
    pub received_sets: u32,
    /// Problems with the group envelope itself (AK9 codes).
    pub problems: Vec<Problem>,
}

/// An interchange as it closed.
#[derive(Debug, Clone, Serialize)]
pub struct InterchangeReport {
    pub header: InterchangeHeader,
    pub index: u32,
    pub groups: u32,
    pub problems: Vec<Problem>,
}

/// Receives the structure of the input as it streams. Every method has a default that ignores
/// it, so a handler implements only what it needs.
pub trait Handler {
    fn interchange_start(&mut self, _header: &InterchangeHeader) {}
    fn group_start(&mut self, _header: &GroupHeader) {}
    fn set_start(&mut self, _header: &SetHeader) {}
    /// A segment of the open set's body (between ST and SE); `index` counts from ST = 1.
    fn segment(&mut self, _segment: &Segment<'_>, _index: u32) {}
    fn set_end(&mut self, _report: &SetReport) {}
    fn group_end(&mut self, _report: &GroupReport) {}
    fn interchange_end(&mut self, _report: &InterchangeReport) {}
}

struct OpenInterchange {
    header: InterchangeHeader,
    index: u32,
    groups: u32,
    problems: Vec<Problem>,
    /// False for the stand-in opened to carry a problem found outside any interchange: it has
    /// no ISA, so no missing IEA is reported for it.
    opened_by_isa: bool,
}

struct OpenGroup {
    header: GroupHeader,
    index: u32,
    sets: u32,
    problems: Vec<Problem>,
}

struct OpenSet {
    header: SetHeader,
    index: u32,
    segments: u32,
    problems: Vec<Problem>,
}

/// The envelope checker. Feed it every segment in order, then [`Walker::finish`].
#[derive(Default)]
pub struct Walker {
    interchanges: u32,
    interchange: Option<OpenInterchange>,
    group: Option<OpenGroup>,
    set: Option<OpenSet>,
    /// Totals over the whole input.
    pub stats: Stats,
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker")
            .field("stats", &self.stats)
            .finish()
    }
}

/// What was read, in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub interchanges: u64,
    pub groups: u64,
    pub sets: u64,
    pub segments: u64,
    pub problems: u64,
    pub errors: u64,
}

const ISA: u32 = id_code(b"ISA");
const IEA: u32 = id_code(b"IEA");
const GS: u32 = id_code(b"GS");
const GE: u32 = id_code(b"GE");
const ST: u32 = id_code(b"ST");
const SE: u32 = id_code(b"SE");

fn element_text(segment: &Segment<'_>, n: usize) -> String {
    segment.element(n).map(text).unwrap_or_default()
}

fn trimmed(segment: &Segment<'_>, n: usize) -> String {
    segment
        .element(n)
        .map(|e| text(e).trim().to_string())
        .unwrap_or_default()
}

fn number(bytes: Option<&[u8]>) -> Option<u32> {
    let bytes = bytes?;
    if bytes.is_empty() || bytes.len() > 9 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

impl Walker {
    pub fn new() -> Self {
        Walker::default()
    }

    fn position(&self, segment: Option<&Segment<'_>>, offset: u64) -> Position {
        Position {
            interchange: self
                .interchange
                .as_ref()
                .map_or(self.interchanges, |i| i.index),
            group: self.group.as_ref().map(|g| g.index),
            set: self.set.as_ref().map(|s| s.index),
            set_control: self.set.as_ref().map(|s| s.header.control.clone()),
            segment: self.set.as_ref().map(|s| s.segments),
            segment_id: segment.map(|s| text(s.id())),
            element: None,
            offset,
        }
    }

    /// Records a problem at the innermost open level (set, group, then interchange).
    fn problem(
        &mut self,
        level: Level,
        position: Position,
        message: &str,
        expected: String,
        found: String,
    ) {
        self.stats.problems += 1;
        let problem = Problem {
            level,
            position,
            message: message.to_string(),
            expected,
            found,
        };
        if problem.is_error() {
            self.stats.errors += 1;
        }
        let nested = matches!(
            level,
            Level::Set(_) | Level::Segment(_) | Level::Element(_) | Level::Warning
        );
        if let (true, Some(set)) = (nested, &mut self.set) {
            set.problems.push(problem);
            return;
        }
        if let (true, Some(group)) = (level != Level::Interchange, &mut self.group) {
            group.problems.push(problem);
            return;
        }
        // With no open interchange, one is opened to carry the problem, so it is reported.
        let interchanges = &mut self.interchanges;
        let open = self.interchange.get_or_insert_with(|| {
            *interchanges += 1;
            OpenInterchange {
                header: InterchangeHeader::default(),
                index: *interchanges,
                groups: 0,
                problems: Vec::new(),
                opened_by_isa: false,
            }
        });
        open.problems.push(problem);
    }

    /// Takes one segment. Body segments of a set go to `handler.segment`; envelope segments open
    /// and close levels.
    #[inline]
    pub fn segment(&mut self, segment: &Segment<'_>, handler: &mut impl Handler) {
        self.stats.segments += 1;
        // The hot path: a body segment of an open set.
        let code = segment.code();
        let envelope = matches!(code, ISA | IEA | GS | GE | ST | SE);
        if !envelope {
            match &mut self.set {
                Some(set) => {
                    set.segments += 1;
                    handler.segment(segment, set.segments);
                }
                None => {
                    let position = self.position(Some(segment), segment.offset());
                    let where_ = if self.group.is_some() {
                        "between transaction sets"
                    } else if self.interchange.is_some() {
                        "outside a functional group"
                    } else {
                        "outside an interchange"
                    };
                    let (level, expected) = if self.group.is_some() {
                        (Level::Group(group_code::NOT_SUPPORTED), "ST or GE")
                    } else {
                        (Level::Interchange, "GS or IEA")
                    };
                    // A TA1 between groups is an interchange acknowledgment, not an error.
                    if segment.is("TA1") && self.group.is_none() {
                        return;
                    }
                    self.problem(
                        level,
                        position,
                        &format!("segment {where_}"),
                        expected.into(),
                        quote(segment.id()),
                    );
                }
            }
            return;
        }
        match code {
            ISA => self.open_interchange(segment, handler),
            IEA => self.close_interchange(Some(segment), handler),
            GS => self.open_group(segment, handler),
            GE => self.close_group(Some(segment), handler),
            ST => self.open_set(segment, handler),
            _ => self.close_set(Some(segment), handler),
        }
    }

    fn open_interchange(&mut self, segment: &Segment<'_>, handler: &mut impl Handler) {
        if self.interchange.is_some() {
            self.close_interchange(None, handler);
        }
        self.interchanges += 1;
        self.stats.interchanges += 1;
        let header = InterchangeHeader {
            sender_qualifier: trimmed(segment, 5),
            sender: trimmed(segment, 6),
            receiver_qualifier: trimmed(segment, 7),
            receiver: trimmed(segment, 8),
            date: element_text(segment, 9),
            time: element_text(segment, 10),
            version: element_text(segment, 12),
            control: element_text(segment, 13),
            ack_requested: element_text(segment, 14),
            usage: element_text(segment, 15),
            delimiters: Some(segment.delimiters()),
            offset: segment.offset(),
        };
        self.interchange = Some(OpenInterchange {
            header,
            index: self.interchanges,
            groups: 0,
            problems: Vec::new(),
            opened_by_isa: true,
        });
        let position = self.position(Some(segment), segment.offset());
        if segment.raw().len() + 1 != crate::delimiters::ISA_LEN {
            self.problem(
                Level::Warning,
                position.clone(),
                "the ISA is not fixed width",
                format!("{} bytes with its terminator", crate::delimiters::ISA_LEN),
                format!("{} bytes", segment.raw().len() + 1),
            );
        }
        let control = segment.element(13).unwrap_or(b"");
        if control.len() != 9 || !control.iter().all(u8::is_ascii_digit) {
            self.problem(
                Level::Interchange,
                Position {
                    element: Some(13),
                    ..position
                },
                "the interchange control number ISA13 must be 9 digits",
                "9 digits".into(),
                quote(control),
            );
        }
        if let Some(open) = &self.interchange {
            handler.interchange_start(&open.header);
        }
    }

    fn close_interchange(&mut self, segment: Option<&Segment<'_>>, handler: &mut impl Handler) {
        if self.group.is_some() {
            self.close_group(None, handler);
        }
        let Some(open) = &self.interchange else {
            if let Some(segment) = segment {
                let position = self.position(Some(segment), segment.offset());
                self.problem(
                    Level::Interchange,
                    position,
                    "IEA without an ISA",
                    "ISA".into(),
                    "IEA".into(),
                );
            }
            return;
        };
        let offset = segment.map_or(open.header.offset, Segment::offset);
        let position = Position {
            segment_id: Some("IEA".into()),
            ..self.position(segment, offset)
        };
        let (groups, control) = (open.groups, open.header.control.clone());
        match segment {
            None if !open.opened_by_isa => {}
            None => self.problem(
                Level::Interchange,
                position,
                "the interchange has no trailer",
                format!("IEA with {groups} groups and control number {control}"),
                "the next interchange or the end of the input".into(),
            ),
            Some(segment) => {
                let declared = segment.element(1);
                if number(declared) != Some(groups) {
                    self.problem(
                        Level::Interchange,
                        Position {
                            element: Some(1),
                            ..position.clone()
                        },
                        "IEA01 does not match the number of groups",
                        groups.to_string(),
                        quote(declared.unwrap_or(b"")),
                    );
                }
                let trailer = segment.element(2).unwrap_or(b"");
                if trailer != control.as_bytes() {
                    self.problem(
                        Level::Interchange,
                        Position {
                            element: Some(2),
                            ..position
                        },
                        "IEA02 does not match the interchange control number ISA13",
                        quote(control.as_bytes()),
                        quote(trailer),
                    );
                }
            }
        }
        if let Some(open) = self.interchange.take() {
            handler.interchange_end(&InterchangeReport {
                header: open.header,
                index: open.index,
                groups: open.groups,
                problems: open.problems,
            });
        }
    }

    fn open_group(&mut self, segment: &Segment<'_>, handler: &mut impl Handler) {
        if self.group.is_some() {
            self.close_group(None, handler);
        }
        if self.interchange.is_none() {
            let position = self.position(Some(segment), segment.offset());
            self.problem(
                Level::Interchange,
                position,
                "GS outside an interchange",
                "ISA".into(),
                "GS".into(),
            );
        }
        let index = match &mut self.interchange {
            Some(open) => {
                open.groups += 1;
                open.groups
            }
            None => 1,
        };
        self.stats.groups += 1;
        let header = GroupHeader {
            functional_id: element_text(segment, 1),
            sender: element_text(segment, 2),
            receiver: element_text(segment, 3),
            date: element_text(segment, 4),
            time: element_text(segment, 5),
            control: element_text(segment, 6),
            agency: element_text(segment, 7),
            version: element_text(segment, 8),
            offset: segment.offset(),
        };
        handler.group_start(&header);
        self.group = Some(OpenGroup {
            header,
            index,
            sets: 0,
            problems: Vec::new(),
        });
    }

    fn close_group(&mut self, segment: Option<&Segment<'_>>, handler: &mut impl Handler) {
        if self.set.is_some() {
            self.close_set(None, handler);
        }
        let Some(open) = &self.group else {
            if let Some(segment) = segment {
                let position = self.position(Some(segment), segment.offset());
                self.problem(
                    Level::Interchange,
                    position,
                    "GE without a GS",
                    "GS".into(),
                    "GE".into(),
                );
            }
            return;
        };
        let offset = segment.map_or(open.header.offset, Segment::offset);
        let position = Position {
            segment_id: Some("GE".into()),
            ..self.position(segment, offset)
        };
        let (sets, control) = (open.sets, open.header.control.clone());
        let mut declared_sets = None;
        match segment {
            None => self.problem(
                Level::Group(group_code::TRAILER_MISSING),
                position,
                "the functional group has no trailer",
                format!("GE with {sets} sets and control number {control}"),
                "the next group, interchange trailer or the end of the input".into(),
            ),
            Some(segment) => {
                let declared = segment.element(1);
                declared_sets = number(declared);
                if declared_sets != Some(sets) {
                    self.problem(
                        Level::Group(group_code::SET_COUNT),
                        Position {
                            element: Some(1),
                            ..position.clone()
                        },
                        "GE01 does not match the number of transaction sets",
                        sets.to_string(),
                        quote(declared.unwrap_or(b"")),
                    );
                }
                let trailer = segment.element(2).unwrap_or(b"");
                if trailer != control.as_bytes() {
                    self.problem(
                        Level::Group(group_code::CONTROL_MISMATCH),
                        Position {
                            element: Some(2),
                            ..position
                        },
                        "GE02 does not match the group control number GS06",
                        quote(control.as_bytes()),
                        quote(trailer),
                    );
                }
            }
        }
        if let Some(open) = self.group.take() {
            handler.group_end(&GroupReport {
                header: open.header,
                index: open.index,
                declared_sets,
                received_sets: open.sets,
                problems: open.problems,
            });
        }
    }

    fn open_set(&mut self, segment: &Segment<'_>, handler: &mut impl Handler) {
        if self.set.is_some() {
            self.close_set(None, handler);
        }
        if self.group.is_none() {
            let position = self.position(Some(segment), segment.offset());
            self.problem(
                Level::Interchange,
                position,
                "ST outside a functional group",
                "GS".into(),
                "ST".into(),
            );
        }
        let index = match &mut self.group {
            Some(open) => {
                open.sets += 1;
                open.sets
            }
            None => 1,
        };
        self.stats.sets += 1;
        let header = SetHeader {
            id: element_text(segment, 1),
            control: element_text(segment, 2),
            offset: segment.offset(),
        };
        handler.set_start(&header);
        self.set = Some(OpenSet {
            header,
            index,
            segments: 1,
            problems: Vec::new(),
        });
    }

    fn close_set(&mut self, segment: Option<&Segment<'_>>, handler: &mut impl Handler) {
        let Some(open) = &mut self.set else {
            if let Some(segment) = segment {
                let position = self.position(Some(segment), segment.offset());
                self.problem(
                    Level::Group(group_code::NOT_SUPPORTED),
                    position,
                    "SE without an ST",
                    "ST".into(),
                    "SE".into(),
                );
            }
            return;
        };
        if segment.is_some() {
            open.segments += 1;
        }
        let offset = segment.map_or(open.header.offset, Segment::offset);
        let (count, control) = (open.segments, open.header.control.clone());
        let position = Position {
            segment_id: Some("SE".into()),
            ..self.position(segment, offset)
        };
        match segment {
            None => self.problem(
                Level::Set(set_code::TRAILER_MISSING),
                position,
                "the transaction set has no trailer",
                format!(
                    "SE with {} segments and control number {control}",
                    count + 1
                ),
                "the next set, a group or interchange trailer, or the end of the input".into(),
            ),
            Some(segment) => {
                let declared = segment.element(1);
                if number(declared) != Some(count) {
                    self.problem(
                        Level::Set(set_code::SEGMENT_COUNT),
                        Position {
                            element: Some(1),
                            ..position.clone()
                        },
                        "SE01 does not match the number of segments in the set (ST and SE included)",
                        count.to_string(),
                        quote(declared.unwrap_or(b"")),
                    );
                }
                let trailer = segment.element(2).unwrap_or(b"");
                if trailer != control.as_bytes() {
                    self.problem(
                        Level::Set(set_code::CONTROL_MISMATCH),
                        Position {
                            element: Some(2),
                            ..position
                        },
                        "SE02 does not match the set control number ST02",
                        quote(control.as_bytes()),
                        quote(trailer),
                    );
                }
            }
        }
        if let Some(open) = self.set.take() {
            handler.set_end(&SetReport {
                header: open.header,
                index: open.index,
                segments: open.segments,
                problems: open.problems,
            });
        }
    }

    /// Closes whatever is still open at the end of the input, reporting the missing trailers,
    /// and records a read error (if reading stopped on one) at the level where it happened.
    pub fn finish(&mut self, error: Option<&ReadError>, handler: &mut impl Handler) {
        if error.is_none() && self.interchanges == 0 {
            self.problem(
                Level::Interchange,
                Position::default(),
                "the input holds no interchange",
                "`ISA`".into(),
                "the end of the input".into(),
            );
        }
        if let Some(error) = error {
            let offset = error.offset().unwrap_or(0);
            let position = self.position(None, offset);
            let level = if self.set.is_some() {
                Level::Set(set_code::TRAILER_MISSING)
            } else if self.group.is_some() {
                Level::Group(group_code::TRAILER_MISSING)
            } else {
                Level::Interchange
            };
            let (message, expected, found) = error.parts();
            self.problem(level, position, &message, expected, found);
        }
        if self.interchange.is_some() || self.group.is_some() || self.set.is_some() {
            self.close_interchange(None, handler);
        }
    }
}

/// Reads all of `input` (held in memory), checking its envelopes and calling `handler`.
/// Returns the totals.
pub fn walk_slice(input: &[u8], handler: &mut impl Handler) -> Stats {
    let mut walker = Walker::new();
    let mut error = None;
    for segment in SliceReader::new(input) {
        match segment {
            Ok(segment) => walker.segment(&segment, handler),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    walker.finish(error.as_ref(), handler);
    walker.stats
}

/// Reads all of `input` from any `Read` in bounded memory, checking its envelopes and calling
/// `handler`. An IO error is returned; format errors are problems in the reports.
pub fn walk_read<R: Read>(input: R, handler: &mut impl Handler) -> Result<Stats, std::io::Error> {
    let mut walker = Walker::new();
    let mut reader = StreamReader::new(input);
    let mut error = None;
    while let Some(segment) = reader.next() {
        match segment {
            Ok(segment) => walker.segment(&segment, handler),
            Err(ReadError::Io(e)) => return Err(e),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    walker.finish(error.as_ref(), handler);
    Ok(walker.stats)
}
