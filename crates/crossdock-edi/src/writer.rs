//! Writing interchanges: envelopes with counted trailers and the delimiters a partner asks for.

use crate::Delimiters;

/// The highest control number (nine digits); crossdock's series wrap back to 1 after it.
pub const CONTROL_MAX: u32 = 999_999_999;

/// Why a value cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// X12 has no escape: a value may not contain a delimiter byte.
    Delimiter {
        segment: String,
        element: usize,
        value: String,
    },
    /// A fixed-width ISA field is longer than its width.
    TooLong {
        field: &'static str,
        max: usize,
        value: String,
    },
    /// Segments outside a set, or a set closed twice.
    Structure(&'static str),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Delimiter {
                segment,
                element,
                value,
            } => write!(
                f,
                "{segment}{element:02} {value:?} contains a delimiter of this interchange; X12 cannot escape it"
            ),
            WriteError::TooLong { field, max, value } => {
                write!(f, "{field} {value:?} is longer than {max} characters")
            }
            WriteError::Structure(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// An envelope's date (`YYMMDD`, ISA09) and time (`HHMM`, ISA10) for a moment, in UTC.
pub fn envelope_stamp(at: crossdock_core::Timestamp) -> (String, String) {
    // RFC 3339: 2026-11-26T20:41:28Z. A time outside what that can show stamps the epoch.
    let text = at.to_string();
    let part = |range: std::ops::Range<usize>| text.get(range).unwrap_or("00").to_owned();
    if text.len() < 16 || text.starts_with('@') {
        return ("700101".into(), "0000".into());
    }
    (
        format!("{}{}{}", part(2..4), part(5..7), part(8..10)),
        format!("{}{}", part(11..13), part(14..16)),
    )
}

/// The sender, receiver and format of an interchange to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeOptions {
    pub delimiters: Delimiters,
    pub sender_qualifier: String,
    pub sender: String,
    pub receiver_qualifier: String,
    pub receiver: String,
    /// `YYMMDD` in ISA09; GS04 takes `CCYYMMDD`.
    pub date: String,
    /// `HHMM`.
    pub time: String,
    /// ISA12: `00401` or `00501`.
    pub version: String,
    /// ISA15: `P` or `T`.
    pub usage: char,
    /// Write a line break after each segment terminator (easier to read; partners accept it).
    pub line_breaks: bool,
}

impl Default for EnvelopeOptions {
    fn default() -> Self {
        EnvelopeOptions {
            delimiters: Delimiters::default(),
            sender_qualifier: "ZZ".into(),
            sender: "CROSSDOCK".into(),
            receiver_qualifier: "ZZ".into(),
            receiver: "PARTNER".into(),
            date: "000101".into(),
            time: "0000".into(),
            version: "00401".into(),
            usage: 'P',
            line_breaks: true,
        }
    }
}

impl EnvelopeOptions {
    /// The GS08 version matching ISA12: `004010` or `005010`.
    pub fn group_version(&self) -> String {
        format!("{}0", self.version)
    }
}

/// Segments of one transaction set, written with the interchange's delimiters and counted for SE.
#[derive(Debug)]
pub struct SegmentWriter<'a> {
    out: &'a mut Vec<u8>,
    delimiters: Delimiters,
    line_breaks: bool,
    count: u32,
}

impl<'a> SegmentWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>, delimiters: Delimiters, line_breaks: bool) -> Self {
        SegmentWriter {
            out,
            delimiters,
            line_breaks,
            count: 0,
        }
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// Segments written so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Writes a segment; trailing empty elements are left out, as X12 asks.
    pub fn segment<S: AsRef<str>>(&mut self, id: &str, elements: &[S]) -> Result<(), WriteError> {
        let last = elements
            .iter()
            .rposition(|e| !e.as_ref().is_empty())
            .map_or(0, |i| i + 1);
        let d = self.delimiters;
        for (n, element) in elements[..last].iter().enumerate() {
            let value = element.as_ref();
            let bad = value.bytes().any(|b| {
                b == d.element || b == d.segment || b == d.component || Some(b) == d.repetition
            });
            if bad {
                return Err(WriteError::Delimiter {
                    segment: id.to_string(),
                    element: n + 1,
                    value: value.to_string(),
                });
            }
        }
        self.out.extend_from_slice(id.as_bytes());
        for element in &elements[..last] {
            self.out.push(d.element);
            self.out.extend_from_slice(element.as_ref().as_bytes());
        }
        self.end();
        Ok(())
    }

    /// A composite element's components joined by the component separator (not checked here:
    /// each component is checked when it is built).
    pub fn composite(&self, components: &[&str]) -> String {
        let last = components
            .iter()
            .rposition(|c| !c.is_empty())
            .map_or(0, |i| i + 1);
        components[..last].join(&char::from(self.delimiters.component).to_string())
    }

    fn end(&mut self) {
        self.out.push(self.delimiters.segment);
        if self.line_breaks && self.delimiters.segment != b'\n' {
            self.out.push(b'\n');
        }
        self.count += 1;
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.end();
    }
}

