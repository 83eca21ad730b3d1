//! IRC: chatd's rooms as IRC channels. The wire format, numerics, capabilities, nick mapping and
//! the other rules are pure modules tested without sockets; [`connection`] runs one client and
//! `session` maps its commands onto chatd's member and rooms.

pub mod cap;
pub mod chathistory;
mod connection;
pub mod ctcp;
pub mod deliver;
pub mod isupport;
pub mod label;
pub mod message;
pub mod nick;
pub mod numeric;
pub mod sasl;
mod session;
pub mod websocket;

pub use connection::{serve, serve_tls};
