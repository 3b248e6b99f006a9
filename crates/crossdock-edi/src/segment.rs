//! One segment as a view into the input: its id, elements and components, without copying.

use crate::Delimiters;

/// A segment borrowed from the reader's buffer: `raw` is everything between the previous
/// terminator (and any line breaks after it) and this segment's terminator.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    offset: u64,
    delimiters: Delimiters,
}

impl std::fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment@{}({})", self.offset, quote(self.raw))
    }
}

impl<'a> Segment<'a> {
    pub fn new(raw: &'a [u8], offset: u64, delimiters: Delimiters) -> Self {
        Segment {
            raw,
            offset,
            delimiters,
        }
    }

    /// The segment's bytes without its terminator.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The byte offset of the segment's first byte in the input.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The segment id (`ST`, `PO1`, …): the bytes before the first element separator.
    pub fn id(&self) -> &'a [u8] {
        match memchr::memchr(self.delimiters.element, self.raw) {
            Some(end) => &self.raw[..end],
            None => self.raw,
        }
    }

    /// True when the segment id is `id`.
    pub fn is(&self, id: &str) -> bool {
        let id = id.as_bytes();
        self.raw.starts_with(id)
            && self
                .raw
                .get(id.len())
                .is_none_or(|&b| b == self.delimiters.element)
    }

    /// The elements after the id, in order; an empty element is an empty slice.
    pub fn elements(&self) -> Elements<'a> {
        let rest =
            memchr::memchr(self.delimiters.element, self.raw).map(|end| &self.raw[end + 1..]);
        Elements {
            rest,
            separator: self.delimiters.element,
        }
    }

    /// Element `n`, counted from 1 as X12 does (`BEG03` is `element(3)`); `None` when the segment
    /// has fewer elements.
    pub fn element(&self, n: usize) -> Option<&'a [u8]> {
        if n == 0 {
            return Some(self.id());
        }
        self.elements().nth(n - 1)
    }

    /// The number of elements after the id, trailing empty ones included.
    pub fn element_count(&self) -> usize {
        if memchr::memchr(self.delimiters.element, self.raw).is_none() {
            return 0;
        }
        memchr::memchr_iter(self.delimiters.element, self.raw).count()
    }

    /// The components of element `n` (a composite), split on the component separator.
    pub fn components(&self, n: usize) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let separator = self.delimiters.component;
        self.element(n)
            .into_iter()
            .flat_map(move |element| element.split(move |&b| b == separator))
    }
}

/// The elements of a segment, split on the element separator with `memchr`.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    rest: Option<&'a [u8]>,
    separator: u8,
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(self.separator, rest) {
            Some(end) => {
                self.rest = Some(&rest[end + 1..]);
                Some(&rest[..end])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Bytes as a quoted string for messages: printable ASCII as is, everything else escaped, long
/// input cut with an ellipsis.
pub fn quote(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let mut out = String::from("`");
    for &b in bytes.iter().take(MAX) {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'`' => out.push_str("\\`"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    if bytes.len() > MAX {
        out.push('…');
    }
    out.push('`');
    out
}

/// Bytes as text for messages and typed values: UTF-8 as is, anything else replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(raw: &[u8]) -> Segment<'_> {
        Segment::new(raw, 0, Delimiters::default())
    }

    #[test]
    fn elements_are_counted_from_one() {
        let s = seg(b"PO1*1*120*EA*9.25**CB*065322-117");
        assert_eq!(s.id(), b"PO1");
        assert!(s.is("PO1"));
        assert!(!s.is("PO"));
        assert_eq!(s.element(1), Some(&b"1"[..]));
        assert_eq!(s.element(5), Some(&b""[..]));
        assert_eq!(s.element(7), Some(&b"065322-117"[..]));
        assert_eq!(s.element(8), None);
        assert_eq!(s.element_count(), 7);
    }

    #[test]
    fn a_bare_id_has_no_elements() {
        let s = seg(b"SE");
        assert_eq!(s.id(), b"SE");
        assert_eq!(s.elements().count(), 0);
        assert_eq!(s.element_count(), 0);
    }

    #[test]
    fn components_split_on_the_component_separator() {
        let s = seg(b"SV1*HC:99213:25*50");
        let parts: Vec<_> = s.components(1).collect();
        assert_eq!(parts, vec![&b"HC"[..], b"99213", b"25"]);
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote(b"A\n\x01"), "`A\\n\\x01`");
    }
}