fn pad(field: &'static str, value: &str, width: usize) -> Result<String, WriteError> {
    if value.len() > width {
        return Err(WriteError::TooLong {
            field,
            max: width,
            value: value.to_string(),
        });
    }
    Ok(format!("{value:<width$}"))
}

/// Writes one interchange into a byte buffer: ISA, then groups of sets, then IEA, with every
/// count and control number filled in.
#[derive(Debug)]
pub struct InterchangeWriter {
    out: Vec<u8>,
    options: EnvelopeOptions,
    control: u32,
    groups: u32,
    group: Option<(String, u32)>,
}

impl InterchangeWriter {
    /// Starts an interchange with control number `control` (ISA13, at most 9 digits).
    pub fn new(options: EnvelopeOptions, control: u32) -> Result<Self, WriteError> {
        if control > CONTROL_MAX {
            return Err(WriteError::TooLong {
                field: "ISA13",
                max: 9,
                value: control.to_string(),
            });
        }
        let d = options.delimiters;
        for (field, value) in [
            ("ISA05", &options.sender_qualifier),
            ("ISA06", &options.sender),
            ("ISA07", &options.receiver_qualifier),
            ("ISA08", &options.receiver),
            ("ISA09", &options.date),
            ("ISA10", &options.time),
            ("ISA12", &options.version),
        ] {
            let delimiter = value.bytes().any(|b| {
                b == d.element || b == d.segment || b == d.component || Some(b) == d.repetition
            });
            if delimiter || !value.is_ascii() {
                return Err(WriteError::Delimiter {
                    segment: "ISA".into(),
                    element: field[3..].parse().unwrap_or(0),
                    value: value.clone(),
                });
            }
        }
        let sep = char::from(d.element);
        let isa11 = match d.repetition {
            Some(r) if options.version.as_str() >= "00402" => char::from(r),
            _ => 'U',
        };
        let isa = format!(
            "ISA{sep}00{sep}{}{sep}00{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{isa11}{sep}{}{sep}{control:09}{sep}0{sep}{}{sep}{}",
            " ".repeat(10),
            " ".repeat(10),
            pad("ISA05", &options.sender_qualifier, 2)?,
            pad("ISA06", &options.sender, 15)?,
            pad("ISA07", &options.receiver_qualifier, 2)?,
            pad("ISA08", &options.receiver, 15)?,
            pad("ISA09", &options.date, 6)?,
            pad("ISA10", &options.time, 4)?,
            pad("ISA12", &options.version, 5)?,
            options.usage,
            char::from(d.component),
        );
        let mut out = Vec::with_capacity(4096);
        SegmentWriter::new(&mut out, d, options.line_breaks).raw(isa.as_bytes());
        Ok(InterchangeWriter {
            out,
            options,
            control,
            groups: 0,
            group: None,
        })
    }

