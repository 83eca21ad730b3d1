//! The benchmark's message line and the scanner that finds it again in whatever a server relays.
//!
//! A message is one fixed-size line `m SENDER SEQ SENT_NS xxxx…\n`. The receiver does not rely on
//! where the line starts: chatd prefixes `<NAME> `, ncat prefixes each read chunk (so a prefix may
//! be missing or sit in the middle of a line), hence tokens are searched anywhere in a line.

/// Size of every generated message line, newline included (the issue asks for 64-byte messages).
pub const MSG_LEN: usize = 64;

/// What a message carries: who sent it, its number, and when (ns since the generator's base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Sender index, unique within one benchmark case.
    pub sender: u32,
    /// Per-sender sequence number, from 0.
    pub seq: u32,
    /// Send time in nanoseconds since the generator's common `Instant` base.
    pub sent_ns: u64,
}

/// Writes `v` in decimal at `out[pos..]`, returning the position after it.
fn put_u64(out: &mut [u8], mut pos: usize, v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut rest = v;
    loop {
        digits[n] = b'0' + (rest % 10) as u8;
        n += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    while n > 0 {
        n -= 1;
        out[pos] = digits[n];
        pos += 1;
    }
    pos
}

/// Formats a message line into `out` without allocating (senders call this per message).
pub fn encode(out: &mut [u8; MSG_LEN], token: Token) {
    out[0] = b'm';
    out[1] = b' ';
    let mut pos = put_u64(out, 2, u64::from(token.sender));
    out[pos] = b' ';
    pos = put_u64(out, pos + 1, u64::from(token.seq));
    out[pos] = b' ';
    pos = put_u64(out, pos + 1, token.sent_ns);
    out[pos] = b' ';
    // At most 2 + 10 + 1 + 10 + 1 + 20 + 1 = 45 bytes so far, so the padding always fits.
    out[pos + 1..MSG_LEN - 1].fill(b'x');
    out[MSG_LEN - 1] = b'\n';
}

/// The message line `token` makes, as a value (for callers that keep or send it whole).
pub fn line(token: Token) -> [u8; MSG_LEN] {
    let mut out = [0u8; MSG_LEN];
    encode(&mut out, token);
    out
}

/// Parses a run of ASCII digits at `s[pos..]`; `None` if there is none or it overflows. Up to 19
/// digits cannot overflow, so the usual case skips per-digit checks: this runs for every delivery
/// and was the generator's hottest function.
fn digits(s: &[u8], pos: usize) -> Option<(u64, usize)> {
    let rest = s.get(pos..)?;
    let len = rest
        .iter()
        .take(21)
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len().min(21));
    let digits = &rest[..len];
    let v = match len {
        0 => return None,
        1..=19 => digits
            .iter()
            .fold(0u64, |v, &c| v * 10 + u64::from(c - b'0')),
        // Only u64's own range needs checking, and it is never a real timestamp.
        _ => digits.iter().try_fold(0u64, |v, &c| {
            v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        })?,
    };
    Some((v, pos + len))
}

/// Parses one token whose `m` is at `s[at]`; needs the full header up to the space after SENT_NS,
/// so a line cut inside the header is rejected rather than misread.
fn parse_at(s: &[u8], at: usize) -> Option<(Token, usize)> {
    if s.get(at + 1) != Some(&b' ') {
        return None;
    }
    let (sender, p) = digits(s, at + 2)?;
    if s.get(p) != Some(&b' ') {
        return None;
    }
    let (seq, p) = digits(s, p + 1)?;
    if s.get(p) != Some(&b' ') {
        return None;
    }
    let (sent_ns, p) = digits(s, p + 1)?;
    if s.get(p) != Some(&b' ') {
        return None;
    }
    let token = Token {
        sender: u32::try_from(sender).ok()?,
        seq: u32::try_from(seq).ok()?,
        sent_ns,
    };
    Some((token, p))
}

