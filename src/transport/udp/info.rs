//! The UDP `#info#` request: answered with the server's description in one datagram, without
//! joining. The answer goes to whatever source the datagram claims, so it obeys the rules for
//! every unsolicited reply: never more than [`AMPLIFICATION_LIMIT`] times the request's bytes, a
//! per-source rate, and the global reply budget.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{Guard, Peers, AMPLIFICATION_LIMIT};
use crate::hub::Hub;
use crate::info;

/// What to send back for a request of `size` bytes when the description is `document` (a line
/// with its end): the description if it fits, else a hint saying how big the request must be, if
/// that fits; else nothing.
pub(super) fn reply(document: &[u8], size: usize) -> Option<Vec<u8>> {
    let allowed = AMPLIFICATION_LIMIT.saturating_mul(size);
    if document.len() <= allowed {
        return Some(document.to_vec());
    }
    let needed = document.len().div_ceil(AMPLIFICATION_LIMIT);
    let hint = format!("! pad #info# to {needed} bytes\n").into_bytes();
    (hint.len() <= allowed).then_some(hint)
}

/// Answers an `#info#` datagram of `size` bytes from `from`, if its source is not banned and
/// within its rate.
pub(super) fn answer(
    socket: &UdpSocket,
    hub: &Hub,
    peers: &Peers,
    guard: &mut Guard,
    (from, local): (SocketAddr, Option<IpAddr>),
    size: usize,
) {
    let now = Instant::now();
    if peers.lock().is_banned(&from, now) {
        return;
    }
    if !guard.info_rate.admit(from.ip(), now) {
        return;
    }
    if let Some(reply) = reply(&info::line(hub), size) {
        guard.send_unsolicited(socket, &reply, (from, local), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_never_more_than_three_times_the_request() {
        let document = vec![b'x'; 300];
        assert_eq!(reply(&document, 100), Some(document.clone()));
        let hint = reply(&document, 99).expect("a hint fits in 297 bytes");
        assert_eq!(hint, b"! pad #info# to 100 bytes\n");
        // The hint itself obeys the limit: a bare request gets nothing.
        assert_eq!(reply(&document, 6), None);
        for size in 0..400 {
            if let Some(answer) = reply(&document, size) {
                assert!(answer.len() <= 3 * size);
            }
        }
    }
}
