//! Checks that run every reader over untrusted bytes and assert what must always hold. The fuzz
//! targets under `fuzz/`, the corpus replay test and the property tests all call these, so a
//! finding of one is checked by all.
//!
//! Each function panics when a property fails — that is what a fuzzer looks for — and must
//! never panic otherwise.

use crate::ack::{AckBuilder, write_acks};
use crate::problem::Position;
use crate::read::{SetRead, TypedHandler, read_slice};
use crate::reader::{SliceReader, StreamReader};
use crate::sets;
use crate::writer::SegmentWriter;
use crate::{Delimiters, Segment};

#[derive(Default)]
struct Errors(usize);

impl TypedHandler for Errors {
    fn set(&mut self, set: &mut SetRead<'_>) {
        self.0 += set.problems.iter().filter(|p| p.is_error()).count();
    }
    fn group_end(
        &mut self,
        _: &crate::envelope::InterchangeHeader,
        report: &crate::envelope::GroupReport,
    ) {
        self.0 += report.problems.iter().filter(|p| p.is_error()).count();
    }
    fn interchange_end(&mut self, report: &crate::envelope::InterchangeReport) {
        self.0 += report.problems.iter().filter(|p| p.is_error()).count();
    }
}

/// Any input: the slice and stream readers (through a tiny buffer) see the same segments; typed
/// reading completes; the 997s for it, when they can be addressed, read back without errors.
pub fn input(bytes: &[u8]) {
    type Seen = Result<(u64, Vec<u8>, usize), String>;
    let slice: Vec<Seen> = SliceReader::new(bytes)
        .map(|s| {
            s.map(|s| (s.offset(), s.raw().to_vec(), s.elements().count()))
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut stream = StreamReader::with_capacity(7, bytes);
    let mut streamed: Vec<Seen> = Vec::new();
    while let Some(s) = stream.next() {
        streamed.push(
            s.map(|s| (s.offset(), s.raw().to_vec(), s.elements().count()))
                .map_err(|e| e.to_string()),
        );
    }
    assert_eq!(
        slice, streamed,
        "the stream reader disagrees with the slice reader"
    );

    let mut errors = Errors::default();
    read_slice(bytes, &mut errors);
    let mut builder = AckBuilder::default();
    read_slice(bytes, &mut builder);
    if builder.acks.is_empty() {
        return;
    }
    if let Ok((ack, _, _)) = write_acks(
        &builder.acks,
        1,
        1,
        "240101",
        "1200",
        Some(Delimiters::default()),
    ) {
        let mut back = Errors::default();
        read_slice(&ack, &mut back);
        assert_eq!(
            back.0,
            0,
            "the 997 written does not read back clean:\n{}",
            String::from_utf8_lossy(&ack)
        );
    }
}

/// The body of a set `id` (the bytes between ST and SE, `*` and `~` delimited): typed reading
/// completes; what it reads, written and read again, writes the same bytes. The body is also
/// run through [`input`] inside an envelope.
pub fn set(id: &str, body: &[u8]) {
    let delimiters = Delimiters::default();
    let segments = |bytes: &[u8]| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == delimiters.segment {
                if i > start {
                    out.push((start, i));
                }
                start = i + 1;
            }
        }
        if start < bytes.len() {
            out.push((start, bytes.len()));
        }
        out
    };
    let read = |bytes: &[u8]| -> Option<sets::Document> {
        let spans = segments(bytes);
        let segs: Vec<Segment<'_>> = spans
            .iter()
            .map(|&(s, e)| Segment::within(bytes, s, e, s as u64, delimiters))
            .collect();
        let mut problems = Vec::new();
        sets::read(id, &segs, &Position::default(), &mut problems)
    };
    let write = |doc: &sets::Document| -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut w = SegmentWriter::new(&mut out, delimiters, false);
        doc.write(&mut w).ok().map(|()| out)
    };
    if let Some(first) = read(body).as_ref().and_then(write)
        && let Some(second) = read(&first).as_ref().and_then(write)
    {
        assert_eq!(
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&second),
            "write → read → write changed the bytes"
        );
    }

    let mut wrapped = b"ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*U*00401*000000001*0*P*>~GS*XX*S*R*20240101*1200*1*X*004010~ST*".to_vec();
    wrapped.extend_from_slice(id.as_bytes());
    wrapped.extend_from_slice(b"*0001~");
    wrapped.extend_from_slice(body);
    wrapped.extend_from_slice(b"~SE*0*0001~GE*1*1~IEA*1*000000001~");
    input(&wrapped);
}
