//! Transports: thin adapters that frame bytes off a socket and hand them to a [`crate::member`],
//! and carry the room's lines back out. TLS ([`tls`]) is TCP's connection inside a TLS session.

pub mod info_port;
pub mod irc;
pub mod proxy;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;
