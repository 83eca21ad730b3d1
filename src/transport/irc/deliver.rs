//! What an IRC client receives of chatd's traffic: room events and the member's replies, turned
//! into IRC messages. Pure functions: the connection hands each event or reply here with what it
//! knows about its client, and writes what comes back.

use std::collections::VecDeque;
use std::time::SystemTime;

use super::cap::{Cap, Caps};
use super::message::{truncate_bytes, Message, MAX_BODY_BYTES};
use super::nick::nick_from_name;
use crate::room::{Event, Happening};

/// Most nick changes and quits remembered to send each only once (a member in several of this
/// client's channels announces them in each).
const RECENT: usize = 128;

/// The `nick!user@host` chatd gives a member: user and host are the same for everyone, since
/// chatd does not show addresses (see README's IRC section).
pub fn mask(name: &str) -> String {
    format!("{}!chat@chatd", nick_from_name(name))
}

/// The IRCv3 `time` tag's value for `at`.
pub fn server_time(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// One client's view: who it is, what it enabled, and what it has been told already.
#[derive(Debug, Default)]
pub struct View {
    /// Nick changes (old, new) and quits (name) already sent once.
    recent: VecDeque<(String, String)>,
    /// The epoch of live chat lines' ids, which their msgids carry (see [`crate::store::epoch`]).
    epoch: String,
}

impl View {
    /// A view for a client of a server whose live ids are of `epoch`.
    pub fn new(epoch: &str) -> View {
        View {
            epoch: epoch.to_string(),
            ..View::default()
        }
    }

    /// Whether `(a, b)` was seen lately; remembers it if not.
    fn first_time(&mut self, a: &str, b: &str) -> bool {
        if self
            .recent
            .iter()
            .any(|(x, y)| x.as_str() == a && y.as_str() == b)
        {
            return false;
        }
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((a.to_string(), b.to_string()));
        true
    }

    /// Forgets what was seen about `name` (it joined again: its next quit is news).
    fn forget(&mut self, name: &str) {
        self.recent.retain(|(a, _)| a != name);
    }

    /// The IRC messages for one room event in `channel` (`#label`), for member `me`.
    pub fn event(
        &mut self,
        event: &Event,
        channel: &str,
        me: crate::room::MemberId,
        caps: &Caps,
    ) -> Vec<Message> {
        let own = event.from == me;
        let notice = matches!(
            event.what.as_deref(),
            Some(Happening::Notice | Happening::Tagged { notice: true, .. })
        );
        // Client-only tags go only to clients that asked for message-tags.
        let tags = match event.what.as_deref() {
            Some(Happening::Tagged { tags, .. }) if caps.has(Cap::MessageTags) => tags.as_slice(),
            _ => &[],
        };
        if let Some(what) = event.what.as_ref().filter(|_| !event.is_chat()) {
            let echoed =
                matches!(what.as_ref(), Happening::TagMsg { .. }) && caps.has(Cap::EchoMessage);
            if own && !echoed {
                // The client's own joins, parts and renames are answered to it directly.
                return Vec::new();
            }
            return self.happening(what, channel, caps).into_iter().collect();
        }
        if !event.is_chat() {
            if own {
                return Vec::new();
            }
            let text = String::from_utf8_lossy(&event.line);
            return text
                .lines()
                .map(|line| {
                    stamp(
                        Message::new("NOTICE")
                            .source("chatd")
                            .param(channel)
                            .param(line.strip_prefix("* ").unwrap_or(line)),
                        caps,
                        None,
                    )
                })
                .collect();
        }
        if own && !caps.has(Cap::EchoMessage) {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(&event.line);
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let Some((name, body)) = chat_parts(line) else {
                continue;
            };
            let msgid = event
                .first_id
                .filter(|_| event.ids)
                .map(|first| crate::store::epoch::qualified(first + n as u64, &self.epoch));
            let command = if notice { "NOTICE" } else { "PRIVMSG" };
            let head = Message::new(command).source(&mask(name)).param(channel);
            for piece in fitting(&head, &body) {
                let mut message = stamp_at(
                    head.clone().param(piece),
                    caps,
                    msgid.as_deref(),
                    super::chathistory::from_unix_millis(u64::try_from(event.at_ms).unwrap_or(0)),
                );
                message.tags.extend(tags.iter().cloned());
                out.push(message);
            }
        }
        out
    }

    fn happening(&mut self, what: &Happening, channel: &str, caps: &Caps) -> Option<Message> {
        let message = match what {
            Happening::Joined {
                name,
                account,
                realname,
            } => {
                self.forget(name);
                let join = Message::new("JOIN").source(&mask(name)).param(channel);
                if caps.has(Cap::ExtendedJoin) {
                    join.param(account.as_deref().unwrap_or("*"))
                        .param(realname.as_str())
                } else {
                    join
                }
            }
            Happening::Left {
                name,
                reason,
                quit: true,
            } => {
                if !self.first_time(name, "") {
                    return None;
                }
                Message::new("QUIT")
                    .source(&mask(name))
                    .param(reason.as_deref().unwrap_or("Quit"))
            }
            Happening::Left { name, reason, .. } => {
                let part = Message::new("PART").source(&mask(name)).param(channel);
                match reason {
                    Some(reason) => part.param(reason.as_str()),
                    None => part,
                }
            }
            Happening::Renamed { old, new } => {
                if !self.first_time(old, new) {
                    return None;
                }
                Message::new("NICK")
                    .source(&mask(old))
                    .param(nick_from_name(new))
            }
            Happening::Topic { by, topic } => Message::new("TOPIC")
                .source(&mask(by))
                .param(channel)
                .param(topic.as_str()),
            // Chat, handled with the chat lines.
            Happening::Notice | Happening::Tagged { .. } => return None,
            Happening::TagMsg { name, tags, msgid } => {
                if !caps.has(Cap::MessageTags) {
                    return None;
                }
                let mut message = stamp(
                    Message::new("TAGMSG").source(&mask(name)).param(channel),
                    caps,
                    Some(msgid),
                );
                message.tags.extend(tags.iter().cloned());
                return Some(message);
            }
            Happening::Away {
                name,
                message,
                change,
            } => {
                if !caps.has(Cap::AwayNotify) || !self.first_time(name, &format!("#{change}")) {
                    return None;
                }
                let away = Message::new("AWAY").source(&mask(name));
                match message {
                    Some(text) => away.param(text.as_str()),
                    None => away,
                }
            }
            Happening::Account {
                name,
                account,
                change,
            } => {
                if !caps.has(Cap::AccountNotify) || !self.first_time(name, &format!("#{change}")) {
                    return None;
                }
                Message::new("ACCOUNT")
                    .source(&mask(name))
                    .param(account.as_deref().unwrap_or("*"))
            }
            Happening::Mode { by, changes } => {
                let mut words = changes.split(' ');
                let letters = words.next().unwrap_or_default();
                let mut message = Message::new("MODE")
                    .source(&mask(by))
                    .param(channel)
                    .param(letters);
                // Arguments follow the letters that take one; `o` and `v` name members, `b` a
                // name or an address block.
                for (letter, arg) in crate::room::modes::with_args(letters).zip(words) {
                    message = message.param(match letter {
                        'o' | 'v' => nick_from_name(arg),
                        'b' => super::nick::ban_mask(arg),
                        _ => arg.to_string(),
                    });
                }
                message
            }
            Happening::Kicked { name, by, reason } => Message::new("KICK")
                .source(&mask(by))
                .param(channel)
                .param(nick_from_name(name))
                .param(reason.as_deref().unwrap_or(by.as_str())),
        };
        Some(stamp(message, caps, None))
    }
}

/// Which of a chat event's shared forms ([`crate::room::shown`]) a client with `caps` reads: one
/// per combination of the capabilities that change a channel message's bytes (server-time,
/// message-tags, account-tag). Everything else in the bytes is the same for every reader of the
/// room; echo-message only decides whether the sender gets them at all.
pub fn form_of(caps: &Caps) -> usize {
    usize::from(caps.has(Cap::ServerTime))
        | usize::from(caps.has(Cap::MessageTags)) << 1
        | usize::from(caps.has(Cap::AccountTag)) << 2
}

/// Adds the tags the client asked for: `time` (server-time, now) and `msgid` (message-tags).
pub fn stamp(message: Message, caps: &Caps, msgid: Option<&str>) -> Message {
    stamp_at(message, caps, msgid, SystemTime::now())
}

/// [`stamp`] with the time something happened: a chat line's `time` is the one its history
/// keeps, so a client can match what it saw live with what CHATHISTORY gives back; a message
/// kept while the client was away has the time it was sent.
pub fn stamp_at(message: Message, caps: &Caps, msgid: Option<&str>, at: SystemTime) -> Message {
    let message = if caps.has(Cap::ServerTime) {
        message.tag("time", &server_time(at))
    } else {
        message
    };
    match msgid {
        Some(id) if caps.has(Cap::MessageTags) => message.tag("msgid", id),
        _ => message,
    }
}

/// A private message (`[private] <name> text` or `[notice] ...`) for another IRC client, led by
/// its tags (`@msgid=...;+draft/reply=... `), which [`reply`] reads back. Only IRC clients are
/// sent this form: chatd's replies never start with `@`.
pub fn tagged_private(tags: &[(String, String)], line: &[u8]) -> bytes::Bytes {
    let mut out = String::from("@");
    super::message::write_tags(tags, &mut out);
    out.push(' ');
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(line);
    bytes::Bytes::from(bytes)
}

/// A chat line's sender and text: `<alice> hi` or an action, `* alice waves` (given back as a
/// CTCP ACTION).
pub fn chat_parts(line: &str) -> Option<(&str, String)> {
    if let Some(rest) = line.strip_prefix('<') {
        let (name, text) = rest.split_once("> ")?;
        return Some((name, text.to_string()));
    }
    let rest = line.strip_prefix("* ")?;
    let (name, action) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((name, format!("\u{1}ACTION {action}\u{1}")))
}

/// `text` cut into pieces that each fit one IRC line after `head` (512 bytes with CR LF, as
/// clients expect): a long line from a line member reaches IRC clients whole, in several
/// messages, rather than cut.
///
/// Text an IRC client could have sent in one line (`COMMAND target text` within 512 bytes) is
/// only cut to fit after the longer source prefix, as IRC servers do, so it stays one message;
/// longer text can only come from a line member (up to `--max-line`), and is split instead.
pub fn fitting(head: &Message, text: &str) -> Vec<String> {
    // `head` plus " :" plus CR LF.
    let room = MAX_BODY_BYTES.saturating_sub(head.body_len() + 2).max(64);
    let sendable = head.params.iter().map(|p| p.len() + 1).sum::<usize>() + head.command.len() + 3;
    if text.len() + sendable <= MAX_BODY_BYTES {
        return vec![truncate_bytes(text, room).to_string()];
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > room {
        let piece = truncate_bytes(rest, room);
        if piece.is_empty() {
            break;
        }
        pieces.push(piece.to_string());
        rest = &rest[piece.len()..];
    }
    pieces.push(rest.to_string());
    pieces
}

/// One reply chatd made for the member (its text protocol) as IRC: a private message from
/// someone becomes a PRIVMSG from them (in pieces that fit a line), the sender's copy of its own
/// is dropped (unless echo-message), and notices and errors become NOTICEs from the server.
pub fn reply(line: &str, nick: &str, caps: &Caps) -> Option<Vec<Message>> {
    let line = line.trim_end_matches(['\r', '\n']);
    // Tags ahead of a private message from another IRC client ([`tagged_private`]): its msgid and
    // client-only tags, for clients that asked for message-tags.
    if let Some((tags, rest)) = line.strip_prefix('@').and_then(|l| l.split_once(' ')) {
        let tags = super::message::parse_tags(tags).unwrap_or_default();
        let mut out = reply(rest, nick, caps)?;
        for message in &mut out {
            for (key, value) in &tags {
                // The time it was sent (and kept) at, in place of the time it arrived here.
                if key == "time" && caps.has(Cap::ServerTime) {
                    message.tags.retain(|(k, _)| k != "time");
                    message.tags.insert(0, (key.clone(), value.clone()));
                } else if key != "time" && caps.has(Cap::MessageTags) {
                    message.tags.push((key.clone(), value.clone()));
                }
            }
        }
        return Some(out);
    }
    // A message kept while the client was away: its `time` tag is when it was sent.
    let (at, line) = match crate::protocol::split_sent_at(line) {
        Some((ms, rest)) => (
            SystemTime::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
            rest,
        ),
        None => (SystemTime::now(), line),
    };
    // `/ids on` is not for IRC clients, but a `#ID ` prefix must not end up in the text.
    let private = line
        .strip_prefix("[private] ")
        .map(|rest| ("PRIVMSG", rest))
        .or_else(|| line.strip_prefix("[notice] ").map(|rest| ("NOTICE", rest)));
    if let Some((command, rest)) = private {
        let (name, text) = chat_parts(rest)?;
        let head = Message::new(command).source(&mask(name)).param(nick);
        return Some(
            fitting(&head, &text)
                .into_iter()
                .map(|piece| stamp_at(head.clone().param(piece), caps, None, at))
                .collect(),
        );
    }
    // A TAGMSG from another IRC client, whose tags lead the line.
    if let Some(name) = line
        .strip_prefix("[tagmsg] <")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        if !caps.has(Cap::MessageTags) {
            return None;
        }
        return Some(vec![stamp(
            Message::new("TAGMSG").source(&mask(name)).param(nick),
            caps,
            None,
        )]);
    }
    if let Some(rest) = line.strip_prefix("[private to ") {
        let (to, text) = rest.split_once("] ")?;
        if !caps.has(Cap::EchoMessage) {
            return None;
        }
        return Some(vec![stamp(
            Message::new("PRIVMSG")
                .source(&mask(
                    &super::nick::name_from_nick(nick).unwrap_or_default(),
                ))
                .param(nick_from_name(to))
                .param(text),
            caps,
            None,
        )]);
    }
    if let Some((by, channel)) = line
        .strip_prefix("* ")
        .and_then(|l| l.split_once(" invites you to "))
        .filter(|(by, channel)| !by.contains(' ') && channel.starts_with('#'))
    {
        return Some(vec![stamp(
            Message::new("INVITE")
                .source(&mask(by))
                .param(nick)
                .param(channel),
            caps,
            None,
        )]);
    }
    let text = line
        .strip_prefix("* ")
        .or_else(|| line.strip_prefix("! "))
        .unwrap_or(line);
    if text.is_empty() {
        return None;
    }
    Some(vec![Message::new("NOTICE")
        .source("chatd")
        .param(nick)
        .param(text)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;

    fn event(from: u64, line: &'static str, chat: bool, what: Option<Happening>) -> Event {
        Event {
            from,
            seq: 1,
            end: 0,
            line_no: 0,
            lines: 1,
            first_id: chat.then_some(7),
            at_ms: 0,
            line: Bytes::from_static(line.as_bytes()),
            ids: true,
            what: what.map(Arc::new),
            shown: Default::default(),
        }
    }

    #[test]
    fn chat_becomes_privmsg_and_actions_ctcp() {
        let mut view = View::default();
        let caps = Caps::new();
        let out = view.event(
            &event(2, "<alice> hi there\n", true, None),
            "#den",
            1,
            &caps,
        );
        assert_eq!(
            out[0].line(),
            ":alice!chat@chatd PRIVMSG #den :hi there\r\n"
        );
        let out = view.event(&event(2, "* alice waves\n", true, None), "#den", 1, &caps);
        assert_eq!(
            out[0].line(),
            ":alice!chat@chatd PRIVMSG #den :\u{1}ACTION waves\u{1}\r\n"
        );
    }

    #[test]
    fn a_long_line_reaches_irc_in_pieces_that_fit() {
        let mut view = View::default();
        let line: &'static str =
            Box::leak(format!("<alice> {}\n", "é".repeat(600)).into_boxed_str());
        let out = view.event(&event(2, line, true, None), "#den", 1, &Caps::new());
        assert!(out.len() >= 3, "{} pieces", out.len());
        let mut text = String::new();
        for m in &out {
            assert!(m.line().len() <= 512, "{}", m.line().len());
            text.push_str(&m.params[1]);
        }
        assert_eq!(text, "é".repeat(600));
    }

    #[test]
    fn each_mix_of_the_capabilities_that_change_a_line_has_its_own_form() {
        let mixes = [
            "",
            "server-time",
            "message-tags",
            "account-tag",
            "server-time message-tags",
            "server-time account-tag",
            "message-tags account-tag",
            "server-time message-tags account-tag",
        ];
        let forms: Vec<usize> = mixes
            .iter()
            .map(|mix| {
                let mut caps = Caps::new();
                let words: Vec<String> = mix
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(String::from)
                    .collect();
                if !words.is_empty() {
                    caps.handle(&["REQ".into(), words.join(" ")], "chatd", "a", true);
                }
                // Capabilities that leave a channel line's bytes alone share its form.
                caps.handle(
                    &["REQ".into(), "echo-message batch".into()],
                    "chatd",
                    "a",
                    true,
                );
                form_of(&caps)
            })
            .collect();
        let mut distinct = forms.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), mixes.len(), "{forms:?}");
        assert!(forms.iter().all(|&f| f < crate::room::shown::SHOWN_FORMS));
    }

    #[test]
    fn own_chat_is_skipped_without_echo_message() {
        let mut view = View::default();
        let out = view.event(&event(1, "<me> hi\n", true, None), "#den", 1, &Caps::new());
        assert!(out.is_empty());
    }

    #[test]
    fn a_quit_seen_in_two_channels_is_sent_once() {
        let mut view = View::default();
        let caps = Caps::new();
        let quit = || {
            Some(Happening::Left {
                name: "bob".into(),
                reason: Some("bye".into()),
                quit: true,
            })
        };
        let first = view.event(&event(2, "* bob left\n", false, quit()), "#a", 1, &caps);
        let second = view.event(&event(2, "* bob left\n", false, quit()), "#b", 1, &caps);
        assert_eq!(first[0].line(), ":bob!chat@chatd QUIT bye\r\n");
        assert!(second.is_empty());
    }

    #[test]
    fn private_lines_become_privmsg_to_the_client() {
        let caps = Caps::new();
        let got = reply("[private] <bob> psst\n", "alice", &caps).map(|m| m[0].line());
        assert_eq!(
            got.as_deref(),
            Some(":bob!chat@chatd PRIVMSG alice psst\r\n")
        );
        assert!(reply("[private to bob] psst\n", "alice", &caps).is_none());
        let mut timed = Caps::new();
        timed.handle(
            &["REQ".into(), "server-time".into()],
            "chatd",
            "alice",
            true,
        );
        assert!(timed.has(Cap::ServerTime));
        let kept = reply("[at 1000] [private] <bob> psst\n", "alice", &timed);
        assert_eq!(
            kept.map(|m| m[0].line()).as_deref(),
            Some("@time=1970-01-01T00:00:01.000Z :bob!chat@chatd PRIVMSG alice psst\r\n")
        );
        let got = reply("! no such member: x\n", "alice", &caps).map(|m| m[0].line());
        assert_eq!(
            got.as_deref(),
            Some(":chatd NOTICE alice :no such member: x\r\n")
        );
    }
}
