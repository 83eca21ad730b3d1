//! chatd names as IRC nicks, and back.
//!
//! A chatd name ([`crate::names`]) holds Unicode letters, marks and digits plus `_`, `-` and `.`;
//! the names the server gives out may also be an address (`127.0.0.1:5000`, `[::1]:5000`) when
//! addresses are shown, or a cluster guest (`guest-12.nodeB`). IRC nicks may not hold `.` (it marks
//! a server name) or `:` (it starts a trailing parameter), so two characters are swapped:
//!
//! | chatd | IRC | why this stand-in |
//! |-------|-----|-------------------|
//! | `.`   | `\|` | `guest-12.nodeB` is `guest-12\|nodeB` on IRC |
//! | `:`   | `^` | only in address names: `127.0.0.1:5000` is `127\|0\|0\|1^5000` |
//!
//! Every other character stays as it is (`[` and `]` of an IPv6 address are legal in nicks). The
//! mapping is a bijection between chatd names and the nicks it makes: chatd refuses `|` and `^` in
//! every name ([`crate::names::normalize`] allows only `_`, `-`, `.` besides letters, marks and
//! digits), and a mapped nick never holds `.` or `:`. So each nick maps back to exactly one
//! member's name, and no name a member could pick can show up under another member's nick. A nick
//! an IRC client asks for goes through [`name_from_nick`] and then `names::normalize` and the
//! registry's look-alike check, exactly as `/nick` does: `NICK foo|bar` asks for `foo.bar`. A nick
//! with a `.` in it is refused ([`NickError::Dot`]) rather than taken as written, so that what the
//! client asked for and what it is shown are the same string.
//!
//! ## CASEMAPPING
//! We advertise [`CASEMAPPING`] = `rfc8265` (PRECIS UsernameCaseMapped, as ergo does for UTF-8
//! nicks): clients compare nicks by Unicode lower-casing after NFC. The server compares names by
//! `names::key` and `names::look_alike_keys`, which fold case the same way and then also merge
//! look-alikes (`аlice` with a Cyrillic `а` is `alice`). So the server's sameness is coarser than
//! the client's, never finer: two nicks a client thinks are one person are one name to chatd too,
//! and two different members a client sees never share a folded form (chatd refuses the second
//! name). What a client can miss is only that `аlice` would reach `alice`, which is the safe
//! direction. `ascii` would be wrong for `Ärger`/`ärger` (one name to chatd), and `rfc1459` would
//! claim `|` and `\` are one character, which chatd does not do.

use crate::names;

/// The CASEMAPPING token's value (see the module documentation for why).
pub const CASEMAPPING: &str = "rfc8265";

/// Longest nick, in characters (NICKLEN counts characters, as chatd's names do).
pub const NICKLEN: usize = names::MAX_NAME_CHARS;

/// Why a nick an IRC client asked for cannot be a chatd name (before chatd's own name rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NickError {
    /// No nick at all (ERR_NONICKNAMEGIVEN).
    #[error("no nickname given")]
    Empty,
    /// Holds a `.`, which the IRC form writes as `|`.
    #[error("nicknames may not contain '.'; use '|' (it shows as '.' to line members)")]
    Dot,
    /// Holds a character no IRC nick may have, or starts with one that marks a channel or a
    /// trailing parameter.
    #[error("nicknames may not contain spaces, ',', '*', '?', '!', '@' or ':', nor start with '#', '&' or '$'")]
    Forbidden,
}

/// The IRC ban mask for what a chatd ban is on ([`crate::room::moderation::Banned::subject`]):
/// `*!*@BLOCK` for an address or block, `NICK!*@*` for an account or a guest name.
pub fn ban_mask(subject: &str) -> String {
    if subject.parse::<std::net::IpAddr>().is_ok() || subject.contains('/') {
        format!("*!*@{subject}")
    } else {
        format!("{}!*@*", nick_from_name(subject))
    }
}

