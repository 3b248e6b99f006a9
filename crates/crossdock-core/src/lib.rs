//! The crossdock domain: the event envelope, ids, time values, retry policy and projections.
//!
//! This crate is pure. It does no IO, reads no clock and draws no random numbers: the current time
//! and any randomness arrive as arguments, so every decision it makes can be replayed and tested.

pub mod access;
pub mod activity;
pub mod catalog;
pub mod correlation;
pub mod event;
pub mod inventory;
pub mod json;
pub mod money;
pub mod order;
pub mod retry;
pub mod returns;
pub mod time;

pub use correlation::CorrelationId;
pub use event::{
    BatchLimits, EventData, FieldError, NewEvent, ParseRejection, StoredEvent, parse_event_batch,
};
pub use retry::{FailureDecision, RetryPolicy};
pub use time::Timestamp;
