//! Load generator for the benchmarks: drives a chat server (chatd, or `ncat --chat`, nats-server,
//! ngircd or InspIRCd as baselines) with many TCP clients and UDP peers, and measures delivery
//! rate, latency and loss.
//!
//! Pieces, usable on their own from benches and tests:
//! - [`msg`]: the fixed-size, timestamped message line and the scanner that finds it again.
//! - [`hist`]: a mergeable latency histogram.
//! - [`server`]: starting/stopping the server under test and recognising its greeting.
//! - [`conn`]: connecting clients that count only once greeted; source-address spreading.
//! - [`recv`], [`send`]: the per-client receive loop and the closed/open-loop senders.
//! - [`udp`]: every UDP peer's receive side on one epoll thread.
//! - [`case`]: one fan-out case end to end.
//! - [`capacity`]: the largest number of clients at which 95% of broadcasts reach everyone within
//!   250 ms, stepping up by 1,000 (websocket-shootout's capacity figure).
//! - [`idle`]: idle connections by the ten thousand, for memory per connection.
//! - [`ws`]: WebSocket members, bridged to plain streams for the web cases.
//! - [`tls`]: TLS members, bridged the same way for the TLS cases.
//! - [`nats`]: a nats-server with JetStream for the cluster cases.
//! - [`irc`]: the IRC client side (register, join, `PRIVMSG`, `PONG`); [`ircd`]: ngircd and
//!   InspIRCd, configured and started for the IRC cases.
//! - [`rooms`]: IRC members each in several channels, traffic in every one (several rooms per
//!   member against the same deliveries in single rooms).
//! - [`scale`]: the worker side of `cluster-scale` (idle members by the ten thousand, split over
//!   processes, timing each line to reach all of them).
//! - [`sys`]: CPU, memory, descriptor limits and UDP drop counters from the OS.

pub mod capacity;
pub mod case;
pub mod conn;
pub mod hist;
pub mod idle;
pub mod irc;
pub mod ircd;
pub mod msg;
pub mod nats;
pub mod recv;
pub mod rooms;
pub mod scale;
pub mod send;
pub mod server;
pub mod sys;
pub mod tls;
pub mod udp;
pub mod ws;

pub use case::{run_fanout, FanoutResult, FanoutSpec, FlowResult};
pub use hist::Histogram;
pub use idle::{run_idle, IdleResult, IdleSpec};
pub use server::{ServerKind, ServerProc};
