//! `Text`: the string type of typed sets. X12 values are short (ids, codes, quantities), so up
//! to 30 bytes are kept inline and only longer values allocate — reading a large file then costs
//! a fraction of the allocations `String` would.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;

const INLINE: usize = 30;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

/// A short immutable string, inline up to 30 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Text(Repr);

impl Text {
    pub fn new(text: &str) -> Text {
        if text.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Text(Repr::Inline {
                len: text.len() as u8,
                bytes,
            })
        } else {
            Text(Repr::Heap(text.into()))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // The inline bytes were copied whole from a `str`, so they are valid UTF-8.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(text) => text,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new("")
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text::new(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::new(&text)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_texts_read_back() {
        for s in [
            "",
            "A",
            "0123456789012345678901",
            "01234567890123456789012",
            "ÄÖÜ ✓ long enough to allocate",
        ] {
            let t = Text::new(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(t, s);
            assert_eq!(format!("{t}"), s);
        }
    }
}
