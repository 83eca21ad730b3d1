//! Transports: thin adapters that frame bytes off a socket and hand them to a [`crate::member`],
//! and carry the room's lines back out.

pub mod proxy;
pub mod tcp;
pub mod udp;
pub mod ws;
