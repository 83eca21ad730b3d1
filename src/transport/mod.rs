//! Transports: thin adapters that frame bytes off a socket and hand them to a [`crate::member`],
//! and carry the room's lines back out. [`stream`] is the member connection TCP, TLS and WebSocket
//! share; TLS ([`tls`]) is TCP's connection inside a TLS session.

pub mod info_port;
pub mod irc;
pub mod proxy;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;
