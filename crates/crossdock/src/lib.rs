//! crossdock, the binary's library: configuration, the HTTP API, the runtime that follows the
//! event log and delivers actions, and the command line. The only crate that wires things
//! together.

pub mod app;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod edi;
pub mod edi_inbound;
pub mod explain;
pub mod http;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod orders;
pub mod postings;
pub mod returns;
pub mod runtime;
