//! The four delimiters of an interchange, as its ISA segment declares them.

use serde::Serialize;

/// The bytes that separate elements, components, repetitions and segments in one interchange.
///
/// Every interchange declares its own: the element separator is the byte after `ISA`, the
/// component separator is ISA16, the repetition separator is ISA11 from version 00402 on, and the
/// segment terminator is the byte after ISA16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Delimiters {
    pub element: u8,
    pub component: u8,
    /// `None` before version 00402, where ISA11 is the standards identifier (`U`).
    pub repetition: Option<u8>,
    pub segment: u8,
}

impl Default for Delimiters {
    /// `*`, `:`, `^` and `~`: the usual choice, and what crossdock writes unless a partner asks
    /// for others.
    fn default() -> Self {
        Delimiters {
            element: b'*',
            component: b':',
            repetition: Some(b'^'),
            segment: b'~',
        }
    }
}

/// Why the delimiters could not be read from the start of an interchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelimiterError {
    /// The bytes do not start with `ISA`.
    NotIsa { found: Vec<u8> },
    /// The input ended inside the ISA segment.
    Truncated,
    /// The ISA has fewer than 16 elements before its terminator, or two delimiters are the same.
    Malformed(String),
}

impl std::fmt::Display for DelimiterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DelimiterError::NotIsa { found } => write!(
                f,
                "expected an interchange header `ISA`, found {}",
                crate::segment::quote(found)
            ),
            DelimiterError::Truncated => write!(f, "the input ends inside the ISA segment"),
            DelimiterError::Malformed(why) => write!(f, "the ISA segment is malformed: {why}"),
        }
    }
}

/// The length of a fixed-width ISA segment, its terminator included.
pub const ISA_LEN: usize = 106;

/// How far into an interchange the end of its ISA is looked for.
pub const ISA_SEARCH: usize = 512;

/// What the start of an interchange says: its delimiters and where the ISA segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaLayout {
    pub delimiters: Delimiters,
    /// The length of the ISA segment without its terminator.
    pub len: usize,
}

impl IsaLayout {
    /// True when the ISA has the standard fixed width (106 bytes with its terminator). Many
    /// published samples collapse the padding; they are read all the same.
    pub fn is_fixed_width(&self) -> bool {
        self.len + 1 == ISA_LEN
    }
}

/// Reads the delimiters from an ISA segment at the start of `bytes`.
///
/// The ISA is located by counting element separators rather than by fixed offsets, so an ISA
/// whose padding was collapsed is still understood. `Truncated` means more bytes are needed.
pub fn detect(bytes: &[u8]) -> Result<IsaLayout, DelimiterError> {
    if bytes.len() < 4 {
        return if b"ISA".starts_with(&bytes[..bytes.len().min(3)]) {
            Err(DelimiterError::Truncated)
        } else {
            Err(DelimiterError::NotIsa {
                found: bytes.to_vec(),
            })
        };
    }
    if &bytes[..3] != b"ISA" {
        return Err(DelimiterError::NotIsa {
            found: bytes[..bytes.len().min(16)].to_vec(),
        });
    }
    let element = bytes[3];
    if element.is_ascii_alphanumeric() || element == b' ' {
        return Err(DelimiterError::Malformed(format!(
            "the element separator after `ISA` is {}, which cannot be a delimiter",
            crate::segment::quote(&[element])
        )));
    }
    // ISA16 is the byte after the 16th element separator; the terminator follows it. The search
    // stops at 512 bytes whatever the input's length, so every reader reaches the same verdict.
    const SEARCH: usize = ISA_SEARCH;
    let window = &bytes[..bytes.len().min(SEARCH)];
    let mut seen = 1;
    let mut at = 4;
    let mut isa11 = None;
    let mut isa12_start = 0;
    while seen < 16 {
        let Some(next) = memchr::memchr(element, &window[at..]) else {
            return if window.len() == SEARCH {
                Err(DelimiterError::Malformed(format!(
                    "fewer than 16 elements in its first {SEARCH} bytes"
                )))
            } else {
                Err(DelimiterError::Truncated)
            };
        };
        let field = &window[at..at + next];
        seen += 1;
        if seen == 12 {
            isa11 = field.first().copied().filter(|_| field.len() == 1);
            isa12_start = at + next + 1;
        }
        at += next + 1;
    }
    if bytes.len() < at + 2 {
        return Err(DelimiterError::Truncated);
    }
    let component = bytes[at];
    let segment = bytes[at + 1];
    let version = bytes.get(isa12_start..isa12_start + 5).unwrap_or(b"");
    let repetition = isa11.filter(|r| !r.is_ascii_alphanumeric() && version >= &b"00402"[..]);
    let delimiters = Delimiters {
        element,
        component,
        repetition,
        segment,
    };
    let mut distinct = vec![element, component, segment];
    distinct.extend(repetition);
    let count = distinct.len();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != count {
        return Err(DelimiterError::Malformed(format!(
            "two delimiters are the same byte (element {}, component {}, segment {})",
            crate::segment::quote(&[element]),
            crate::segment::quote(&[component]),
            crate::segment::quote(&[segment]),
        )));
    }
    if segment.is_ascii_alphanumeric() {
        return Err(DelimiterError::Malformed(format!(
            "the segment terminator after ISA16 is {}, which cannot be a delimiter",
            crate::segment::quote(&[segment])
        )));
    }
    Ok(IsaLayout {
        delimiters,
        len: at + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISA: &[u8] = b"ISA*00*          *00*          *ZZ*SENDERID       *ZZ*RECEIVERID     *240101*1200*^*00501*000000001*0*P*:~";

    #[test]
    fn fixed_width_isa() {
        let layout = detect(ISA).unwrap();
        assert_eq!(layout.delimiters, Delimiters::default());
        assert!(layout.is_fixed_width());
    }

    #[test]
    fn repetition_only_from_00402() {
        let old = b"ISA*00*          *00*          *ZZ*SENDERID       *ZZ*RECEIVERID     *240101*1200*U*00401*000000001*0*P*>~";
        let layout = detect(old).unwrap();
        assert_eq!(layout.delimiters.repetition, None);
        assert_eq!(layout.delimiters.component, b'>');
    }

    #[test]
    fn collapsed_padding_and_lf_terminator() {
        let isa = b"ISA|00||00||01|043109560|ZZ|COMPANY|130402|1301|U|00400|000037153|0|P|>\nGS|";
        let layout = detect(isa).unwrap();
        assert_eq!(layout.delimiters.segment, b'\n');
        assert_eq!(layout.delimiters.element, b'|');
        assert!(!layout.is_fixed_width());
    }

    #[test]
    fn short_input_asks_for_more() {
        assert_eq!(detect(&ISA[..50]), Err(DelimiterError::Truncated));
        assert_eq!(detect(b"IS"), Err(DelimiterError::Truncated));
        assert!(matches!(
            detect(b"GS*PO"),
            Err(DelimiterError::NotIsa { .. })
        ));
    }
}
