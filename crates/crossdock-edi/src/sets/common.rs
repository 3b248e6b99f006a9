//! What the typed sets share: the set reader, decimal values, parties, item ids, references and
//! dates.

use serde::Serialize;

use crate::text::Text;

use crate::Segment;
use crate::list::List;
use crate::problem::{Level, Position, Problem, element_code, segment_code};
use crate::segment::id_code;
use crate::segment::quote;
use crate::writer::{SegmentWriter, WriteError};

/// An X12 numeric value (types `R` and `N0`): an optional minus, digits and at most one decimal
/// point, kept as written so it is written back the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Decimal(Text);

impl Decimal {
    pub fn parse(text: &str) -> Option<Decimal> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let mut points = 0;
        let mut numerals = 0;
        for b in digits.bytes() {
            match b {
                b'0'..=b'9' => numerals += 1,
                b'.' => points += 1,
                _ => return None,
            }
        }
        (numerals > 0 && points <= 1 && text.len() <= 24).then(|| Decimal(Text::new(text)))
    }

    pub fn from_integer(value: i64) -> Decimal {
        Decimal(Text::from(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as a whole number, when it is one (`12`, `12.0`, `12.00`).
    pub fn to_integer(&self) -> Option<i64> {
        let (whole, fraction) = match self.0.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (self.0.as_str(), ""),
        };
        if !fraction.bytes().all(|b| b == b'0') {
            return None;
        }
        match whole {
            "" | "-" => Some(0),
            whole => whole.parse().ok(),
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product id with its qualifier (`UP` UPC, `VN`/`VP` vendor's number, `BP` buyer's number,
/// `SK` SKU, `IN` buyer's item number, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ItemId {
    pub qualifier: Text,
    pub id: Text,
}

/// A reference (REF or N9): a qualifier and a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    pub qualifier: Text,
    pub value: Text,
}

/// A date with its qualifier (DTM or G62).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateRef {
    pub qualifier: Text,
    pub date: Text,
}

/// A party (the N1 loop: N1, N3, N4): ship-to, bill-to, ship-from, warehouse, …
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Party {
    /// N101: `ST` ship to, `BT` bill to, `SF` ship from, `WH` warehouse, `VN` vendor, …
    pub role: Text,
    pub name: Option<Text>,
    pub id_qualifier: Option<Text>,
    pub id: Option<Text>,
    /// N301 and N302, as written.
    pub address: Vec<Text>,
    pub city: Option<Text>,
    pub state: Option<Text>,
    pub postal_code: Option<Text>,
    pub country: Option<Text>,
}

/// The reader of one set's body: a cursor over its segments that passes over segments the set
/// does not model and collects problems with their positions.
#[derive(Debug)]
pub struct SetReader<'s, 'a> {
    segments: &'s [Segment<'a>],
    pos: usize,
    known_codes: Vec<u32>,
    /// The id code of the segment at `code_pos`, once looked at.
    code_pos: usize,
    code: u32,
    position: Position,
    problems: Vec<Problem>,
    /// The elements of the segment last taken, split once.
    elements: Vec<&'a [u8]>,
    /// The whole body as text, when the segments are views into one body that is valid UTF-8:
    /// elements are then sliced from it instead of each being checked.
    text: Option<&'a str>,
}

impl<'s, 'a> SetReader<'s, 'a> {
    pub fn new(segments: &'s [Segment<'a>], position: Position) -> Self {
        SetReader {
            segments,
            pos: 0,
            known_codes: Vec::new(),
            code_pos: usize::MAX,
            code: 0,
            position,
            problems: Vec::new(),
            elements: Vec::with_capacity(32),
            text: None,
        }
    }

    /// A reader over segments that are all views into `body`.
    pub fn with_body(segments: &'s [Segment<'a>], body: &'a [u8], position: Position) -> Self {
        SetReader {
            text: std::str::from_utf8(body).ok(),
            ..SetReader::new(segments, position)
        }
    }

    /// The segment ids the set models; others are passed over.
    pub fn known(&mut self, ids: &'static [&'static str]) {
        self.known_codes = ids.iter().map(|id| id_code(id.as_bytes())).collect();
        self.code_pos = usize::MAX;
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Moves past segments the set does not model; returns the id code of the segment under
    /// the cursor (0 at the end).
    #[inline]
    fn skip_unknown(&mut self) -> u32 {
        if self.code_pos == self.pos && self.pos < self.segments.len() {
            return self.code;
        }
        while let Some(segment) = self.segments.get(self.pos) {
            let code = segment.code();
            if self.known_codes.contains(&code) {
                self.code_pos = self.pos;
                self.code = code;
                return code;
            }
            self.pos += 1;
        }
        0
    }

    /// True when the next modelled segment is `id`.
    #[inline]
    pub fn at(&mut self, id: &str) -> bool {
        let code = self.skip_unknown();
        code != 0 && code == id_code(id.as_bytes())
    }

    /// Segments not yet read (modelled or not): a bound for reserving room for lines.
    pub fn remaining(&self) -> usize {
        self.segments.len().saturating_sub(self.pos)
    }

    /// True when there are no modelled segments left.
    pub fn done(&mut self) -> bool {
        self.skip_unknown();
        self.pos >= self.segments.len()
    }

    /// Takes the next segment when it is `id`.
    pub fn take(&mut self, id: &str) -> Option<Fields<'_, 'a>> {
        if !self.at(id) {
            return None;
        }
        let segment = self.segments[self.pos];
        let index = self.index();
        self.pos += 1;
        self.elements.clear();
        self.elements.extend(segment.elements());
        Some(Fields {
            segment,
            elements: &self.elements,
            text: self.text,
            index,
            position: &self.position,
            problems: &mut self.problems,
        })
    }

    /// Takes the next segment, which must be `id`; reports it missing otherwise.
    pub fn require(&mut self, id: &str) -> Option<Fields<'_, 'a>> {
        if self.at(id) {
            return self.take(id);
        }
        self.missing(id);
        None
    }

    /// Reports mandatory segment `id` missing where the cursor is.
    pub fn missing(&mut self, id: &str) {
        let found = self
            .segments
            .get(self.pos)
            .map_or_else(|| "SE".to_string(), |s| quote(s.id()));
        let offset = self
            .segments
            .get(self.pos)
            .map_or(self.position.offset, Segment::offset);
        self.problems.push(Problem {
            level: Level::Segment(segment_code::MANDATORY_MISSING),
            position: Position {
                segment: Some(self.index()),
                segment_id: Some(id.to_string()),
                offset,
                ..self.position.clone()
            },
            message: format!("mandatory segment {id} is missing"),
            expected: id.to_string(),
            found,
        });
    }

    /// Passes over modelled segments until one of `ids` (or the end), reporting each passed as
    /// out of place.
    pub fn skip_until(&mut self, ids: &[&str]) {
        while !self.done() {
            let segment = self.segments[self.pos];
            if ids.iter().any(|id| segment.is(id)) {
                return;
            }
            let index = self.index();
            self.problems.push(Problem {
                level: Level::Segment(segment_code::UNEXPECTED),
                position: Position {
                    segment: Some(index),
                    segment_id: Some(crate::segment::text(segment.id())),
                    offset: segment.offset(),
                    ..self.position.clone()
                },
                message: "segment out of place".into(),
                expected: ids.join(" or "),
                found: quote(segment.id()),
            });
            self.pos += 1;
        }
    }

    /// The index in the set (ST = 1) of the segment under the cursor.
    fn index(&self) -> u32 {
        u32::try_from(self.pos + 2).unwrap_or(u32::MAX)
    }

    /// Reads the references (REF) under the cursor.
    pub fn references(&mut self, id: &str) -> Vec<Reference> {
        let mut out = Vec::new();
        while let Some(mut f) = self.take(id) {
            let qualifier = f.text(1, true);
            let value = f.text(2, false);
            out.push(Reference { qualifier, value });
        }
        out
    }

    /// Reads the dates (DTM or G62) under the cursor.
    pub fn dates(&mut self, id: &str) -> Vec<DateRef> {
        let mut out = Vec::new();
        while let Some(mut f) = self.take(id) {
            let qualifier = f.text(1, true);
            let date = f.date(2, true);
            out.push(DateRef { qualifier, date });
        }
        out
    }

    /// Reads the N1 loops under the cursor.
    pub fn parties(&mut self) -> Vec<Party> {
        let mut out = Vec::new();
        while let Some(mut f) = self.take("N1") {
            let mut party = Party {
                role: f.text(1, true),
                name: f.opt(2),
                id_qualifier: f.opt(3),
                id: f.opt(4),
                ..Party::default()
            };
            if let Some(f) = self.take("N3") {
                party.address = f.all_from(1);
            }
            if let Some(mut f) = self.take("N4") {
                party.city = f.opt(1);
                party.state = f.opt(2);
                party.postal_code = f.opt(3);
                party.country = f.opt(4);
            }
            out.push(party);
        }
        out
    }
}

