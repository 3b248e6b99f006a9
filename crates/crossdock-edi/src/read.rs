//! Typed reading of whole inputs: every set checked (envelope and content), typed when crossdock
//! models it, and handed over with its problems — in bounded memory for any `Read`.

use std::io::Read;

use crate::envelope::{
    GroupHeader, GroupReport, Handler, InterchangeHeader, InterchangeReport, SetHeader, SetReport,
    Stats, walk_read, walk_slice,
};
use crate::problem::{Position, Problem};
use crate::sets::{self, Document};
use crate::{Delimiters, Segment};

/// One set as read: where it is, what it is, and everything wrong with it.
#[derive(Debug)]
pub struct SetRead<'a> {
    pub interchange: &'a InterchangeHeader,
    pub group: &'a GroupHeader,
    pub report: &'a SetReport,
    /// `None` for a set id crossdock does not type, or one too broken to read.
    pub document: Option<Document>,
    /// Envelope problems of the set, then problems with its content.
    pub problems: &'a [Problem],
}

impl SetRead<'_> {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// What a typed read reports besides the sets themselves.
pub trait TypedHandler {
    fn set(&mut self, set: SetRead<'_>);
    fn group_end(&mut self, _interchange: &InterchangeHeader, _report: &GroupReport) {}
    fn interchange_end(&mut self, _report: &InterchangeReport) {}
}

struct Typed<'h, H> {
    handler: &'h mut H,
    interchange: InterchangeHeader,
    interchange_index: u32,
    group: GroupHeader,
    group_index: u32,
    delimiters: Delimiters,
    /// The open set's body, copied so it outlives the reader's buffer.
    body: Vec<u8>,
    spans: Vec<(usize, usize, u64)>,
    typed: bool,
    problems: Vec<Problem>,
}

impl<H: TypedHandler> Handler for Typed<'_, H> {
    fn interchange_start(&mut self, header: &InterchangeHeader) {
        self.interchange = header.clone();
        self.interchange_index += 1;
        self.group_index = 0;
        if let Some(delimiters) = header.delimiters {
            self.delimiters = delimiters;
        }
    }

    fn group_start(&mut self, header: &GroupHeader) {
        self.group = header.clone();
        self.group_index += 1;
    }

    fn set_start(&mut self, header: &SetHeader) {
        self.body.clear();
        self.spans.clear();
        self.typed = sets::is_typed(&header.id);
    }

    #[inline]
    fn segment(&mut self, segment: &Segment<'_>, _index: u32) {
        if self.typed {
            let start = self.body.len();
            self.body.extend_from_slice(segment.raw());
            self.spans.push((start, self.body.len(), segment.offset()));
        }
    }

    fn set_end(&mut self, report: &SetReport) {
        self.problems.clear();
        self.problems.extend(report.problems.iter().cloned());
        let document = if self.typed {
            let segments: Vec<Segment<'_>> = self
                .spans
                .iter()
                .map(|&(start, end, offset)| {
                    Segment::within(&self.body, start, end, offset, self.delimiters)
                })
                .collect();
            let position = Position {
                segment_id: None,
                ..report.position(self.interchange_index, Some(self.group_index))
            };
            sets::read(&report.header.id, &segments, &position, &mut self.problems)
        } else {
            None
        };
        self.handler.set(SetRead {
            interchange: &self.interchange,
            group: &self.group,
            report,
            document,
            problems: &self.problems,
        });
    }

    fn group_end(&mut self, report: &GroupReport) {
        self.handler.group_end(&self.interchange, report);
    }

    fn interchange_end(&mut self, report: &InterchangeReport) {
        self.handler.interchange_end(report);
    }
}

impl<'h, H> Typed<'h, H> {
    fn new(handler: &'h mut H) -> Self {
        Typed {
            handler,
            interchange: InterchangeHeader::default(),
            interchange_index: 0,
            group: GroupHeader::default(),
            group_index: 0,
            delimiters: Delimiters::default(),
            body: Vec::new(),
            spans: Vec::new(),
            typed: false,
            problems: Vec::new(),
        }
    }
}

/// Reads every set of an input held in memory.
pub fn read_slice(input: &[u8], handler: &mut impl TypedHandler) -> Stats {
    walk_slice(input, &mut Typed::new(handler))
}

/// Reads every set of any `Read`, in memory bounded by the largest set.
pub fn read_stream<R: Read>(
    input: R,
    handler: &mut impl TypedHandler,
) -> Result<Stats, std::io::Error> {
    walk_read(input, &mut Typed::new(handler))
}
