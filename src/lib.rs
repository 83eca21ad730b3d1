//! chatd: a chat relay that speaks TCP and UDP at once, so people can chat with plain netcat.
//!
//! Module map:
//! - [`server`]: binds the transports and runs them over one hub until shutdown.
//! - [`hub`]: the room (one broadcast channel of pre-formatted lines) and the member registry.
//! - [`member`]: one member's session, shared by both transports: chat and commands.
//! - [`protocol`]: pure parsing of incoming lines/datagrams and formatting of outgoing lines.
//! - [`codec`]: TCP line framing with a length cap (a tokio-util decoder).
//! - [`tcp`], [`udp`]: thin transport adapters over the hub.
//! - [`presence`]: the UDP heartbeat deadline table behind eviction.
//! - [`limits`]: flood control (token bucket and policy); [`cookie`]: UDP address validation.
//! - [`config`]: the `chatd` command line and server settings.
//! - [`client`]: the bundled async client behind `chatc`.
//! - [`load`]: a reusable load generator for the benchmarks.

pub mod client;
pub mod codec;
pub mod config;
pub mod cookie;
pub mod hub;
pub mod limits;
pub mod load;
pub mod member;
pub mod pacing;
pub mod presence;
pub mod protocol;
pub mod server;
pub mod tcp;
pub mod udp;
