//! chatd: a chat relay that speaks TCP and UDP at once, so people can chat with plain netcat.
//!
//! Module map:
//! - [`protocol`]: pure parsing of incoming lines/datagrams and formatting of outgoing lines (no I/O).
//! - [`client`]: the bundled async client behind `chatc`.
//! - [`load`]: a reusable load generator for the benchmarks.

pub mod client;
pub mod load;
pub mod protocol;
