//! Reading JSON request bodies member by member, so that every problem is reported with a JSON
//! pointer to where it is, unknown members are errors, and nothing invalid gets further.

use serde_json::{Map, Value};

use crate::event::FieldError;

/// The largest magnitude of a quantity: integers beyond 2^53 do not survive a round trip
/// through JSON numbers in many clients.
pub const QUANTITY_ABS_MAX: i64 = 1 << 53;

/// A JSON object being read, collecting problems instead of stopping at the first.
#[derive(Debug)]
pub struct Fields<'a> {
    object: Option<&'a Map<String, Value>>,
    at: String,
    known: Vec<&'static str>,
    pub errors: &'a mut Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// Starts reading `value` at pointer `at`; records a problem if it is not an object.
    pub fn new(value: &'a Value, at: &str, errors: &'a mut Vec<FieldError>) -> Fields<'a> {
        let object = value.as_object();
        if object.is_none() {
            let pointer = if at.is_empty() { "/" } else { at };
            errors.push(FieldError::new(
                pointer,
                format!("must be a JSON object, not {}", kind(value)),
            ));
        }
        Fields {
            object,
            at: at.to_owned(),
            known: Vec::new(),
            errors,
        }
    }

    pub fn pointer(&self, name: &str) -> String {
        format!("{}/{name}", self.at)
    }

    fn get(&mut self, name: &'static str) -> Option<&'a Value> {
        self.known.push(name);
        self.object?.get(name).filter(|v| !v.is_null())
    }

    /// Records a problem with a member.
    pub fn problem(&mut self, name: &str, detail: impl Into<String>) {
        let pointer = self.pointer(name);
        self.errors.push(FieldError::new(pointer, detail));
    }

    /// A string member of 1 to `len_max` characters without control characters.
    pub fn string(&mut self, name: &'static str, required: bool, len_max: usize) -> Option<String> {
        let Some(value) = self.get(name) else {
            if required {
                self.problem(name, "is required");
            }
            return None;
        };
        let Some(text) = value.as_str() else {
            self.problem(name, format!("must be a string, not {}", kind(value)));
            return None;
        };
        match text_problem(text, len_max) {
            Some(problem) => {
                self.problem(name, problem);
                None
            }
            None => Some(text.to_owned()),
        }
    }

    /// A boolean member.
    pub fn bool(&mut self, name: &'static str) -> Option<bool> {
        let value = self.get(name)?;
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.problem(name, format!("must be true or false, not {}", kind(value)));
                None
            }
        }
    }

    /// An integer member within `min..=max` (and within ±2^53).
    pub fn int(&mut self, name: &'static str, required: bool, min: i64, max: i64) -> Option<i64> {
        let Some(value) = self.get(name) else {
            if required {
                self.problem(name, "is required");
            }
            return None;
        };
        let pointer = self.pointer(name);
        match integer(value, &pointer, min, max) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    /// An array member; each element is handed to `read` with its pointer.
    pub fn array<T>(
        &mut self,
        name: &'static str,
        required: bool,
        len_max: usize,
        mut read: impl FnMut(&'a Value, &str, &mut Vec<FieldError>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Some(value) = self.get(name) else {
            if required {
                self.problem(name, "is required");
            }
            return None;
        };
        let Some(items) = value.as_array() else {
            self.problem(name, format!("must be an array, not {}", kind(value)));
            return None;
        };
        if items.len() > len_max {
            self.problem(name, format!("must have at most {len_max} entries"));
            return None;
        }
        let base = self.pointer(name);
        let mut out = Vec::with_capacity(items.len());
        let mut failed = false;
        for (i, item) in items.iter().enumerate() {
            match read(item, &format!("{base}/{i}"), self.errors) {
                Some(v) => out.push(v),
                None => failed = true,
            }
        }
        (!failed).then_some(out)
    }

    /// A nested object member, read by `read`.
    pub fn object<T>(
        &mut self,
        name: &'static str,
        required: bool,
        read: impl FnOnce(&'a Value, &str, &mut Vec<FieldError>) -> Option<T>,
    ) -> Option<T> {
        let Some(value) = self.get(name) else {
            if required {
                self.problem(name, "is required");
            }
            return None;
        };
        let at = self.pointer(name);
        read(value, &at, self.errors)
    }

    /// Records every member that no reader asked for as unknown.
    pub fn finish(self) {
        let Some(object) = self.object else { return };
        for name in object.keys() {
            if !self.known.contains(&name.as_str()) {
                let detail = format!("is not a known member; expected {}", self.known.join(", "));
                self.errors
                    .push(FieldError::new(format!("{}/{name}", self.at), detail));
            }
        }
    }
}

/// What is wrong with a string member's text, if anything: it must hold 1 to `len_max`
/// characters, not all spaces, none of them control characters.
pub fn text_problem(text: &str, len_max: usize) -> Option<String> {
    if text.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if text.chars().count() > len_max {
        Some(format!("must be at most {len_max} characters"))
    } else if text.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    }
}

/// Reads an integer in `min..=max`, refusing fractions, strings and values beyond ±2^53.
pub fn integer(value: &Value, at: &str, min: i64, max: i64) -> Result<i64, FieldError> {
    let n = match value {
        Value::Number(n) => n.as_i64().filter(|n| n.abs() <= QUANTITY_ABS_MAX),
        _ => {
            return Err(FieldError::new(
                at,
                format!("must be an integer, not {}", kind(value)),
            ));
        }
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(FieldError::new(at, format!("must be from {min} to {max}"))),
        None => Err(FieldError::new(
            at,
            "must be a whole number no larger than 2^53 in magnitude",
        )),
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problems_point_at_their_members_and_unknown_members_are_named() {
        let value = json!({"name": 5, "count": 1.5, "big": 9007199254740993i64, "extra": true});
        let mut errors = Vec::new();
        let mut f = Fields::new(&value, "/item", &mut errors);
        assert_eq!(f.string("name", true, 10), None);
        assert_eq!(f.int("count", true, 0, 10), None);
        assert_eq!(f.int("big", true, 0, i64::MAX), None);
        assert_eq!(f.string("missing", true, 10), None);
        f.finish();
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "/item/name: must be a string, not a number",
                "/item/count: must be a whole number no larger than 2^53 in magnitude",
                "/item/big: must be a whole number no larger than 2^53 in magnitude",
                "/item/missing: is required",
                "/item/extra: is not a known member; expected name, count, big, missing",
            ]
        );
    }
}
