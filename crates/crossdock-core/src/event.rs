//! The event envelope: CloudEvents 1.0 (structured JSON mode), parsed and validated once, here.
//!
//! `parse_event_batch` turns the raw bytes of a request body into validated [`NewEvent`]s or into a
//! [`ParseRejection`] that says what is wrong and where (as JSON pointers). Nothing downstream
//! re-checks an event: a `NewEvent` is valid by construction.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::time::Timestamp;

/// The only CloudEvents `specversion` crossdock speaks.
pub const SPEC_VERSION: &str = "1.0";

const ID_LEN_MAX: usize = 256;
const SOURCE_LEN_MAX: usize = 1024;
const TYPE_LEN_MAX: usize = 256;
const SUBJECT_LEN_MAX: usize = 1024;
const CONTENT_TYPE_LEN_MAX: usize = 256;
const DATASCHEMA_LEN_MAX: usize = 1024;
const EXTENSIONS_COUNT_MAX: usize = 32;
const EXTENSION_NAME_LEN_MAX: usize = 20;
const EXTENSION_VALUE_LEN_MAX: usize = 1024;
/// A rejection lists at most this many problems; the rest are summarized in one line.
const FIELD_ERRORS_MAX: usize = 100;

/// Bounds applied while parsing a batch.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub batch_events_max: usize,
    pub event_data_bytes_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            batch_events_max: 1000,
            event_data_bytes_max: 256 * 1024,
        }
    }
}

/// The `data` of an event, kept exactly as it arrived.
#[derive(Clone, Debug)]
pub enum EventData {
    /// Any JSON value, as its raw text.
    Json(Box<RawValue>),
    /// The `data_base64` member: binary data in base64.
    Base64(String),
}

impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (EventData::Json(a), EventData::Json(b)) => a.get() == b.get(),
            (EventData::Base64(a), EventData::Base64(b)) => a == b,
            _ => false,
        }
    }
}

impl EventData {
    /// The stored text: raw JSON for `Json`, the base64 string for `Base64`.
    pub fn as_text(&self) -> &str {
        match self {
            EventData::Json(raw) => raw.get(),
            EventData::Base64(text) => text,
        }
    }

    pub fn is_base64(&self) -> bool {
        matches!(self, EventData::Base64(_))
    }

    /// Rebuilds stored data; `None` if the stored JSON text is not valid JSON any more.
    pub fn from_stored(text: String, base64: bool) -> Option<Self> {
        if base64 {
            Some(EventData::Base64(text))
        } else {
            RawValue::from_string(text).ok().map(EventData::Json)
        }
    }
}

/// A validated event on its way into the log.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    id: String,
    source: String,
    kind: String,
    subject: Option<String>,
    time: Option<Timestamp>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    data: Option<EventData>,
    extensions: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

