//! IRC: chatd's rooms as IRC channels.

pub mod cap;
mod connection;
pub mod ctcp;
pub mod deliver;
pub mod isupport;
pub mod message;
pub mod nick;
pub mod numeric;
mod session;

pub use connection::serve;
