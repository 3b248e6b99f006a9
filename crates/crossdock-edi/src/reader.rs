//! Segments out of bytes: from a slice without copying, or from any `Read` in bounded memory.
//!
//! Both readers share one tokenizer. It finds each interchange's delimiters in its ISA, splits
//! segments on the terminator with `memchr`, tolerates line breaks and indentation between
//! segments and a UTF-8 byte-order mark at the start, and, after an IEA, reads the next ISA
//! afresh (so one file may hold interchanges with different delimiters).

use std::io::Read;

use crate::delimiters::{DelimiterError, detect};
use crate::segment::{WINDOW, quote, window_masks};
use crate::{Delimiters, Segment};

/// Why reading stopped. Reading does not go on after an error: what follows cannot be split
/// reliably.
#[derive(Debug)]
pub enum ReadError {
    /// The bytes where an interchange should start are not a usable ISA.
    Isa {
        offset: u64,
        error: DelimiterError,
    },
    /// The input ended inside a segment (no terminator after its last bytes).
    Unterminated {
        offset: u64,
        found: String,
    },
    /// One segment is longer than the stream reader's limit.
    TooLong {
        offset: u64,
        limit: usize,
    },
    Io(std::io::Error),
}

impl ReadError {
    pub fn offset(&self) -> Option<u64> {
        match self {
            ReadError::Isa { offset, .. }
            | ReadError::Unterminated { offset, .. }
            | ReadError::TooLong { offset, .. } => Some(*offset),
            ReadError::Io(_) => None,
        }
    }
}

impl ReadError {
    /// What went wrong, what was expected and what was found, for a [`crate::Problem`] (whose
    /// position carries the offset).
    pub fn parts(&self) -> (String, String, String) {
        match self {
            ReadError::Isa {
                error: DelimiterError::NotIsa { found },
                ..
            } => (
                "no interchange header where one must start".into(),
                "`ISA`".into(),
                quote(found),
            ),
            ReadError::Isa {
                error: DelimiterError::Truncated,
                ..
            } => (
                "the input ends inside the ISA segment".into(),
                "a complete ISA (106 bytes with its terminator)".into(),
                "the end of the input".into(),
            ),
            ReadError::Isa {
                error: DelimiterError::Malformed(why),
                ..
            } => (
                format!("the ISA segment is malformed: {why}"),
                "16 elements, then the component separator and the segment terminator".into(),
                why.clone(),
            ),
            ReadError::Unterminated { found, .. } => (
                "the input ends inside a segment".into(),
                "a segment terminator".into(),
                found.clone(),
            ),
            ReadError::TooLong { limit, .. } => (
                format!("a segment is longer than {limit} bytes"),
                format!("a segment terminator within {limit} bytes"),
                "none".into(),
            ),
            ReadError::Io(error) => (
                "reading the input failed".into(),
                "readable input".into(),
                error.to_string(),
            ),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Isa { offset, error } => write!(f, "byte {offset}: {error}"),
            ReadError::Unterminated { offset, found } => write!(
                f,
                "byte {offset}: the input ends inside a segment (no segment terminator after {found})"
            ),
            ReadError::TooLong { offset, limit } => {
                write!(f, "byte {offset}: a segment is longer than {limit} bytes")
            }
            ReadError::Io(error) => write!(f, "reading the input failed: {error}"),
        }
    }
}

impl std::error::Error for ReadError {}

const BOM: &[u8] = b"\xEF\xBB\xBF";

enum Scan {
    Segment {
        start: usize,
        end: usize,
        next: usize,
        /// The element separators among the segment's first 64 bytes, when already found.
        mask: Option<u64>,
    },
    NeedMore,
    End,
    Error(ReadError),
}

/// The splitting rules, shared by both readers. Positions are indexes into the caller's buffer;
/// `base` is the input offset of the buffer's first byte.
#[derive(Debug, Default)]
struct Tokenizer {
    delimiters: Option<Delimiters>,
    started: bool,
    done: bool,
}