/// The elements of one segment being read, with problems reported at their position.
#[derive(Debug)]
pub struct Fields<'r, 'a> {
    segment: Segment<'a>,
    elements: &'r [&'a [u8]],
    text: Option<&'a str>,
    index: u32,
    position: &'r Position,
    problems: &'r mut Vec<Problem>,
}

impl<'a> Fields<'_, 'a> {
    fn problem(&mut self, n: usize, code: u8, message: String, expected: &str, found: String) {
        self.problems.push(Problem {
            level: Level::Element(code),
            position: Position {
                segment: Some(self.index),
                segment_id: Some(crate::segment::text(self.segment.id())),
                element: Some(u32::try_from(n).unwrap_or(u32::MAX)),
                offset: self.segment.offset(),
                ..self.position.clone()
            },
            message,
            expected: expected.to_string(),
            found,
        });
    }

    fn raw(&mut self, n: usize, required: bool) -> Option<&'a str> {
        let bytes = n
            .checked_sub(1)
            .and_then(|i| self.elements.get(i))
            .copied()
            .unwrap_or(b"");
        if bytes.is_empty() {
            if required {
                let id = crate::segment::text(self.segment.id());
                self.problem(
                    n,
                    element_code::MANDATORY_MISSING,
                    format!("mandatory element {id}{n:02} is missing"),
                    "a value",
                    "nothing".into(),
                );
            }
            return None;
        }
        // Within a body already known to be text, an element is a slice of it.
        if let Some(text) = self.text {
            let start = (bytes.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            if let Some(element) = start
                .checked_add(bytes.len())
                .and_then(|end| text.get(start..end))
            {
                return Some(element);
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                self.problem(
                    n,
                    element_code::INVALID_CHARACTER,
                    "the element is not valid text".into(),
                    "ASCII or UTF-8 text",
                    quote(bytes),
                );
                None
            }
        }
    }

    /// Element `n` as text, empty when absent.
    pub fn text(&mut self, n: usize, required: bool) -> Text {
        Text::new(self.raw(n, required).unwrap_or_default())
    }

    /// Element `n` as text, `None` when absent or empty.
    pub fn opt(&mut self, n: usize) -> Option<Text> {
        self.raw(n, false).map(Text::new)
    }

    /// Element `n` as a number.
    pub fn decimal(&mut self, n: usize, required: bool) -> Option<Decimal> {
        let text = self.raw(n, required)?;
        let value = Decimal::parse(text);
        if value.is_none() {
            self.problem(
                n,
                element_code::INVALID_CHARACTER,
                "the element is not a number".into(),
                "a number such as 12 or -3.50",
                quote(text.as_bytes()),
            );
        }
        value
    }

    /// Element `n` as a count (a non-negative whole number).
    pub fn count(&mut self, n: usize, required: bool) -> Option<u64> {
        let text = self.raw(n, required)?;
        let value = text
            .parse::<u64>()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()));
        if value.is_none() {
            self.problem(
                n,
                element_code::INVALID_CHARACTER,
                "the element is not a whole number".into(),
                "digits",
                quote(text.as_bytes()),
            );
        }
        value
    }

    /// Element `n` as a date: `CCYYMMDD` (or `YYMMDD`), month and day in range.
    pub fn date(&mut self, n: usize, required: bool) -> Text {
        let Some(text) = self.raw(n, required) else {
            return Text::default();
        };
        let b = text.as_bytes();
        let valid = (b.len() == 8 || b.len() == 6) && b.iter().all(u8::is_ascii_digit) && {
            let md = &b[b.len() - 4..];
            let month = u32::from(md[0] - b'0') * 10 + u32::from(md[1] - b'0');
            let day = u32::from(md[2] - b'0') * 10 + u32::from(md[3] - b'0');
            (1..=12).contains(&month) && (1..=31).contains(&day)
        };
        if !valid {
            self.problem(
                n,
                element_code::INVALID_DATE,
                "the element is not a date".into(),
                "CCYYMMDD",
                quote(b),
            );
        }
        Text::new(text)
    }

    /// Element `n`, which must be one of `codes`.
    pub fn code(&mut self, n: usize, required: bool, codes: &[&str]) -> Text {
        let Some(text) = self.raw(n, required) else {
            return Text::default();
        };
        if !codes.contains(&text) {
            self.problem(
                n,
                element_code::INVALID_CODE,
                "the element holds a code outside its list".into(),
                &codes.join(", "),
                quote(text.as_bytes()),
            );
        }
        Text::new(text)
    }

    /// Qualifier/id pairs from element `n` on (`PO106`/`PO107`, `PO108`/`PO109`, …), until an
    /// empty qualifier.
    pub fn ids(&mut self, n: usize) -> List<ItemId> {
        self.ids_n(n, usize::MAX)
    }

    /// At most `pairs` qualifier/id pairs from element `n` on.
    pub fn ids_n(&mut self, n: usize, pairs: usize) -> List<ItemId> {
        let mut ids = List::new();
        let mut at = n;
        while ids.len() < pairs {
            let Some(qualifier) = self.raw(at, false) else {
                break;
            };
            let id = self.raw(at + 1, true).unwrap_or_default();
            ids.push(ItemId {
                qualifier: Text::new(qualifier),
                id: Text::new(id),
            });
            at += 2;
        }
        ids
    }

    /// Every element from `n` on, as written (empty ones included, trailing ones dropped).
    pub fn all_from(&self, n: usize) -> Vec<Text> {
        self.elements
            .iter()
            .skip(n.saturating_sub(1))
            .map(|e| Text::from(crate::segment::text(e)))
            .collect()
    }
}

