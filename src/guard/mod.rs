//! Guards against misbehaving peers, as state machines with the clock passed in so they are tested
//! without sockets or real time.
//! - [`limits`]: flood control (token bucket and policy).
//! - [`pacing`]: holds TCP senders back while readers that keep up fall behind.
//! - [`cookie`]: stateless UDP address validation.
//! - [`presence`]: the UDP heartbeat deadline table behind eviction.
//! - [`reply_budget`]: one global budget for UDP replies a forged source could trigger.
//! - [`source_rate`]: per-source limits for UDP requests from non-members (`#info#`).
//! - [`own_address`]: recognises datagrams claiming to come from the server itself.
//! - [`occupancy`]: connections held open (TLS handshakes, HTTP), in total and per address.
//! - [`share`]: whose share a connection counts against (IPv6 by prefix), rooms and joins per
//!   address.
//! - [`notices`]: join and leave notices paced per room.
//! - [`slots`]: the `--max-clients` limit, resizable while members hold slots.

pub mod cookie;
pub mod limits;
pub mod notices;
pub mod occupancy;
pub mod own_address;
pub mod pacing;
pub mod presence;
pub mod reply_budget;
pub mod share;
pub mod slots;
pub mod source_rate;