impl Tokenizer {
    #[inline]
    fn scan(&mut self, buf: &[u8], mut pos: usize, eof: bool, base: u64) -> Scan {
        if self.done {
            return Scan::End;
        }
        if !self.started {
            if buf.len() - pos < BOM.len() && !eof && BOM.starts_with(&buf[pos..]) {
                return Scan::NeedMore;
            }
            if buf[pos..].starts_with(BOM) {
                pos += BOM.len();
            }
        }
        while pos < buf.len() && matches!(buf[pos], b'\r' | b'\n' | b' ' | b'\t') {
            pos += 1;
        }
        if pos == buf.len() {
            return if eof {
                self.done = true;
                Scan::End
            } else {
                Scan::NeedMore
            };
        }
        let Some(delimiters) = self.delimiters else {
            // An ISA is judged on its first 512 bytes, never on less while more may come, so
            // every reader reaches the same verdict whatever its buffer.
            if !eof && buf.len() - pos < crate::delimiters::ISA_SEARCH {
                return Scan::NeedMore;
            }
            return match detect(&buf[pos..]) {
                Ok(layout) => {
                    self.started = true;
                    self.delimiters = Some(layout.delimiters);
                    Scan::Segment {
                        start: pos,
                        end: pos + layout.len,
                        next: pos + layout.len + 1,
                        mask: None,
                    }
                }
                Err(DelimiterError::Truncated) if !eof => Scan::NeedMore,
                Err(error) => {
                    self.done = true;
                    Scan::Error(ReadError::Isa {
                        offset: base + pos as u64,
                        error,
                    })
                }
            };
        };
        self.started = true;
        // Most segments are shorter than 64 bytes: one pass over the next 64 finds the
        // terminator and the element separators together.
        let rest = &buf[pos..];
        let (found, mask) = match rest.first_chunk::<WINDOW>() {
            Some(window) => {
                let (terminators, separators) =
                    window_masks(window, delimiters.segment, delimiters.element);
                if terminators != 0 {
                    (
                        Some(terminators.trailing_zeros() as usize),
                        Some(separators),
                    )
                } else {
                    let beyond = memchr::memchr(delimiters.segment, &rest[WINDOW..]);
                    (beyond.map(|i| i + WINDOW), None)
                }
            }
            None => (memchr::memchr(delimiters.segment, rest), None),
        };
        match found {
            Some(len) => {
                let mut end = pos + len;
                if delimiters.segment == b'\n' && end > pos && buf[end - 1] == b'\r' {
                    end -= 1;
                }
                let raw = &buf[pos..end];
                if raw.len() >= 3 && &raw[..3] == b"IEA" && raw.get(3) == Some(&delimiters.element)
                {
                    self.delimiters = None;
                }
                Scan::Segment {
                    start: pos,
                    end,
                    next: pos + len + 1,
                    mask,
                }
            }
            // A last segment without its terminator is taken as complete when the terminator
            // is a line break: many files simply lack the final one.
            None if eof && matches!(delimiters.segment, b'\n' | b'\r') => {
                let mut end = buf.len();
                while end > pos && matches!(buf[end - 1], b'\r' | b'\n') {
                    end -= 1;
                }
                let raw = &buf[pos..end];
                if raw.len() >= 3 && &raw[..3] == b"IEA" {
                    self.delimiters = None;
                }
                Scan::Segment {
                    start: pos,
                    end,
                    next: buf.len(),
                    mask: None,
                }
            }
            None if eof => {
                self.done = true;
                Scan::Error(ReadError::Unterminated {
                    offset: base + pos as u64,
                    found: quote(&buf[pos..]),
                })
            }
            None => Scan::NeedMore,
        }
    }
}

/// Segments of an input held in memory, borrowed from it.
#[derive(Debug)]
pub struct SliceReader<'a> {
    buf: &'a [u8],
    pos: usize,
    tokenizer: Tokenizer,
}

impl<'a> SliceReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        SliceReader {
            buf,
            pos: 0,
            tokenizer: Tokenizer::default(),
        }
    }

    /// The delimiters of the interchange being read (`None` between interchanges).
    pub fn delimiters(&self) -> Option<Delimiters> {
        self.tokenizer.delimiters
    }
}

impl<'a> Iterator for SliceReader<'a> {
    type Item = Result<Segment<'a>, ReadError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let delimiters = self.tokenizer.delimiters;
        match self.tokenizer.scan(self.buf, self.pos, true, 0) {
            Scan::Segment {
                start,
                end,
                next,
                mask,
            } => {
                self.pos = next.min(self.buf.len());
                let delimiters = delimiters.or(self.tokenizer.delimiters)?;
                Some(Ok(match mask {
                    Some(mask) => {
                        Segment::within_masked(self.buf, start, end, start as u64, delimiters, mask)
                    }
                    None => Segment::within(self.buf, start, end, start as u64, delimiters),
                }))
            }
            Scan::NeedMore | Scan::End => None,
            Scan::Error(error) => Some(Err(error)),
        }
    }
}

