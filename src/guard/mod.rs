//! Guards against misbehaving peers, as state machines with the clock passed in so they are tested
//! without sockets or real time.
//! - [`limits`]: flood control (token bucket and policy).
//! - [`pacing`]: holds TCP senders back while readers that keep up fall behind.
//! - [`cookie`]: stateless UDP address validation.
//! - [`presence`]: the UDP heartbeat deadline table behind eviction.

pub mod cookie;
pub mod limits;
pub mod pacing;
pub mod presence;
