//! Strict query-string parsing: every parameter is known, typed and bounded, and every problem
//! names the parameter.

use std::collections::BTreeMap;

use super::problem::Problem;

/// The parameters of one request, after checking that each is one the route accepts.
#[derive(Debug)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, Problem> {
        let mut params = BTreeMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name)
                .ok_or_else(|| Problem::parameter("/query", "is not valid percent-encoding"))?;
            let pointer = format!("/query/{name}");
            if !allowed.contains(&name.as_str()) {
                return Err(Problem::parameter(
                    &pointer,
                    format!(
                        "is not a parameter of this route; it accepts: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            let value = decode(value)
                .ok_or_else(|| Problem::parameter(&pointer, "is not valid percent-encoding"))?;
            if params.insert(name, value).is_some() {
                return Err(Problem::parameter(&pointer, "is given more than once"));
            }
        }
        Ok(Query(params))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// One of `names`, or `None` when absent: a misspelt value is a problem rather than an
    /// empty answer.
    pub fn one_of(&self, name: &str, names: &[&str]) -> Result<Option<&str>, Problem> {
        match self.text(name) {
            Some(value) if !names.contains(&value) => Err(Problem::parameter(
                &format!("/query/{name}"),
                format!(
                    "must be one of {}, got {:?}",
                    names.join(", "),
                    super::truncate(value, 64)
                ),
            )),
            value => Ok(value),
        }
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, Problem> {
        let Some(text) = self.0.get(name) else {
            return Ok(default);
        };
        match text.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(Problem::parameter(
                &format!("/query/{name}"),
                format!(
                    "must be an integer from {min} to {max}, got {:?}",
                    super::truncate(text, 64)
                ),
            )),
        }
    }

    /// An age in milliseconds: `older_than` as a duration (`90s`, `15m`, `4h`, `2d`), or
    /// `older_than_ms` as a number; 0 when neither is given, a problem when both are.
    pub fn age_ms(&self) -> Result<i64, Problem> {
        const MAX_MS: i64 = i64::MAX / 1000;
        let ms = self.int("older_than_ms", 0, 0, MAX_MS)?;
        let Some(text) = self.0.get("older_than") else {
            return Ok(ms);
        };
        if self.0.contains_key("older_than_ms") {
            return Err(Problem::parameter(
                "/query/older_than",
                "give older_than or older_than_ms, not both",
            ));
        }
        let ms = [
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
        ]
        .iter()
        .find_map(|(unit, unit_ms)| {
            let count: i64 = text.strip_suffix(unit)?.parse().ok()?;
            count.checked_mul(*unit_ms)
        });
        match ms {
            Some(ms) if (0..=MAX_MS).contains(&ms) => Ok(ms),
            _ => Err(Problem::parameter(
                "/query/older_than",
                format!(
                    "must be a duration such as 90s, 15m, 4h or 2d, got {:?}",
                    super::truncate(text, 64)
                ),
            )),
        }
    }
}

/// Percent-decodes a query component (`+` is a space). `None` if it is not valid UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_durations_or_milliseconds() {
        let age = |q: &str| {
            Query::parse(Some(q), &["older_than", "older_than_ms"]).and_then(|q| q.age_ms())
        };
        assert_eq!(age("older_than=90s").ok(), Some(90_000));
        assert_eq!(age("older_than=4h").ok(), Some(14_400_000));
        assert_eq!(age("older_than=2d").ok(), Some(172_800_000));
        assert_eq!(age("older_than_ms=5").ok(), Some(5));
        assert_eq!(age("").ok(), Some(0));
        for bad in [
            "older_than=5",
            "older_than=h",
            "older_than=5%C3%A9",
            "older_than=-1h",
            "older_than=1h&older_than_ms=1",
            "older_than=99999999999999999d",
        ] {
            assert!(age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_parameters_are_decoded_and_checked() {
        let q = Query::parse(
            Some("after=10&reason=customer+gone%21"),
            &["after", "reason"],
        )
        .unwrap();
        assert_eq!(q.int("after", 0, 0, 100).unwrap(), 10);
        assert_eq!(q.text("reason"), Some("customer gone!"));
        assert_eq!(q.int("limit", 7, 1, 10).unwrap(), 7);
    }

    #[test]
    fn problems_name_the_parameter() {
        let e = Query::parse(Some("afer=1"), &["after"]).unwrap_err();
        assert_eq!(e.errors[0].pointer, "/query/afer");
        let q = Query::parse(Some("after=-1"), &["after"]).unwrap();
        let e = q.int("after", 0, 0, 100).unwrap_err();
        assert!(e.detail.contains("from 0 to 100"), "{}", e.detail);
        assert!(Query::parse(Some("after=1&after=2"), &["after"]).is_err());
        assert!(Query::parse(Some("after=%zz"), &["after"]).is_err());
    }
}
