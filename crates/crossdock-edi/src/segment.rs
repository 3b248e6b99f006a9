//! One segment as a view into the input: its id, elements and components, without copying.

use crate::Delimiters;

/// A segment borrowed from the reader's buffer: `raw` is everything between the previous
/// terminator (and any line breaks after it) and this segment's terminator.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    /// `raw` and up to 64 bytes of the input after it: element splitting reads whole 64-byte
    /// windows from here instead of copying the last one.
    padded: &'a [u8],
    offset: u64,
    delimiters: Delimiters,
    /// The element separators among the first 64 bytes, when the reader found them already.
    first_mask: Option<u64>,
}

impl std::fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment@{}({})", self.offset, quote(self.raw))
    }
}

impl<'a> Segment<'a> {
    #[inline]
    pub fn new(raw: &'a [u8], offset: u64, delimiters: Delimiters) -> Self {
        Segment {
            raw,
            padded: raw,
            offset,
            delimiters,
            first_mask: None,
        }
    }

    /// A segment of `buf[start..end]`; the bytes after `end` in `buf` (up to 64) only speed up
    /// element splitting.
    #[inline]
    pub fn within(
        buf: &'a [u8],
        start: usize,
        end: usize,
        offset: u64,
        delimiters: Delimiters,
    ) -> Self {
        let padded = &buf[start..buf.len().min(end + WINDOW)];
        Segment {
            raw: &padded[..end - start],
            padded,
            offset,
            delimiters,
            first_mask: None,
        }
    }

    /// As [`Segment::within`], with the element separators of its first 64 bytes already found
    /// (`mask`, bit 0 at `start`).
    #[inline]
    pub(crate) fn within_masked(
        buf: &'a [u8],
        start: usize,
        end: usize,
        offset: u64,
        delimiters: Delimiters,
        mask: u64,
    ) -> Self {
        let len = end - start;
        let keep = if len >= WINDOW {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        Segment {
            first_mask: Some(mask & keep),
            ..Segment::within(buf, start, end, offset, delimiters)
        }
    }

    /// The segment's bytes without its terminator.
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The byte offset of the segment's first byte in the input.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The segment id (`ST`, `PO1`, …): the bytes before the first element separator.
    #[inline]
    pub fn id(&self) -> &'a [u8] {
        let separator = self.delimiters.element;
        match self.raw.iter().position(|&b| b == separator) {
            Some(end) => &self.raw[..end],
            None => self.raw,
        }
    }

    /// True when the segment id is `id`.
    #[inline]
    pub fn is(&self, id: &str) -> bool {
        self.code() == id_code(id.as_bytes())
    }

    /// The segment id packed in a number (see [`id_code`]), for fast comparisons.
    #[inline]
    pub fn code(&self) -> u32 {
        let separator = self.delimiters.element;
        let r = self.raw;
        let len = match r.len() {
            0 => 0,
            1 => 1,
            _ if r[1] == separator => 1,
            2 => 2,
            _ if r[2] == separator => 2,
            3 => 3,
            _ if r[3] == separator => 3,
            _ => return u32::MAX,
        };
        id_code(&r[..len])
    }

    /// The elements after the id, in order; an empty element is an empty slice.
    #[inline]
    pub fn elements(&self) -> Elements<'a> {
        Elements::after_id(
            self.padded,
            self.raw.len(),
            self.delimiters.element,
            self.first_mask,
        )
    }

    /// Element `n`, counted from 1 as X12 does (`BEG03` is `element(3)`); `None` when the segment
    /// has fewer elements.
    #[inline]
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

/// A segment id of up to three bytes packed in a number: the bytes, then the length. Longer ids
/// (which X12 does not have) all map to `u32::MAX`.
#[inline]
pub const fn id_code(id: &[u8]) -> u32 {
    match id {
        [] => 0,
        [a] => *a as u32 | 1 << 24,
        [a, b] => *a as u32 | (*b as u32) << 8 | 2 << 24,
        [a, b, c] => *a as u32 | (*b as u32) << 8 | (*c as u32) << 16 | 3 << 24,
        _ => u32::MAX,
    }
}

/// The elements of a segment. Separators are found 64 bytes at a time as a bit mask (a loop
/// the compiler turns into vector compares), then taken one set bit at a time, so splitting costs
/// about the same whether elements are short or long.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    /// The segment followed by whatever input is at hand; only `..len` is the segment.
    raw: &'a [u8],
    len: usize,
    /// Where the next element starts.
    start: usize,
    /// Where the 64-byte window of `mask` starts.
    window: usize,
    /// Separators in the window not yet taken.
    mask: u64,
    done: bool,
    separator: u8,
}

pub(crate) const WINDOW: usize = 64;

