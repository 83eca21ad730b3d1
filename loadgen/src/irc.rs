//! The IRC client side of the bench: registering (`NICK`/`USER`, then `JOIN #room`), framing a
//! message as `PRIVMSG #room :…`, and answering the server's `PING`. Relayed lines look like
//! `:nick!user@host PRIVMSG #room :m 3 17 …`, where [`crate::msg::scan_tokens`] finds the token
//! after the `:`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::conn::{converse, Turn};
use super::msg::MSG_LEN;

/// The channel every IRC client joins and sends to.
pub const CHANNEL: &str = "#room";

/// `PRIVMSG #room :`, what precedes each message's payload.
const PRIVMSG_HEAD: &[u8] = b"PRIVMSG #room :";

/// One message as an IRC line: `PRIVMSG #room :` + the 63-byte payload + `\r\n`.
pub type Privmsg = [u8; PRIVMSG_HEAD.len() + MSG_LEN + 1];

/// Most bytes read while registering: a big channel's `NAMES` reply is long (19 bytes a member
/// at most here), and others' joins arrive meanwhile.
const REGISTER_MAX: usize = 16 << 20;

/// A connection's write half, shared by its sender and by its reader, which answers `PING`.
pub type SharedWriter = Arc<Mutex<OwnedWriteHalf>>;

/// Frames one generated message line (ending in `\n`) as a `PRIVMSG` to [`CHANNEL`].
pub fn privmsg(line: &[u8; MSG_LEN]) -> Privmsg {
    let mut out = [0u8; PRIVMSG_HEAD.len() + MSG_LEN + 1];
    let (head, rest) = out.split_at_mut(PRIVMSG_HEAD.len());
    head.copy_from_slice(PRIVMSG_HEAD);
    rest[..MSG_LEN - 1].copy_from_slice(&line[..MSG_LEN - 1]);
    rest[MSG_LEN - 1..].copy_from_slice(b"\r\n");
    out
}

/// A nick no other client of this process has had: `c` and a number (every server here takes
/// up to 30 characters; ngircd is configured so).
pub fn next_nick() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("c{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Splits off an optional `:prefix ` and returns the command word and what follows it.
fn command(line: &[u8]) -> (&[u8], &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = match line.strip_prefix(b":") {
        Some(rest) => match memchr::memchr(b' ', rest) {
            Some(sp) => &rest[sp + 1..],
            None => &[],
        },
        None => line,
    };
    match memchr::memchr(b' ', line) {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &[]),
    }
}

/// The three digits of a numeric reply (`:server 001 nick …`), if `line` is one.
pub fn numeric(line: &[u8]) -> Option<[u8; 3]> {
    let (cmd, _) = command(line);
    match cmd {
        [a, b, c] if cmd.iter().all(u8::is_ascii_digit) => Some([*a, *b, *c]),
        _ => None,
    }
}

/// The `PONG` that answers `line` if it is a `PING` (with or without a source prefix).
pub fn pong_for(line: &[u8]) -> Option<Vec<u8>> {
    let (cmd, args) = command(line);
    if cmd != b"PING" {
        return None;
    }
    let mut pong = b"PONG ".to_vec();
    pong.extend_from_slice(args);
    pong.extend_from_slice(b"\r\n");
    Some(pong)
}

/// True if `line` ends the `NAMES` reply (366) for [`CHANNEL`]: the join is complete.
fn ends_names(line: &[u8]) -> bool {
    numeric(line) == Some(*b"366") && memchr::memmem::find(line, CHANNEL.as_bytes()).is_some()
}

/// Registers as `nick` on a fresh connection, waits for the welcome (001), joins [`CHANNEL`] and
/// waits for the end of its `NAMES` (366), answering `PING`s meanwhile. Refusals (an error numeric,
/// 400 and up but for 422's missing MOTD, or `ERROR`) end it with the server's line.
pub async fn register(stream: &mut TcpStream, nick: &str) -> Result<()> {
    let hello = format!("NICK {nick}\r\nUSER {nick} 0 * :bench client\r\n");
    stream.write_all(hello.as_bytes()).await?;
    let mut joined = false;
    converse(stream, REGISTER_MAX, |line| {
        Ok(if let Some(pong) = pong_for(line) {
            Turn::Reply(pong)
        } else if numeric(line) == Some(*b"001") && !joined {
            joined = true;
            Turn::Reply(format!("JOIN {CHANNEL}\r\n").into_bytes())
        } else if joined && ends_names(line) {
            // What came after it in this read is only more of the same join's replies.
            Turn::Done
        } else if numeric(line).is_some_and(|d| d[0] >= b'4' && d != *b"422")
            || line.starts_with(b"ERROR")
        {
            bail!("refused: {}", String::from_utf8_lossy(line).trim_end());
        } else {
            Turn::Wait
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{line, scan_tokens, Token};

    #[test]
    fn a_privmsg_carries_the_payload_and_scans_back_to_its_token() {
        let t = Token {
            sender: 3,
            seq: 17,
            sent_ns: 123_456_789,
        };
        let framed = privmsg(&line(t));
        assert!(framed.starts_with(b"PRIVMSG #room :m 3 17 123456789 xx"));
        assert!(framed.ends_with(b"xx\r\n"));
        // What a server relays: the sender's prefix, then the same text.
        let mut relayed = b":c5!chat@chatd ".to_vec();
        relayed.extend_from_slice(&framed[..framed.len() - 2]);
        let mut found = Vec::new();
        scan_tokens(&relayed, |t| found.push(t));
        assert_eq!(found, vec![t]);
    }

    #[test]
    fn pings_with_or_without_a_prefix_get_their_pong() {
        assert_eq!(
            pong_for(b"PING :irc.local\r").unwrap(),
            b"PONG :irc.local\r\n"
        );
        assert_eq!(
            pong_for(b":irc.local PING irc.local :x").unwrap(),
            b"PONG irc.local :x\r\n"
        );
        assert!(pong_for(b":c1!u@h PRIVMSG #room :PING").is_none());
        assert!(pong_for(b"PINGX").is_none());
    }

    #[test]
    fn numerics_and_the_end_of_names() {
        assert_eq!(numeric(b":irc.local 001 c1 :Welcome\r"), Some(*b"001"));
        assert_eq!(numeric(b":c1!u@h JOIN #room"), None);
        assert_eq!(numeric(b":irc.local 0011 c1"), None);
        assert_eq!(numeric(b"PING :x"), None);
        assert!(ends_names(
            b":irc.local 366 c1 #room :End of /NAMES list.\r"
        ));
        assert!(!ends_names(
            b":irc.local 366 c1 #other :End of /NAMES list."
        ));
        assert!(!ends_names(b":irc.local 353 c1 = #room :c1"));
    }

    #[test]
    fn nicks_are_unique_and_short() {
        let (a, b) = (next_nick(), next_nick());
        assert_ne!(a, b);
        assert!(a.starts_with('c') && a.len() <= 30);
    }
}