/// A line of a warehouse order or receipt advice (940 W01, 944 W07: quantity, unit, UPC, one
/// qualifier/id pair), in its loop: LX before it, G69 and N9s after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarehouseLine {
    /// LX01.
    pub line: Option<Text>,
    pub quantity: Decimal,
    pub unit: Text,
    pub upc: Option<Text>,
    pub ids: List<ItemId>,
    /// G6901.
    pub description: Option<Text>,
    /// N9 in the line's loop (lot, serial, …).
    pub references: Vec<Reference>,
}

impl WarehouseLine {
    /// Reads the detail loop up to the `total` segment (or the end); `item` is W01 or W07.
    pub fn read_all(r: &mut SetReader<'_, '_>, item: &str, total: &str) -> Vec<WarehouseLine> {
        let stops = ["LX", item, total];
        let mut lines = Vec::new();
        r.skip_until(&stops);
        loop {
            let line = r.take("LX").and_then(|mut f| f.opt(1));
            let Some(mut f) = r.require(item) else {
                break;
            };
            let quantity = f
                .decimal(1, true)
                .unwrap_or_else(|| Decimal::from_integer(0));
            let unit = f.text(2, true);
            let upc = f.opt(3);
            let ids = f.ids_n(4, 1);
            let description = r.take("G69").and_then(|mut f| f.opt(1));
            let references = r.references("N9");
            lines.push(WarehouseLine {
                line,
                quantity,
                unit,
                upc,
                ids,
                description,
                references,
            });
            r.skip_until(&stops);
            if r.at(total) || r.done() {
                break;
            }
        }
        lines
    }