/// Bit `i` set where byte `i` of an 8-byte word is `separator` (SWAR: exact, no false
/// positives).
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn word_mask(word: u64, separator: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ (u64::from(separator) * 0x0101_0101_0101_0101);
    // The high bit of each byte of `zero` is set exactly where that byte of `x` is 0.
    let zero = !(((x & LOW7) + LOW7) | x | LOW7);
    // Gather the eight high bits into the low byte, byte 0 to bit 0.
    (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Bit `i` set where byte `i` of the window is `a`, and the same for `b`: SSE2 compares on
/// x86_64 (through `safe_arch`, no `unsafe` here), SWAR on 64-bit words elsewhere.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn window_masks(window: &[u8; WINDOW], a: u8, b: u8) -> (u64, u64) {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let (sa, sb) = (
        set_splat_i8_m128i(i8::from_ne_bytes([a])),
        set_splat_i8_m128i(i8::from_ne_bytes([b])),
    );
    let (mut ma, mut mb) = (0u64, 0u64);
    for (i, chunk) in window.as_chunks::<16>().0.iter().enumerate() {
        let v = load_unaligned_m128i(chunk);
        let bits = |s| u64::from(move_mask_i8_m128i(cmp_eq_mask_i8_m128i(v, s)) as u16);
        ma |= bits(sa) << (16 * i);
        mb |= bits(sb) << (16 * i);
    }
    (ma, mb)
}

/// Bit `i` set where byte `i` of the window is `a`, and the same for `b` (SWAR).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn window_masks(window: &[u8; WINDOW], a: u8, b: u8) -> (u64, u64) {
    let (mut ma, mut mb) = (0u64, 0u64);
    for (i, word) in window.as_chunks::<8>().0.iter().enumerate() {
        let word = u64::from_le_bytes(*word);
        ma |= word_mask(word, a) << (8 * i);
        mb |= word_mask(word, b) << (8 * i);
    }
    (ma, mb)
}

/// Separators among the first `len` bytes (at most 64) of `bytes`.
#[inline]
fn window_mask(bytes: &[u8], len: usize, separator: u8) -> u64 {
    let keep = if len >= WINDOW {
        u64::MAX
    } else {
        (1u64 << len) - 1
    };
    match bytes.first_chunk::<WINDOW>() {
        Some(window) => window_masks(window, separator, separator).0 & keep,
        None => {
            let len = len.min(bytes.len());
            let mut window = [0u8; WINDOW];
            window[..len].copy_from_slice(&bytes[..len]);
            window_masks(&window, separator, separator).0 & keep
        }
    }
}

impl<'a> Elements<'a> {
    /// The elements after the id of segment `raw`.
    #[inline]
    fn after_id(raw: &'a [u8], len: usize, separator: u8, first_mask: Option<u64>) -> Self {
        let mut elements = Elements {
            raw,
            len,
            start: 0,
            window: 0,
            mask: first_mask.unwrap_or_else(|| window_mask(raw, len, separator)),
            done: false,
            separator,
        };
        if elements.mask == 0 && len <= WINDOW {
            elements.done = true;
        } else {
            elements.next();
        }
        elements
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];

    /// At least the separators left in the current window, plus the last element.
    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            (self.mask.count_ones() as usize + 1, None)
        }
    }

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        loop {
            if self.mask != 0 {
                let at = self.window + self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                let element = &self.raw[self.start..at];
                self.start = at + 1;
                return Some(element);
            }
            self.window += WINDOW;
            if self.window >= self.len {
                self.done = true;
                return Some(&self.raw[self.start..self.len]);
            }
            self.mask = window_mask(
                &self.raw[self.window..],
                self.len - self.window,
                self.separator,
            );
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
    fn word_masks_are_exact() {
        for separator in [0u8, b'*', 0x7f, 0x80, 0xff] {
            for seed in 0..2000u64 {
                let mut bytes = [0u8; 8];
                let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
                for b in &mut bytes {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = match x % 4 {
                        0 => separator,
                        1 => separator.wrapping_add(1),
                        2 => separator ^ 0x80,
                        _ => x as u8,
                    };
                }
                let expected = bytes
                    .iter()
                    .enumerate()
                    .fold(0u64, |m, (i, &b)| m | (u64::from(b == separator) << i));
                assert_eq!(
                    word_mask(u64::from_le_bytes(bytes), separator),
                    expected,
                    "{bytes:?}"
                );
            }
        }
    }

    #[test]
    fn window_masks_agree_with_a_byte_by_byte_count() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            let mut window = [0u8; WINDOW];
            for b in &mut window {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = [b'*', b'~', b'A', 0x80, 0xFF, 0][(x % 6) as usize];
            }
            let expect = |d: u8| {
                window
                    .iter()
                    .enumerate()
                    .fold(0u64, |m, (i, &b)| m | (u64::from(b == d) << i))
            };
            assert_eq!(
                window_masks(&window, b'*', b'~'),
                (expect(b'*'), expect(b'~'))
            );
            assert_eq!(window_masks(&window, 0x80, 0), (expect(0x80), expect(0)));
        }
    }

    #[test]
    fn long_segments_split_across_windows() {
        let mut raw = b"REF".to_vec();
        let mut expected = Vec::new();
        for i in 0..50 {
            raw.push(b'*');
            let element = "x".repeat(i % 7);
            raw.extend_from_slice(element.as_bytes());
            expected.push(element);
        }
        let s = seg(&raw);
        let got: Vec<String> = s
            .elements()
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote(b"A\n\x01"), "`A\\n\\x01`");
    }
}