/// The default buffer of a [`StreamReader`]: 256 KiB.
pub const STREAM_BUFFER: usize = 256 * 1024;
/// The longest segment a [`StreamReader`] accepts: 16 MiB.
pub const SEGMENT_MAX: usize = 16 * 1024 * 1024;

/// Segments of any `Read`, in a bounded buffer: memory stays at the buffer size whatever the
/// input's length. A segment borrows the buffer until the next call.
#[derive(Debug)]
pub struct StreamReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: u64,
    eof: bool,
    tokenizer: Tokenizer,
}

impl<R: Read> StreamReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_capacity(STREAM_BUFFER, inner)
    }

    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        StreamReader {
            inner,
            buf: vec![0; capacity.max(512)],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            tokenizer: Tokenizer::default(),
        }
    }

    /// The next segment, or `None` at the end of the input.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Segment<'_>, ReadError>> {
        loop {
            let delimiters = self.tokenizer.delimiters;
            match self
                .tokenizer
                .scan(&self.buf[..self.end], self.start, self.eof, self.base)
            {
                Scan::Segment {
                    start,
                    end,
                    next,
                    mask,
                } => {
                    self.start = next.min(self.end);
                    let delimiters = delimiters.or(self.tokenizer.delimiters)?;
                    let (buf, offset) = (&self.buf[..self.end], self.base + start as u64);
                    return Some(Ok(match mask {
                        Some(mask) => {
                            Segment::within_masked(buf, start, end, offset, delimiters, mask)
                        }
                        None => Segment::within(buf, start, end, offset, delimiters),
                    }));
                }
                Scan::NeedMore => {
                    if let Err(error) = self.fill() {
                        self.tokenizer.done = true;
                        return Some(Err(error));
                    }
                }
                Scan::End => return None,
                Scan::Error(error) => return Some(Err(error)),
            }
        }
    }

    fn fill(&mut self) -> Result<(), ReadError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= SEGMENT_MAX {
                return Err(ReadError::TooLong {
                    offset: self.base,
                    limit: SEGMENT_MAX,
                });
            }
            let grown = (self.buf.len() * 2).min(SEGMENT_MAX);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(ReadError::Io(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &[u8] = b"\xEF\xBB\xBFISA*00*          *00*          *ZZ*A              *ZZ*B              *240101*1200*U*00401*000000001*0*P*>~\r\nGS*PO*A*B*20240101*1200*1*X*004010~\r\n  ST*850*0001~SE*2*0001~GE*1*1~IEA*1*000000001~\nISA|00|          |00|          |ZZ|A              |ZZ|B              |240101|1200|^|00501|000000002|0|P|:\nGS|PO|A|B|20240101|1200|2|X|005010\r\nGE|0|2\nIEA|1|000000002\n\n";

    fn ids_of_slice(input: &[u8]) -> Vec<String> {
        SliceReader::new(input)
            .map(|s| String::from_utf8(s.unwrap().id().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn two_interchanges_with_different_delimiters() {
        assert_eq!(
            ids_of_slice(TWO),
            [
                "ISA", "GS", "ST", "SE", "GE", "IEA", "ISA", "GS", "GE", "IEA"
            ]
        );
    }

    #[test]
    fn stream_reader_agrees_with_slice_reader_at_any_buffer_size() {
        let expected: Vec<(u64, Vec<u8>)> = SliceReader::new(TWO)
            .map(|s| {
                let s = s.unwrap();
                (s.offset(), s.raw().to_vec())
            })
            .collect();
        for capacity in [1, 7, 64, 512, 4096] {
            let mut reader = StreamReader::with_capacity(capacity, TWO);
            let mut got = Vec::new();
            while let Some(s) = reader.next() {
                let s = s.unwrap();
                got.push((s.offset(), s.raw().to_vec()));
            }
            assert_eq!(got, expected, "capacity {capacity}");
        }
    }

    #[test]
    fn a_missing_terminator_at_the_end_is_reported_with_its_offset() {
        let input = &TWO[..130];
        let last = SliceReader::new(input).last().unwrap();
        let error = last.unwrap_err();
        assert!(matches!(error, ReadError::Unterminated { .. }), "{error}");
    }

    #[test]
    fn garbage_instead_of_an_isa_stops_reading() {
        let mut reader = SliceReader::new(b"hello world~");
        let error = reader.next().unwrap().unwrap_err();
        assert_eq!(error.offset(), Some(0));
        assert!(error.to_string().contains("expected an interchange header"));
        assert!(reader.next().is_none());
    }
}