    /// Writes the lines, then the `total` segment with their whole units summed.
    pub fn write_all(
        lines: &[WarehouseLine],
        w: &mut SegmentWriter<'_>,
        item: &str,
        total: &str,
    ) -> Result<(), WriteError> {
        let mut units = 0i64;
        for line in lines {
            if let Some(lx) = &line.line {
                w.segment("LX", &[lx])?;
            }
            let head = vec![line.quantity.as_str(), &line.unit, o(&line.upc)];
            w.segment(item, &with_ids(head, &line.ids))?;
            if let Some(description) = &line.description {
                w.segment("G69", &[description])?;
            }
            write_references(w, "N9", &line.references)?;
            units = units.saturating_add(line.quantity.to_integer().unwrap_or(0));
        }
        w.segment(total, &[units.to_string()])
    }
}

/// The text of an optional value for writing.
pub fn o(value: &Option<Text>) -> &str {
    value.as_deref().unwrap_or("")
}

/// The text of an optional number for writing.
pub fn od(value: &Option<Decimal>) -> &str {
    value.as_ref().map_or("", Decimal::as_str)
}

/// Writes qualifier/id pairs after `head`.
pub fn with_ids<'v>(mut head: Vec<&'v str>, ids: &'v [ItemId]) -> Vec<&'v str> {
    for id in ids {
        head.push(&id.qualifier);
        head.push(&id.id);
    }
    head
}

