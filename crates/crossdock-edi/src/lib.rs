//! X12 EDI for crossdock: read, check, type, write and acknowledge interchanges.
//!
//! - [`reader`] splits bytes into [`Segment`]s — from a slice without copying, or from any `Read`
//!   in a bounded buffer — with the delimiters each interchange declares in its ISA.
//! - [`envelope`] checks interchanges, groups and sets as they stream (counts, control numbers,
//!   trailers) and hands their structure to a [`envelope::Handler`].
//! - [`sets`] types the transaction sets crossdock trades (846, 850, 855, 856, 810, 940, 944,
//!   945, 947, 997): each is read from its segments and written back byte for byte.
//! - [`ack`] builds the 997 for any functional group received; [`writer`] writes interchanges.
//!
//! Every problem found carries its [`problem::Position`] and what was expected and found. No
//! input makes this crate panic.

pub mod ack;
pub mod convert;
pub mod delimiters;
pub mod envelope;
pub mod generate;
#[doc(hidden)]
pub mod harness;
pub mod list;
pub mod problem;
pub mod read;
pub mod reader;
pub mod segment;
pub mod sets;
pub mod text;
pub mod writer;

pub use delimiters::Delimiters;
pub use list::List;
pub use problem::{Level, Position, Problem};
pub use segment::Segment;
pub use text::Text;