/// Calls `found` for every message token in `line` (usually one; more if a relay merged lines).
/// A token must start at the line start or after a space, `>` or `:` (IRC's trailing parameter),
/// so a nick ending in `m` or the `xxx` padding cannot be taken for one.
pub fn scan_tokens(line: &[u8], mut found: impl FnMut(Token)) -> usize {
    let mut count = 0;
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'm', &line[from..]) {
        let at = from + i;
        from = at + 1;
        let boundary = at == 0 || matches!(line[at - 1], b' ' | b'>' | b':');
        if !boundary {
            continue;
        }
        if let Some((token, end)) = parse_at(line, at) {
            found(token);
            count += 1;
            // A header holds no other token; resume after it.
            from = end;
        }
    }
    count
}

/// If `line` is chatd's `! you missed N messages` notice (on IRC, `:chatd NOTICE nick :you missed
/// N messages in #room`), returns N (a sign the server dropped lines for a slow reader, reported
/// next to the measured loss).
pub fn missed_notice(line: &[u8]) -> Option<u64> {
    const MISSED: &[u8] = b"you missed ";
    let rest = match line.strip_prefix(b"! you missed ") {
        Some(rest) => rest,
        None if line.starts_with(b":chatd NOTICE ") => {
            let at = memchr::memmem::find(line, b" :you missed ")?;
            &line[at + 2 + MISSED.len()..]
        }
        None => return None,
    };
    digits(rest, 0).map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(line: &[u8]) -> Vec<Token> {
        let mut v = Vec::new();
        scan_tokens(line, |t| v.push(t));
        v
    }

    #[test]
    fn encode_is_fixed_size_and_round_trips() {
        let mut buf = [0u8; MSG_LEN];
        let t = Token {
            sender: 4_294_967_295,
            seq: 4_294_967_295,
            sent_ns: u64::MAX,
        };
        encode(&mut buf, t);
        assert_eq!(buf[MSG_LEN - 1], b'\n');
        assert_eq!(memchr::memchr(b'\n', &buf), Some(MSG_LEN - 1));
        assert_eq!(all(&buf[..MSG_LEN - 1]), vec![t]);
        let small = Token {
            sender: 0,
            seq: 0,
            sent_ns: 0,
        };
        encode(&mut buf, small);
        assert!(buf.starts_with(b"m 0 0 0 xxx"));
        assert_eq!(all(&buf), vec![small]);
    }

    #[test]
    fn finds_tokens_behind_chatd_and_ncat_prefixes() {
        let t = Token {
            sender: 3,
            seq: 17,
            sent_ns: 123_456_789,
        };
        assert_eq!(all(b"<127.0.0.1:5000> m 3 17 123456789 xxxx"), vec![t]);
        assert_eq!(all(b"<user5> m 3 17 123456789 xxxx"), vec![t]);
        assert_eq!(
            all(b":c5!chat@chatd PRIVMSG #room :m 3 17 123456789 xx"),
            vec![t]
        );
        // ncat prefixes a chunk, so the prefix can glue onto the next line's start.
        assert_eq!(
            all(b"<user5>m 3 17 123456789 xx<user5> m 3 18 5 xx"),
            vec![
                t,
                Token {
                    sender: 3,
                    seq: 18,
                    sent_ns: 5
                }
            ]
        );
    }

    #[test]
    fn rejects_cut_or_foreign_lines() {
        assert!(all(b"* welcome to chatd - you are 127.0.0.1:1; type /help").is_empty());
        assert!(
            all(b"<user4> m 3 17 1234").is_empty(),
            "cut inside the timestamp"
        );
        assert!(all(b"<user4> m 3 17").is_empty());
        assert!(all(b"<bob> m x 1 2 3").is_empty());
        assert!(all(b"<tom> am 1 2 3 x").is_empty(), "m must start a word");
        assert!(
            all(b"m 1 2 99999999999999999999999 x").is_empty(),
            "overflow"
        );
        assert!(all(b"m 1 99999999999 3 x").is_empty(), "seq beyond u32");
    }

    #[test]
    fn parses_missed_notice() {
        assert_eq!(missed_notice(b"! you missed 42 messages"), Some(42));
        assert_eq!(missed_notice(b"! slow down"), None);
        assert_eq!(
            missed_notice(b":chatd NOTICE c4 :you missed 7 messages in #room\r"),
            Some(7)
        );
        assert_eq!(
            missed_notice(b":c3!chat@chatd PRIVMSG #room :you missed 7 messages"),
            None
        );
    }
}