impl NewEvent {
    /// Builds an event inside crossdock (not from a request); the same rules apply.
    pub fn new(
        id: &str,
        source: &str,
        kind: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<Self, FieldError> {
        check_text("/id", id, ID_LEN_MAX)?;
        check_uri_reference("/source", source, SOURCE_LEN_MAX)?;
        check_text("/type", kind, TYPE_LEN_MAX)?;
        let data = match data {
            Some(value) => {
                let raw = serde_json::value::to_raw_value(value)
                    .map_err(|e| FieldError::new("/data", e.to_string()))?;
                Some(EventData::Json(raw))
            }
            None => None,
        };
        Ok(NewEvent {
            id: id.to_owned(),
            source: source.to_owned(),
            kind: kind.to_owned(),
            subject: None,
            time: None,
            datacontenttype: data.as_ref().map(|_| "application/json".to_owned()),
            dataschema: None,
            data,
            extensions: None,
            correlation_id: None,
            causation_id: None,
        })
    }

    pub fn with_subject(mut self, subject: &str) -> Result<Self, FieldError> {
        check_text("/subject", subject, SUBJECT_LEN_MAX)?;
        self.subject = Some(subject.to_owned());
        Ok(self)
    }

    pub fn with_time(mut self, time: Timestamp) -> Self {
        self.time = Some(time);
        self
    }

    /// Sets the correlation id unless the event already carries its own.
    pub fn correlate(&mut self, correlation_id: &str) {
        if self.correlation_id.is_none() {
            self.correlation_id = Some(correlation_id.to_owned());
        }
    }

    /// Replaces the data (used when reading events back from storage).
    pub fn with_data(mut self, data: EventData) -> Self {
        self.data = Some(data);
        self
    }

    pub fn with_causation(mut self, causation_id: &str) -> Self {
        self.causation_id = Some(causation_id.to_owned());
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    /// The CloudEvents `type` attribute.
    pub fn kind(&self) -> &str {
        &self.kind
    }
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    pub fn time(&self) -> Option<Timestamp> {
        self.time
    }
    pub fn datacontenttype(&self) -> Option<&str> {
        self.datacontenttype.as_deref()
    }
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }
    pub fn data(&self) -> Option<&EventData> {
        self.data.as_ref()
    }
    /// Extension attributes other than the correlation and causation ids, as a JSON object text.
    pub fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
    pub fn causation_id(&self) -> Option<&str> {
        self.causation_id.as_deref()
    }

    /// Reassembles an event read back from storage. The store only hands back what it was given,
    /// so the attributes are trusted; data that no longer parses is reported by the caller.
    #[allow(clippy::too_many_arguments)]
    pub fn from_stored(
        id: String,
        source: String,
        kind: String,
        subject: Option<String>,
        time: Option<Timestamp>,
        datacontenttype: Option<String>,
        dataschema: Option<String>,
        data: Option<EventData>,
        extensions: Option<String>,
        correlation_id: Option<String>,
        causation_id: Option<String>,
    ) -> Self {
        NewEvent {
            id,
            source,
            kind,
            subject,
            time,
            datacontenttype,
            dataschema,
            data,
            extensions,
            correlation_id,
            causation_id,
        }
    }
}

/// An event as the log holds it: the envelope plus its position and when it was recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub recorded_at: Timestamp,
    pub event: NewEvent,
}

impl Serialize for StoredEvent {
    /// The feed form: a CloudEvent in structured JSON mode with `seq` and `recordedtime` added.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = &self.event;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", SPEC_VERSION)?;
        map.serialize_entry("id", &e.id)?;
        map.serialize_entry("source", &e.source)?;
        map.serialize_entry("type", &e.kind)?;
        if let Some(subject) = &e.subject {
            map.serialize_entry("subject", subject)?;
        }
        if let Some(time) = e.time {
            map.serialize_entry("time", &time.to_string())?;
        }
        if let Some(ct) = &e.datacontenttype {
            map.serialize_entry("datacontenttype", ct)?;
        }
        if let Some(schema) = &e.dataschema {
            map.serialize_entry("dataschema", schema)?;
        }
        if let Some(ext) = &e.extensions {
            // Extensions were validated as a flat JSON object when the event was accepted.
            if let Ok(members) = serde_json::from_str::<Vec<(String, Box<RawValue>)>>(ext) {
                for (name, value) in members {
                    map.serialize_entry(&name, &value)?;
                }
            }
        }
        if let Some(c) = &e.correlation_id {
            map.serialize_entry("correlationid", c)?;
        }
        if let Some(c) = &e.causation_id {
            map.serialize_entry("causationid", c)?;
        }
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("recordedtime", &self.recorded_at.to_string())?;
        match &e.data {
            Some(EventData::Json(raw)) => map.serialize_entry("data", raw)?,
            Some(EventData::Base64(text)) => map.serialize_entry("data_base64", text)?,
            None => {}
        }
        map.end()
    }
}

/// One problem with one member of the input, located by a JSON pointer (RFC 6901).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.detail)
    }
}

/// Why a request body was not accepted as events. Nothing of a rejected body reaches the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseRejection {
    #[error("the body is not valid UTF-8 (first invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("the body is empty; send one CloudEvent object or an array of them")]
    Empty,
    #[error("the body is not valid JSON: {detail} at line {line}, column {column}")]
    Malformed {
        detail: String,
        line: usize,
        column: usize,
    },
    #[error("the body must be a CloudEvent object or an array of CloudEvent objects, not {found}")]
    NotAnEvent { found: &'static str },
    #[error("the batch is empty; send at least one event")]
    EmptyBatch,
    #[error("the batch has {count} events; at most {max} are accepted in one request")]
    BatchTooLarge { count: usize, max: usize },
    #[error("{} invalid attribute(s); the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<FieldError>),
}