    fn writer(&mut self) -> SegmentWriter<'_> {
        SegmentWriter::new(
            &mut self.out,
            self.options.delimiters,
            self.options.line_breaks,
        )
    }

    /// Opens a functional group (GS) with functional id `functional_id` (`PO`, `IB`, …), the
    /// interchange's sender and receiver as application codes and its version.
    pub fn begin_group(&mut self, functional_id: &str, control: u32) -> Result<(), WriteError> {
        let (sender, receiver) = (self.options.sender.clone(), self.options.receiver.clone());
        let version = self.options.group_version();
        self.begin_group_as(functional_id, &sender, &receiver, control, &version)
    }

    /// Opens a functional group with explicit application codes (GS02, GS03) and version (GS08).
    pub fn begin_group_as(
        &mut self,
        functional_id: &str,
        sender: &str,
        receiver: &str,
        control: u32,
        version: &str,
    ) -> Result<(), WriteError> {
        if self.group.is_some() {
            return Err(WriteError::Structure("a group is already open"));
        }
        let date = format!("20{}", self.options.date);
        let time = self.options.time.clone();
        let fields = [
            functional_id,
            sender,
            receiver,
            &date,
            &time,
            &control.to_string(),
            "X",
            version,
        ];
        self.writer().segment("GS", &fields)?;
        self.groups += 1;
        self.group = Some((control.to_string(), 0));
        Ok(())
    }

    /// Writes one transaction set: ST, the segments `body` writes, and SE with its count.
    pub fn set(
        &mut self,
        id: &str,
        control: &str,
        body: impl FnOnce(&mut SegmentWriter<'_>) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let Some((_, sets)) = &mut self.group else {
            return Err(WriteError::Structure("a set needs an open group"));
        };
        *sets += 1;
        let mark = self.out.len();
        let mut w = self.writer();
        w.segment("ST", &[id, control])?;
        let result = body(&mut w);
        let count = w.count() + 1;
        if let Err(error) = result.and_then(|()| w.segment("SE", &[&count.to_string(), control])) {
            self.out.truncate(mark);
            if let Some((_, sets)) = &mut self.group {
                *sets -= 1;
            }
            return Err(error);
        }
        Ok(())
    }

    /// Closes the open group (GE with its set count).
    pub fn end_group(&mut self) -> Result<(), WriteError> {
        let Some((control, sets)) = self.group.take() else {
            return Err(WriteError::Structure("no group is open"));
        };
        self.writer().segment("GE", &[sets.to_string(), control])
    }

    /// Closes the interchange (IEA) and returns its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, WriteError> {
        if self.group.is_some() {
            self.end_group()?;
        }
        let (groups, control) = (self.groups, self.control);
        self.writer()
            .segment("IEA", &[groups.to_string(), format!("{control:09}")])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Handler, walk_slice};

    #[derive(Default)]
    struct Count(u32);
    impl Handler for Count {
        fn set_end(&mut self, report: &crate::envelope::SetReport) {
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            self.0 += 1;
        }
    }

    #[test]
    fn a_written_interchange_reads_back_without_problems() {
        for delimiters in [
            Delimiters::default(),
            Delimiters {
                element: b'|',
                component: b'>',
                repetition: None,
                segment: b'\n',
            },
        ] {
            let options = EnvelopeOptions {
                delimiters,
                ..EnvelopeOptions::default()
            };
            let mut w = InterchangeWriter::new(options, 42).unwrap();
            w.begin_group("PO", 7).unwrap();
            w.set("850", "0001", |s| {
                s.segment("BEG", &["00", "SA", "PO1", "", "20240101"])
            })
            .unwrap();
            w.set("850", "0002", |s| {
                s.segment("BEG", &["00", "SA", "PO2", "", ""])
            })
            .unwrap();
            let bytes = w.finish().unwrap();
            let mut count = Count::default();
            let stats = walk_slice(&bytes, &mut count);
            assert_eq!(count.0, 2);
            assert_eq!(stats.errors, 0, "{}", String::from_utf8_lossy(&bytes));
            assert_eq!(stats.problems, 0);
        }
    }

    #[test]
    fn envelope_stamps_are_yymmdd_and_hhmm() {
        let at = crossdock_core::Timestamp::parse_rfc3339("2026-11-26T20:41:28.5Z").unwrap();
        assert_eq!(envelope_stamp(at), ("261126".into(), "2041".into()));
        let odd = crossdock_core::Timestamp::from_unix_micros(i64::MAX);
        assert_eq!(envelope_stamp(odd), ("700101".into(), "0000".into()));
    }

    #[test]
    fn a_delimiter_in_a_value_is_refused_and_the_set_is_not_half_written() {
        let mut w = InterchangeWriter::new(EnvelopeOptions::default(), 1).unwrap();
        w.begin_group("PO", 1).unwrap();
        let before = w.out.len();
        let error = w
            .set("850", "0001", |s| s.segment("BEG", &["00", "SA", "PO*1"]))
            .unwrap_err();
        assert_eq!(
            error,
            WriteError::Delimiter {
                segment: "BEG".into(),
                element: 3,
                value: "PO*1".into()
            }
        );
        assert_eq!(w.out.len(), before);
    }
}
