//! The integration tests of the `crossdock` binary: the real application on port 0 with a fresh
//! database per test (SQLite always, PostgreSQL when `CROSSDOCK_TEST_POSTGRES_URL` is set), and
//! real processes for the crash tests.

mod catalog;
mod cli;
mod crash;
mod delivery;
mod edi;
mod events;
mod governance;
mod helpers;
mod inventory;
mod orders;