/// Parses a request body holding one CloudEvent object or a JSON array of them.
///
/// All-or-nothing: if any event is invalid, every problem found (up to a bound) is reported and
/// no event is returned.
pub fn parse_event_batch(
    body: &[u8],
    limits: &BatchLimits,
) -> Result<Vec<NewEvent>, ParseRejection> {
    let text = std::str::from_utf8(body).map_err(|e| ParseRejection::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    let mut errors = Vec::new();
    let events = match first {
        None => return Err(ParseRejection::Empty),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(malformed)?;
            if items.is_empty() {
                return Err(ParseRejection::EmptyBatch);
            }
            if items.len() > limits.batch_events_max {
                return Err(ParseRejection::BatchTooLarge {
                    count: items.len(),
                    max: limits.batch_events_max,
                });
            }
            let mut events = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let prefix = format!("/{index}");
                if let Some(event) = parse_one(item, &prefix, limits, &mut errors) {
                    events.push(event);
                }
            }
            events
        }
        Some(b'{') => {
            let item: &RawValue = serde_json::from_str(text).map_err(malformed)?;
            parse_one(item, "", limits, &mut errors)
                .into_iter()
                .collect()
        }
        Some(_) => {
            // Valid JSON of the wrong shape gets a shape error; anything else a syntax error.
            let value: serde_json::Value = serde_json::from_str(text).map_err(malformed)?;
            return Err(ParseRejection::NotAnEvent {
                found: json_kind(&value),
            });
        }
    };
    if errors.is_empty() {
        Ok(events)
    } else {
        if errors.len() > FIELD_ERRORS_MAX {
            let more = errors.len() - FIELD_ERRORS_MAX;
            errors.truncate(FIELD_ERRORS_MAX);
            errors.push(FieldError::new("", format!("and {more} more problem(s)")));
        }
        Err(ParseRejection::Invalid(errors))
    }
}

