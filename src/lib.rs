//! chatd: a chat relay that speaks TCP and UDP at once, so people can chat with plain netcat.
//!
//! Module map (data flows top-down; nothing below `hub` imports anything above it):
//! - [`server`]: binds the transports and runs them over one hub until shutdown.
//! - [`config`]: the `chatd` command line, the `--config` file and what a SIGHUP reload changes.
//! - `metrics`: the counters behind `/metrics`, cheap atomics the transports count into.
//! - [`web`]: the HTTP listener: the chat page, WebSocket members, health and info.
//! - [`transport`]: thin adapters (TCP, TLS, UDP, WebSocket) between sockets and members, and the
//!   PROXY protocol in front of them.
//! - [`member`]: one member's session, shared by every transport: chat and commands.
//! - `control`: what others ask of a member (kicks, kills, the end of a password check).
//! - `auth`: accounts, password hashing and attempt limits.
//! - `outbox`: where lines for one member go (a TCP queue or a UDP address).
//! - [`names`]: which member names are allowed and when two names are the same.
//! - [`hub`]: the room (one broadcast channel of pre-formatted lines) and the member registry.
//! - [`guard`]: flood control, room pacing, UDP cookies and heartbeat presence: state machines
//!   with the clock passed in.
//! - [`protocol`]: pure parsing of incoming lines/datagrams, formatting of outgoing lines, and TCP
//!   line framing.
//! - `info`: the server's description as one line of JSON (`/info`, UDP `#info#`).
//! - [`client`]: the bundled async client behind `chatc`.
//! - [`cluster`]: `--cluster`: nodes joined through NATS (room relay, presence, heartbeats).
//!
//! Modules shown without a link, and `room`, are internal to the crate: the binaries, tests and
//! benches need only the others.
//!
//! The load generator the benchmarks use is its own crate, `loadgen/`.

/// The version `--version` prints: the crate's, and the commit it was built from (`unknown`
/// outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CHATD_COMMIT"), ")");

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub(crate) mod control;
pub mod guard;
pub mod hub;
pub(crate) mod info;
pub(crate) mod member;
pub(crate) mod metrics;
pub mod names;
pub(crate) mod outbox;
pub mod protocol;
pub(crate) mod room;
pub mod server;
pub mod store;
pub mod transport;
pub mod web;