/// The nick IRC clients see for a chatd name.
pub fn nick_from_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '|',
            ':' => '^',
            c => c,
        })
        .collect()
}

/// The chatd name an IRC nick stands for (to look a member up, or to ask for a name), or why it
/// cannot be one. The result still has to pass `names::normalize` when it is a new name.
pub fn name_from_nick(nick: &str) -> Result<String, NickError> {
    if nick.is_empty() {
        return Err(NickError::Empty);
    }
    if nick.starts_with(['#', '&', '$', ':']) {
        return Err(NickError::Forbidden);
    }
    let mut name = String::with_capacity(nick.len());
    for c in nick.chars() {
        name.push(match c {
            '.' => return Err(NickError::Dot),
            ' ' | ',' | '*' | '?' | '!' | '@' | ':' => return Err(NickError::Forbidden),
            c if c.is_control() => return Err(NickError::Forbidden),
            '|' => '.',
            '^' => ':',
            c => c,
        });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn names_irc_cannot_carry_get_stand_ins() {
        assert_eq!(nick_from_name("guest-12.nodeB"), "guest-12|nodeB");
        assert_eq!(nick_from_name("alice"), "alice");
        assert_eq!(nick_from_name("Ärger_ünd"), "Ärger_ünd");
        assert_eq!(nick_from_name("名前"), "名前");
        let v4: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let v6: SocketAddr = "[::1]:5000".parse().expect("addr");
        assert_eq!(
            nick_from_name(&names::default_name(1, v4, true)),
            "127|0|0|1^5000"
        );
        assert_eq!(
            nick_from_name(&names::default_name(1, v6, true)),
            "[^^1]^5000"
        );
    }

    #[test]
    fn every_nick_maps_back_to_its_one_name() {
        let v6: SocketAddr = "[2001:db8::1]:65535".parse().expect("addr");
        for name in [
            "guest-12.nodeB",
            "a.b.c",
            "-x_",
            "Ärger",
            "名前.node",
            "127.0.0.1:5000",
            &v6.to_string(),
        ] {
            let nick = nick_from_name(name);
            assert!(
                !nick.contains(['.', ':', ' ', ',', '*', '?', '!', '@']),
                "{nick}"
            );
            assert_eq!(name_from_nick(&nick).as_deref(), Ok(name), "{nick}");
        }
    }

    #[test]
    fn no_chosen_name_meets_a_stand_in() {
        // The stand-ins are characters chatd refuses in every name, so a member can never pick a
        // name whose nick is another member's.
        for name in ["guest-12|nodeB", "a^b", "x|"] {
            assert!(names::normalize(name).is_err(), "{name} was allowed");
        }
        // And what an IRC client asks for through a stand-in is checked by chatd's rules.
        let asked = name_from_nick("guest|b").expect("maps");
        assert_eq!(names::normalize(&asked).as_deref(), Ok("guest.b"));
        // `^` maps to `:`, which no chosen name may hold: an address name cannot be asked for.
        let asked = name_from_nick("127|0|0|1^5000").expect("maps");
        assert!(names::normalize(&asked).is_err());
    }

    #[test]
    fn refuses_what_irc_forbids() {
        assert_eq!(name_from_nick(""), Err(NickError::Empty));
        assert_eq!(name_from_nick("a.b"), Err(NickError::Dot));
        for bad in [
            "#a", "&a", "$a", ":a", "a b", "a,b", "a*", "a?", "a!b", "a@b", "a:b", "a\u{1}",
        ] {
            assert_eq!(name_from_nick(bad), Err(NickError::Forbidden), "{bad:?}");
        }
    }

    #[test]
    fn nicklen_counts_characters_like_chatd() {
        let longest = "ä".repeat(NICKLEN);
        assert!(names::normalize(&longest).is_ok());
        assert_eq!(nick_from_name(&longest).chars().count(), NICKLEN);
        assert!(names::normalize(&"ä".repeat(NICKLEN + 1)).is_err());
    }
}