fn malformed(e: serde_json::Error) -> ParseRejection {
    // serde_json appends " at line L column C" to its message; keep only the description.
    let full = e.to_string();
    let detail = match full.rfind(" at line ") {
        Some(cut) => full[..cut].to_owned(),
        None => full,
    };
    ParseRejection::Malformed {
        detail,
        line: e.line(),
        column: e.column(),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn raw_kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A member name that borrows from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The members of one JSON object, in order, values unparsed.
struct Members<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Reads a JSON string value, borrowing when it has no escapes. `None` if it is not a string.
fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

fn parse_one(
    raw: &RawValue,
    prefix: &str,
    limits: &BatchLimits,
    errors: &mut Vec<FieldError>,
) -> Option<NewEvent> {
    let members: Members<'_> = match serde_json::from_str(raw.get()) {
        Ok(m) => m,
        Err(_) => {
            let at = if prefix.is_empty() { "/" } else { prefix };
            errors.push(FieldError::new(
                at,
                format!("must be a CloudEvent object, not {}", raw_kind(raw)),
            ));
            return None;
        }
    };
    let errors_before = errors.len();
    let mut specversion = None;
    let mut id = None;
    let mut source = None;
    let mut kind = None;
    let mut subject = None;
    let mut time = None;
    let mut datacontenttype = None;
    let mut dataschema = None;
    let mut data = None;
    let mut data_base64 = None;
    let mut correlation_id = None;
    let mut causation_id = None;
    let mut extensions: Vec<(&str, &RawValue)> = Vec::new();
    let mut seen: Vec<&str> = Vec::with_capacity(members.0.len());

    for (key, value) in &members.0 {
        let name: &str = &key.0;
        let at = || format!("{prefix}/{}", escape_pointer(name));
        if seen.contains(&name) {
            errors.push(FieldError::new(at(), "appears more than once"));
            continue;
        }
        seen.push(name);
        // `null` for an optional attribute means it is absent.
        let is_null = value.get() == "null";
        match name {
            "specversion" => specversion = Some(*value),
            "id" => id = string_attr(value, &at(), ID_LEN_MAX, errors),
            "source" => source = string_attr(value, &at(), SOURCE_LEN_MAX, errors),
            "type" => kind = string_attr(value, &at(), TYPE_LEN_MAX, errors),
            "subject" if !is_null => {
                subject = string_attr(value, &at(), SUBJECT_LEN_MAX, errors);
            }
            "time" if !is_null => {
                if let Some(text) = string_attr(value, &at(), 64, errors) {
                    match Timestamp::parse_rfc3339(&text) {
                        Ok(ts) => time = Some(ts),
                        Err(why) => errors.push(FieldError::new(at(), why)),
                    }
                }
            }
            "datacontenttype" if !is_null => {
                datacontenttype = string_attr(value, &at(), CONTENT_TYPE_LEN_MAX, errors);
            }
            "dataschema" if !is_null => {
                if let Some(text) = string_attr(value, &at(), DATASCHEMA_LEN_MAX, errors) {
                    match check_uri(&at(), &text) {
                        Ok(()) => dataschema = Some(text),
                        Err(e) => errors.push(e),
                    }
                }
            }
            "data" => {
                if value.get().len() > limits.event_data_bytes_max {
                    errors.push(FieldError::new(
                        at(),
                        format!(
                            "is {} bytes; at most {} bytes are accepted",
                            value.get().len(),
                            limits.event_data_bytes_max
                        ),
                    ));
                } else {
                    data = Some(*value);
                }
            }
            "data_base64" if !is_null => {
                if value.get().len() > limits.event_data_bytes_max {
                    errors.push(FieldError::new(
                        at(),
                        format!("is larger than {} bytes", limits.event_data_bytes_max),
                    ));
                } else if let Some(text) = raw_str(value) {
                    if is_base64(&text) {
                        data_base64 = Some(text.into_owned());
                    } else {
                        errors.push(FieldError::new(at(), "must be base64 (RFC 4648)"));
                    }
                } else {
                    errors.push(FieldError::new(
                        at(),
                        format!("must be a base64 string, not {}", raw_kind(value)),
                    ));
                }
            }
            "correlationid" if !is_null => {
                correlation_id = string_attr(value, &at(), 128, errors);
            }
            "causationid" if !is_null => {
                causation_id = string_attr(value, &at(), ID_LEN_MAX, errors);
            }
            "subject" | "time" | "datacontenttype" | "dataschema" | "data_base64"
            | "correlationid" | "causationid" => {}
            "seq" | "recordedtime" => errors.push(FieldError::new(
                at(),
                "is assigned by crossdock when the event is recorded and cannot be sent",
            )),
            _ => {
                if let Err(e) = check_extension(name, value, &at()) {
                    errors.push(e);
                } else if !is_null {
                    extensions.push((name, *value));
                }
            }
        }
    }

    let at = |name: &str| format!("{prefix}/{name}");
    match specversion {
        None => errors.push(FieldError::new(
            at("specversion"),
            "is required and must be \"1.0\"",
        )),
        Some(v) => match raw_str(v) {
            Some(s) if s == SPEC_VERSION => {}
            Some(s) => errors.push(FieldError::new(
                at("specversion"),
                format!("must be \"1.0\", got {s:?}; only CloudEvents 1.0 is supported"),
            )),
            None => errors.push(FieldError::new(
                at("specversion"),
                format!("must be the string \"1.0\", not {}", raw_kind(v)),
            )),
        },
    }
    for (name, present) in [
        ("id", id.is_some()),
        ("source", source.is_some()),
        ("type", kind.is_some()),
    ] {
        let already = errors
            .iter()
            .skip(errors_before)
            .any(|e| e.pointer == at(name));
        if !present && !already {
            errors.push(FieldError::new(at(name), "is required"));
        }
    }
    if let Some(Err(e)) = source
        .as_ref()
        .map(|src| check_uri_reference(&at("source"), src, SOURCE_LEN_MAX))
    {
        errors.push(e);
    }
    if data.is_some() && data_base64.is_some() {
        errors.push(FieldError::new(
            at("data_base64"),
            "must not be sent together with data",
        ));
    }
    if extensions.len() > EXTENSIONS_COUNT_MAX {
        errors.push(FieldError::new(
            prefix.to_owned(),
            format!(
                "has {} extension attributes; at most {EXTENSIONS_COUNT_MAX} are accepted",
                extensions.len()
            ),
        ));
    }
    if errors.len() > errors_before {
        return None;
    }

    let data = match (data, data_base64) {
        (Some(raw), _) => Some(EventData::Json(raw.to_owned())),
        (None, Some(b64)) => Some(EventData::Base64(b64)),
        (None, None) => None,
    };
    let extensions = if extensions.is_empty() {
        None
    } else {
        // Stored as an array of [name, value] pairs: it keeps order and reads back cheaply.
        let pairs: Vec<(&str, &RawValue)> = extensions;
        serde_json::to_string(&pairs).ok()
    };
    Some(NewEvent {
        id: id?.into_owned(),
        source: source?.into_owned(),
        kind: kind?.into_owned(),
        subject: subject.map(Cow::into_owned),
        time,
        datacontenttype: datacontenttype.map(Cow::into_owned),
        dataschema: dataschema.map(Cow::into_owned),
        data,
        extensions,
        correlation_id: correlation_id.map(Cow::into_owned),
        causation_id: causation_id.map(Cow::into_owned),
    })
}

fn string_attr<'a>(
    value: &'a RawValue,
    at: &str,
    len_max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Cow<'a, str>> {
    let Some(text) = raw_str(value) else {
        errors.push(FieldError::new(
            at,
            format!("must be a string, not {}", raw_kind(value)),
        ));
        return None;
    };
    match check_text(at, &text, len_max) {
        Ok(()) => Some(text),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn check_text(at: &str, text: &str, len_max: usize) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(at, "must not be empty"));
    }
    if text.len() > len_max {
        return Err(FieldError::new(
            at,
            format!(
                "is {} bytes long; at most {len_max} are accepted",
                text.len()
            ),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(at, "must not contain control characters"));
    }
    Ok(())
}

fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

fn check_uri_reference(at: &str, text: &str, len_max: usize) -> Result<(), FieldError> {
    check_text(at, text, len_max)?;
    if let Some(pos) = text.bytes().position(|b| !is_uri_char(b)) {
        return Err(FieldError::new(
            at,
            format!(
                "must be a URI-reference (RFC 3986); the character at byte {pos} is not allowed \
                 (percent-encode it)"
            ),
        ));
    }
    Ok(())
}

fn check_uri(at: &str, text: &str) -> Result<(), FieldError> {
    check_uri_reference(at, text, DATASCHEMA_LEN_MAX)?;
    let scheme_ok = text.split_once(':').is_some_and(|(scheme, _)| {
        let mut bytes = scheme.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if scheme_ok {
        Ok(())
    } else {
        Err(FieldError::new(
            at,
            "must be an absolute URI with a scheme, such as https://…",
        ))
    }
}

fn check_extension(name: &str, value: &RawValue, at: &str) -> Result<(), FieldError> {
    let name_ok = !name.is_empty()
        && name.len() <= EXTENSION_NAME_LEN_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !name_ok {
        return Err(FieldError::new(
            at,
            "is not a CloudEvents attribute; extension attribute names are 1 to 20 lowercase \
             letters or digits",
        ));
    }
    match value.get().as_bytes().first() {
        Some(b'{' | b'[') => Err(FieldError::new(
            at,
            format!(
                "extension attributes must be a string, number or boolean, not {}",
                raw_kind(value)
            ),
        )),
        _ if value.get().len() > EXTENSION_VALUE_LEN_MAX => Err(FieldError::new(
            at,
            format!("is longer than {EXTENSION_VALUE_LEN_MAX} bytes"),
        )),
        _ => Ok(()),
    }
}

fn is_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Escapes a member name for use in a JSON pointer (RFC 6901).
fn escape_pointer(name: &str) -> Cow<'_, str> {
    if name.contains(['~', '/']) {
        Cow::Owned(name.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(body: &str) -> Result<Vec<NewEvent>, ParseRejection> {
        parse_event_batch(body.as_bytes(), &BatchLimits::default())
    }

    fn problems(body: &str) -> Vec<String> {
        match parse(body) {
            Err(ParseRejection::Invalid(errors)) => {
                errors.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected attribute errors, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"specversion":"1.0","id":"e-1","source":"/wms/east","type":"inventory.adjusted","time":"2026-11-26T10:00:00Z","data":{"sku":"A-1","delta":-2}}"#;

    #[test]
    fn a_single_event_is_parsed_with_its_raw_data() {
        let events = parse(GOOD).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.id(), e.source(), e.kind()),
            ("e-1", "/wms/east", "inventory.adjusted")
        );
        assert_eq!(e.time().unwrap().to_string(), "2026-11-26T10:00:00Z");
        assert_eq!(e.data().unwrap().as_text(), r#"{"sku":"A-1","delta":-2}"#);
    }

    #[test]
    fn a_batch_keeps_order_and_extensions() {
        let body = format!(
            r#"[{GOOD}, {{"specversion":"1.0","id":"e-2","source":"/wms/east","type":"t","partitionkey":"A-1","correlationid":"c-9"}}]"#
        );
        let events = parse(&body).unwrap();
        assert_eq!(events[1].id(), "e-2");
        assert_eq!(events[1].extensions(), Some(r#"[["partitionkey","A-1"]]"#));
        assert_eq!(events[1].correlation_id(), Some("c-9"));
    }

    #[test]
    fn missing_and_wrong_attributes_are_each_named() {
        check(
            r#"{"id":"1","source":"/s","type":"t"}"#,
            &["/specversion: is required and must be \"1.0\""],
        );
        check(
            r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#,
            &["/specversion: must be \"1.0\", got \"0.3\"; only CloudEvents 1.0 is supported"],
        );
        check(
            r#"[{"specversion":"1.0","source":"/s","type":"t"},{"specversion":"1.0","id":7,"source":"/s","type":"t"}]"#,
            &[
                "/0/id: is required",
                "/1/id: must be a string, not a number",
            ],
        );
        check(
            r#"{"specversion":"1.0","id":"","source":"has space","type":"t","time":"noon"}"#,
            &[
                "/id: must not be empty",
                "/time: not an RFC 3339 timestamp",
                "/source: must be a URI-reference (RFC 3986); the character at byte 3 is not allowed",
            ],
        );
        check(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#,
            &["/data_base64: must not be sent together with data"],
        );
        check(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad-Name":1,"nested":{}}"#,
            &[
                "/Bad-Name: is not a CloudEvents attribute",
                "/nested: extension attributes must be a string, number or boolean, not an object",
            ],
        );
        check(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","seq":5}"#,
            &["/seq: is assigned by crossdock"],
        );
    }

    fn check(body: &str, expected_prefixes: &[&str]) {
        let got = problems(body);
        assert_eq!(got.len(), expected_prefixes.len(), "{got:#?}");
        for expected in expected_prefixes {
            assert!(
                got.iter().any(|g| g.starts_with(expected)),
                "missing {expected:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn body_level_problems_are_reported_before_events() {
        assert_eq!(parse(""), Err(ParseRejection::Empty));
        assert_eq!(parse("[]"), Err(ParseRejection::EmptyBatch));
        assert_eq!(
            parse("42"),
            Err(ParseRejection::NotAnEvent { found: "a number" })
        );
        assert!(matches!(
            parse(r#"{"specversion":"1.0","#),
            Err(ParseRejection::Malformed { line: 1, .. })
        ));
        assert_eq!(
            parse_event_batch(b"[\"\xff\"]", &BatchLimits::default()),
            Err(ParseRejection::NotUtf8 { offset: 2 })
        );
        let limits = BatchLimits {
            batch_events_max: 1,
            ..BatchLimits::default()
        };
        assert_eq!(
            parse_event_batch(format!("[{GOOD},{GOOD}]").as_bytes(), &limits),
            Err(ParseRejection::BatchTooLarge { count: 2, max: 1 })
        );
    }

    #[test]
    fn the_feed_form_round_trips_through_the_parser() {
        let original = parse(
            r#"{"specversion":"1.0","id":"x","source":"/s","type":"t","subject":"A-1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","data_base64":"AAE="}"#,
        )
        .unwrap()
        .remove(0);
        let stored = StoredEvent {
            seq: 7,
            recorded_at: Timestamp::from_unix_micros(1),
            event: original.clone(),
        };
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["data_base64"], "AAE=");
        let mut obj = json.as_object().unwrap().clone();
        obj.remove("seq");
        obj.remove("recordedtime");
        let again = parse(&serde_json::to_string(&obj).unwrap())
            .unwrap()
            .remove(0);
        assert_eq!(again, original);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_event_batch(&body, &BatchLimits::default());
        }

        #[test]
        fn arbitrary_attribute_values_never_panic(id in ".*", source in ".*", kind in ".*") {
            let body = serde_json::json!({"specversion": "1.0", "id": id, "source": source, "type": kind});
            let _ = parse(&body.to_string());
        }
    }
}
