//! Money as exact decimals: an [`Amount`] is a whole number of ten-thousandths, so prices written
//! as decimal strings (`"12.5"`, `"0.0825"`) add up without rounding, and totals of a journal
//! batch equal the sum of its lines to the last digit.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimal places kept.
pub const SCALE: u32 = 4;
const UNIT: i64 = 10_i64.pow(SCALE);
/// Digits before the decimal point at most: every amount read fits in an `i64` with room to
/// spare; products and sums are checked all the same.
const WHOLE_DIGITS_MAX: usize = 13;

/// An exact decimal amount, in ten-thousandths of the currency unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn from_ten_thousandths(value: i64) -> Amount {
        Amount(value)
    }

    pub fn ten_thousandths(self) -> i64 {
        self.0
    }

    /// Reads a decimal as prices are written: `12`, `12.5`, `-0.99`; at most four decimal places.
    pub fn parse(text: &str) -> Result<Amount, String> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !is_digits(whole) || !is_digits(fraction) {
            return Err(format!("{text:?} is not a decimal number"));
        }
        if digits.contains('.') && fraction.is_empty() {
            return Err(format!("{text:?} has no digits after its decimal point"));
        }
        if fraction.len() > SCALE as usize {
            return Err(format!("{text:?} has more than {SCALE} decimal places"));
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > WHOLE_DIGITS_MAX {
            return Err(format!("{text:?} is too large"));
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("{text:?} is too large"))?
        };
        let mut part: i64 = 0;
        for i in 0..SCALE as usize {
            let digit = fraction
                .as_bytes()
                .get(i)
                .map_or(0, |b| i64::from(b - b'0'));
            part = part * 10 + digit;
        }
        let value = whole * UNIT + part;
        Ok(Amount(if negative { -value } else { value }))
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_mul(self, quantity: i64) -> Option<Amount> {
        self.0.checked_mul(quantity).map(Amount)
    }
}

impl std::ops::Neg for Amount {
    type Output = Amount;

    fn neg(self) -> Amount {
        Amount(-self.0)
    }
}

/// At least two decimal places, more only when they are not zero: `12.50`, `0.0825`, `-3.00`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = UNIT.unsigned_abs();
        let mut fraction = format!("{:04}", abs % unit);
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        write!(f, "{sign}{}.{fraction}", abs / unit)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Amount::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 currency code: three capital letters.
pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decimals_are_read_exactly() {
        let t = |s: &str| Amount::parse(s).map(Amount::ten_thousandths);
        assert_eq!(t("12"), Ok(120_000));
        assert_eq!(t("12.5"), Ok(125_000));
        assert_eq!(t("-0.99"), Ok(-9_900));
        assert_eq!(t("0.0825"), Ok(825));
        assert_eq!(t("007.10"), Ok(71_000));
        for bad in [
            "",
            "-",
            ".5",
            "1.",
            "1.23456",
            "1e3",
            "+1",
            "1,5",
            "12345678901234",
        ] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} was read");
        }
    }

    #[test]
    fn amounts_are_written_with_two_places_or_more() {
        let w = |v| Amount::from_ten_thousandths(v).to_string();
        assert_eq!(w(125_000), "12.50");
        assert_eq!(w(825), "0.0825");
        assert_eq!(w(-30_000), "-3.00");
        assert_eq!(w(0), "0.00");
        assert_eq!(w(-5), "-0.0005");
    }

    proptest! {
        #[test]
        fn written_amounts_read_back(v in -10_i64.pow(17)..10_i64.pow(17)) {
            let a = Amount::from_ten_thousandths(v);
            prop_assert_eq!(Amount::parse(&a.to_string()), Ok(a));
        }

        /// Any text is read or refused, never a panic; what is read is what was written.
        #[test]
        fn any_text_is_read_or_refused(text in "[-0-9.eE+ ]{0,24}|\\PC{0,24}") {
            if let Ok(a) = Amount::parse(&text) {
                let back: f64 = a.to_string().parse().unwrap_or(f64::NAN);
                let given: f64 = text.parse().unwrap_or(f64::NAN);
                prop_assert!((back - given).abs() < 1e-9 * given.abs().max(1.0), "{} read as {}", text, a);
            }
        }
    }
}