/// Writes references (REF or N9).
pub fn write_references(
    w: &mut SegmentWriter<'_>,
    id: &str,
    references: &[Reference],
) -> Result<(), WriteError> {
    for r in references {
        w.segment(id, &[&r.qualifier, &r.value])?;
    }
    Ok(())
}

/// Writes dates (DTM or G62).
pub fn write_dates(
    w: &mut SegmentWriter<'_>,
    id: &str,
    dates: &[DateRef],
) -> Result<(), WriteError> {
    for d in dates {
        w.segment(id, &[&d.qualifier, &d.date])?;
    }
    Ok(())
}

/// Writes N1 loops.
pub fn write_parties(w: &mut SegmentWriter<'_>, parties: &[Party]) -> Result<(), WriteError> {
    for p in parties {
        w.segment("N1", &[&p.role, o(&p.name), o(&p.id_qualifier), o(&p.id)])?;
        if p.address.iter().any(|a| !a.is_empty()) {
            w.segment("N3", &p.address)?;
        }
        if p.city.is_some() || p.state.is_some() || p.postal_code.is_some() || p.country.is_some() {
            w.segment(
                "N4",
                &[o(&p.city), o(&p.state), o(&p.postal_code), o(&p.country)],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(Decimal::parse("12.50").unwrap().as_str(), "12.50");
        assert_eq!(Decimal::parse("-3").unwrap().to_integer(), Some(-3));
        assert_eq!(Decimal::parse("12.00").unwrap().to_integer(), Some(12));
        assert_eq!(Decimal::parse(".5").unwrap().to_integer(), None);
        assert!(Decimal::parse("1.2.3").is_none());
        assert!(Decimal::parse("").is_none());
        assert!(Decimal::parse("-").is_none());
        assert!(Decimal::parse("1e5").is_none());
    }
}
