//! IRC: chatd's rooms as IRC channels.

pub mod cap;
pub mod chathistory;
pub mod ctcp;
pub mod isupport;
pub mod message;
pub mod nick;
pub mod numeric;
pub mod sasl;
