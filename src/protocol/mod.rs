//! The chat protocol as pure functions: parse one incoming line or datagram into an [`Input`], and
//! format the lines the server sends. No I/O and no clock here, so all of it is unit-tested directly.
//!
//! Outgoing lines always end in `\n` and are built once per event as shared [`Bytes`], so a broadcast
//! to thousands of members costs one allocation, not one per recipient.

pub mod codec;
pub mod moderation;

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The UDP heartbeat a client sends every interval; it refreshes presence and is never shown.
pub const PING: &str = "#ping#";
/// The prefix of a UDP address-validation answer: `#pong# COOKIE`.
pub const PONG: &str = "#pong#";
/// A UDP member asks for a session token with this (see [`split_token`]).
pub const TOKEN_REQUEST: &str = "#token#";
/// A UDP datagram asking for the server's description without joining; it may be padded with
/// spaces, and must be, to earn an answer bigger than three times itself.
pub const INFO_REQUEST: &str = "#info#";
/// How the server's answer to [`TOKEN_REQUEST`] starts; the token follows.
pub const TOKEN_ANSWER: &str = "* your session token: ";
/// Longest session token accepted in a datagram's prefix, in bytes.
pub const MAX_TOKEN_LEN: usize = 64;

/// What one incoming line or datagram asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Nothing to do: a blank line.
    Empty,
    /// A UDP heartbeat.
    Ping,
    /// A UDP address-validation answer carrying the cookie the server sent.
    Pong(String),
    /// A UDP member asks for a session token (`#token#`).
    TokenRequest,
    /// Text to relay to the room, already stripped of control characters.
    Chat(String),
    /// A slash command.
    Command(Command),
}

/// A slash command, the same on every transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/quit [reason]`: leave at once.
    Quit(Option<String>),
    /// `/nick NAME`: change one's name (checked by the hub with [`crate::names::normalize`]).
    Nick(String),
    /// `/who`: list the members and their transports.
    Who,
    /// `/msg NAME text`: a private message.
    Msg { to: String, text: String },
    /// `/help`: list the commands.
    Help,
    /// `/join ROOM`: move to another room (created on demand).
    Join(String),
    /// `/part [ROOM]`: leave the room one is in (for the lobby); naming it guards against leaving
    /// the wrong one.
    Part(Option<String>),
    /// `/me TEXT`: an action, shown to everyone as `* NAME TEXT` (IRC's CTCP ACTION).
    Me(String),
    /// `/rooms`: list the open rooms and how many are in each.
    Rooms,
    /// `/history [N]` or `/history since ID`: replay the room's recent lines.
    History(HistoryRequest),
    /// `/info`: the server's description as one line of JSON.
    Info,
    /// `/ids on|off`: show each chat line's history id, so a client can catch up later.
    Ids(bool),
    /// `/register`, `/login`, `/password`, `/unregister` (see [`moderation`]).
    Account(moderation::AccountCommand),
    /// What room and server operators do (see [`moderation`]).
    Mod(moderation::ModCommand),
    /// A command used without its required argument; carries the usage line to show.
    Usage(&'static str),
    /// A command whose arguments are wrong; carries what to tell the member.
    Malformed(String),
    /// Anything else that starts with a single `/`.
    Unknown(String),
}

/// What `/history` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryRequest {
    /// The last N lines (or all kept, when no N is given).
    Last(Option<usize>),
    /// Every line after this id (`ID` or `ID@EPOCH`, see [`crate::store::epoch`]).
    Since(crate::store::epoch::MessageId),
}

/// Help text, one notice per line.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME       change your name (letters, digits, _ - .)",
    "  /who             list who is in this room (or /list)",
    "  /join ROOM [KEY] move to another room (created if needed; KEY for +k)",
    "  /part [ROOM]     leave this room for #lobby",
    "  /me TEXT         say what you do: * NAME TEXT",
    "  /rooms           list the rooms",
    "  /history [N]     replay the last N messages of this room",
    "  /history since ID  replay what came after message ID (ID or ID@EPOCH)",
    "  /ids on|off      show message ids, to catch up later",
    "  /msg NAME text   send a private message (any room)",
    "  /info            the server's description, as one line of JSON",
    "  /quit [reason]   leave (or /exit)",
    "accounts:",
    "  /register PASSWORD       keep your current name for you",
    "  /login NAME PASSWORD [CLIENT]  take your registered name (CLIENT: phone, laptop...:",
    "                           what that client missed since it was last here is replayed)",
    "  /password OLD NEW        change your password",
    "  /unregister PASSWORD     give the name up",
    "room operators (the room's creator, and whom it /op's):",
    "  /topic [TEXT]            show or set the topic",
    "  /op NAME, /deop NAME     share or withdraw operator rights",
    "  /kick NAME [reason]      send someone to #lobby",
    "  /ban NAME|ADDR[/N] [DURATION] [reason], /unban ..., /bans",
    "  /mute NAME [DURATION], /unmute NAME",
    "  /slow SECONDS            one line per SECONDS per member (0: off)",
    "  /mode [+-tnmsi] [+k KEY] [+l N] [+v NAME]  show or change the room's modes",
    "  /invite NAME             let NAME in past +i, +k and +l",
    "server operators (--oper):",
    "  /kill NAME [reason], /gban ADDR[/N] DURATION [reason], /ungban ADDR[/N]",
    "  /wall TEXT, /lockdown on|off",
    "durations: 30s, 10m, 2h, 7d",
    "  /help            this list",
    "  //text           send a line that starts with /",
];

/// Parses one datagram (its terminator may still be there): chat, a command, or one of the UDP
/// control words [`PING`], [`PONG`] and [`TOKEN_REQUEST`].
///
/// Invalid UTF-8 is decoded lossily and control characters are stripped, so whatever comes back is
/// safe to relay to other people's terminals.
pub fn parse(raw: &[u8]) -> Input {
    parse_with(raw, true)
}

/// Parses one TCP line (terminator already removed) like [`parse`], except that `#ping#`,
/// `#pong# ...` and `#token#` are ordinary chat: they are UDP control words, and a TCP member
/// typing them means to say them.
pub fn parse_tcp_line(raw: &[u8]) -> Input {
    parse_with(raw, false)
}

fn parse_with(raw: &[u8], control_words: bool) -> Input {
    let raw = strip_terminator(raw);
    let text = String::from_utf8_lossy(raw);
    let text = sanitize(&text);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Input::Empty;
    }
    if control_words {
        if trimmed == PING {
            return Input::Ping;
        }
        if trimmed == TOKEN_REQUEST {
            return Input::TokenRequest;
        }
        if let Some(rest) = trimmed.strip_prefix(PONG) {
            if rest.is_empty() || rest.starts_with(' ') {
                return Input::Pong(rest.trim().to_string());
            }
        }
    }
    // Leading whitespace never changes what a line is: ` /who` is a command and ` //x` is the
    // chat line `/x`, just as without the space.
    if let Some(literal) = text.trim_start().strip_prefix("//") {
        return Input::Chat(format!("/{literal}"));
    }
    if let Some(command) = trimmed.strip_prefix('/') {
        let stripped = matches!(text, Cow::Owned(_));
        if stripped && names_itself(command) {
            // Stripped silently, `/nick <RLO>ecila` would name its sender something other than
            // what it typed and saw; a name is refused instead.
            return Input::Command(Command::Usage(HIDDEN_IN_NAME));
        }
        return Input::Command(parse_command(command));
    }
    Input::Chat(text.into_owned())
}

/// The refusal of a name sent with control, direction or invisible characters in it.
pub const HIDDEN_IN_NAME: &str =
    "a name may not contain control, direction or invisible characters";

/// Whether `command` (after its `/`) chooses a name: `/nick` and `/register`.
fn names_itself(command: &str) -> bool {
    let word = command.split(char::is_whitespace).next().unwrap_or("");
    word.eq_ignore_ascii_case("nick") || word.eq_ignore_ascii_case("register")
}

fn parse_command(line: &str) -> Command {
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (line, ""),
    };
    let lower = word.to_ascii_lowercase();
    if let Some(parsed) = moderation::parse(&lower, rest) {
        return match parsed {
            Ok(moderation::Parsed::Account(account)) => Command::Account(account),
            Ok(moderation::Parsed::Mod(command)) => Command::Mod(command),
            Err(usage) => Command::Malformed(usage),
        };
    }
    match lower.as_str() {
        "quit" | "exit" => Command::Quit((!rest.is_empty()).then(|| rest.to_string())),
        "nick" if rest.is_empty() => Command::Usage("usage: /nick NAME"),
        "nick" => Command::Nick(rest.to_string()),
        "who" | "list" => Command::Who,
        "msg" => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Command::Msg {
                to: to.to_string(),
                text: text.trim_start().to_string(),
            },
            _ => Command::Usage("usage: /msg NAME text"),
        },
        "help" => Command::Help,
        "join" if rest.is_empty() => Command::Usage("usage: /join ROOM"),
        "join" => Command::Join(rest.to_string()),
        "part" | "leave" => Command::Part((!rest.is_empty()).then(|| rest.to_string())),
        "me" if rest.trim().is_empty() => Command::Usage("usage: /me TEXT"),
        "me" => Command::Me(rest.to_string()),
        "rooms" => Command::Rooms,
        "info" => Command::Info,
        "history" => parse_history(rest),
        "ids" => match rest.to_ascii_lowercase().as_str() {
            "on" => Command::Ids(true),
            "off" => Command::Ids(false),
            _ => Command::Usage("usage: /ids on|off"),
        },
        _ => Command::Unknown(word.to_string()),
    }
}

fn parse_history(rest: &str) -> Command {
    const USAGE: &str = "usage: /history [N] or /history since ID";
    let mut words = rest.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => Command::History(HistoryRequest::Last(None)),
        (Some(n), None, _) => match n.parse() {
            Ok(n) => Command::History(HistoryRequest::Last(Some(n))),
            Err(_) => Command::Usage(USAGE),
        },
        (Some(word), Some(id), None) if word.eq_ignore_ascii_case("since") => {
            match crate::store::epoch::MessageId::parse(id.trim_start_matches('#')) {
                Some(id) => Command::History(HistoryRequest::Since(id)),
                None => Command::Usage(USAGE),
            }
        }
        _ => Command::Usage(USAGE),
    }
}

/// Removes one trailing `\n` or `\r\n` (a UDP datagram from netcat carries its newline).
pub fn strip_terminator(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// Splits a UDP datagram's session-token prefix, `#t:TOKEN# `, from the rest: `(Some(TOKEN), rest)`
/// when it has one (a token is 1 to [`MAX_TOKEN_LEN`] ASCII letters and digits), else
/// `(None, datagram)`.
pub fn split_token(datagram: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some(rest) = datagram.strip_prefix(b"#t:") else {
        return (None, datagram);
    };
    let len = rest
        .iter()
        .take(MAX_TOKEN_LEN + 1)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    match rest[len..].strip_prefix(b"# ") {
        Some(body) if (1..=MAX_TOKEN_LEN).contains(&len) => (Some(&rest[..len]), body),
        _ => (None, datagram),
    }
}

/// `line` with the session-token prefix [`split_token`] expects.
pub fn with_token(token: &str, line: &str) -> String {
    format!("#t:{token}# {line}")
}

/// The answer to [`TOKEN_REQUEST`]: the token, and how to use it.
pub fn token_answer(token: &str) -> Bytes {
    line(&[
        TOKEN_ANSWER,
        token,
        " (start every datagram with #t:",
        token,
        "# and a space)",
    ])
}

/// The token in a [`token_answer`] line, if `line` is one.
pub fn token_from_answer(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(TOKEN_ANSWER.as_bytes())?;
    let len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    let token = std::str::from_utf8(&rest[..len]).ok()?;
    (1..=MAX_TOKEN_LEN).contains(&len).then_some(token)
}

/// Whether a datagram could itself be a chat server's output to a member: a notice, an error or
/// a join challenge, and also room traffic (`<name> text`), replayed history (`[18:46] ...`), a
/// private line (`[private] <name> ...`), any of them with a `#ID ` in front (`/ids on`). A server
/// must never take one from an address that is not a member as a newcomer's first words: it would
/// join the other server and send it its own room in return, and a forged source is all it takes
/// to tie two servers together that way.
pub fn is_server_line(datagram: &[u8]) -> bool {
    let line = strip_id(datagram);
    let between = |open: u8, close: &[u8]| {
        line.first() == Some(&open) && memchr::memmem::find(line, close).is_some()
    };
    line.starts_with(b"* ")
        || line.starts_with(b"! ")
        || between(b'<', b"> ")
        || between(b'[', b"] ")
        || is_info_document(line)
}

/// `line` without a leading history id (`#42 `), if it has one.
fn strip_id(line: &[u8]) -> &[u8] {
    let Some(rest) = line.strip_prefix(b"#") else {
        return line;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match rest[digits..].strip_prefix(b" ") {
        Some(after) if digits > 0 => after,
        _ => line,
    }
}

/// Whether `line` is the start of a server's description (`{"name":...`, see `crate::info`), which
/// is what a UDP `#info#` is answered with.
pub fn is_info_document(line: &[u8]) -> bool {
    line.starts_with(br#"{"name":"#)
}

/// Whether a UDP datagram (its session-token prefix already split off) asks for the server's
/// description: [`INFO_REQUEST`], optionally padded with whitespace.
pub fn is_info_request(datagram: &[u8]) -> bool {
    datagram.trim_ascii() == INFO_REQUEST.as_bytes()
}

/// Strips terminal control: C0/C1 control characters (except tab), whole ANSI escape sequences
/// (CSI, OSC, DCS and friends), and invisible or layout-changing characters: every format
/// character (Unicode category Cf: bidirectional overrides and marks, zero-width spaces and
/// joiners, the byte-order mark, soft hyphen, tag characters...), the line and paragraph
/// separators, and the Hangul fillers that render as blanks. So no member can drive another's
/// terminal, break a line, or disguise text. Borrows when there is nothing to strip, which is the
/// common case.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // A two-character escape (ESC c, ESC 7, ...): dropping the pair is enough.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if is_unsafe(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_unsafe(c: char) -> bool {
    if c.is_ascii() {
        // The common case, without a table lookup.
        return c.is_ascii_control() && c != '\t';
    }
    c.is_control()
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
        // Hangul fillers are letters to Unicode but show as nothing (or as blanks).
        || matches!(c, '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}')
}

/// Skips a CSI sequence's parameters and its final byte (0x40..=0x7e).
fn skip_csi(chars: &mut impl Iterator<Item = char>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
    }
}

/// Skips a string sequence (OSC, DCS, ...) up to its terminator: BEL, ST (ESC \) or C1 ST.
fn skip_string(chars: &mut std::iter::Peekable<impl Iterator<Item = char>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => break,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                break;
            }
            _ => {}
        }
    }
}

fn line(parts: &[&str]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    let mut buf = BytesMut::with_capacity(len);
    for part in parts {
        buf.put_slice(part.as_bytes());
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// `<name> text`: a chat message as every other member receives it.
pub fn chat_line(name: &str, text: &str) -> Bytes {
    line(&["<", name, "> ", text])
}

/// Appends [`chat_line`]'s bytes to `out`, for gathering several lines into one buffer.
pub fn write_chat_line(out: &mut BytesMut, name: &str, text: &str) {
    out.reserve(name.len() + text.len() + 4);
    for part in ["<", name, "> ", text, "\n"] {
        out.put_slice(part.as_bytes());
    }
}

/// Appends `* NAME TEXT` and a line end: an action (`/me`), kept and relayed as chat.
pub fn write_action_line(out: &mut BytesMut, name: &str, text: &str) {
    out.reserve(name.len() + text.len() + 4);
    for part in ["* ", name, " ", text, "\n"] {
        out.put_slice(part.as_bytes());
    }
}

/// `#42 ` before a line: its history id, for members that asked with `/ids on`.
pub fn with_id(id: u64, line: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(line.len() + 22);
    buf.put_u8(b'#');
    buf.put_slice(id.to_string().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(line);
    buf.freeze()
}

/// `[private] <name> text`: a `/msg` as its recipient receives it.
pub fn private_line(name: &str, text: &str) -> Bytes {
    line(&["[private] <", name, "> ", text])
}

/// `[at MS] LINE`: a line (a kept `/msg`) with the time it was sent, in milliseconds since the
/// Unix epoch, for an IRC client's `time` tag; line members get the time as history shows it.
pub fn sent_at(at_ms: i64, line: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(line.len() + 24);
    out.put_slice(format!("[at {at_ms}] ").as_bytes());
    out.put_slice(line);
    out.freeze()
}

/// The time and the rest of a line made by [`sent_at`].
pub fn split_sent_at(line: &str) -> Option<(i64, &str)> {
    let (at, rest) = line.strip_prefix("[at ")?.split_once("] ")?;
    Some((at.parse().ok()?, rest))
}

/// `[notice] <name> text`: an IRC NOTICE to one member, as it receives it (like a `/msg`, but
/// IRC clients get it as a NOTICE, which bots and clients never answer automatically).
pub fn private_notice_line(name: &str, text: &str) -> Bytes {
    line(&["[notice] <", name, "> ", text])
}

/// `[private to NAME] text`: the sender's copy of a `/msg` it sent, confirming it went out.
pub fn private_sent(to: &str, text: &str) -> Bytes {
    line(&["[private to ", to, "] ", text])
}

/// `* text`: a server notice (joins, leaves, command output, shutdown).
pub fn notice(text: &str) -> Bytes {
    line(&["* ", text])
}

/// Why a member left, as the room is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure<'a> {
    /// No reason: `* NAME left`.
    Silent,
    /// The server's reason: `* NAME left (timed out)`.
    Server(&'a str),
    /// The member's own words from `/quit`: `* NAME left: "words"`, quoted so that no member can
    /// make its leaving look like one the server decided.
    Said(&'a str),
}

/// The notice telling the room that `name` left.
pub fn left_notice(name: &str, how: Departure<'_>) -> Bytes {
    match how {
        Departure::Silent => line(&["* ", name, " left"]),
        Departure::Server(reason) => line(&["* ", name, " left (", reason, ")"]),
        Departure::Said(words) => line(&["* ", name, " left: \"", words, "\""]),
    }
}

/// `! text`: an error meant for one member only.
pub fn error(text: &str) -> Bytes {
    line(&["! ", text])
}

/// The welcome line: the configurable greeting (sanitised here too, whoever built the
/// configuration, so it can never break the line), then the member's name and how to get help.
pub fn welcome(motd: &str, name: &str) -> Bytes {
    line(&[
        "* ",
        &sanitize(motd),
        " - you are ",
        name,
        "; type /help for commands",
    ])
}

/// What a join challenge says before its code.
pub const CHALLENGE_PREFIX: &str = "* to join, send: #pong# ";

/// Bytes in a join challenge: its prefix, the code and the newline.
pub const CHALLENGE_LEN: usize = CHALLENGE_PREFIX.len() + crate::guard::cookie::CODE_LEN + 1;

/// The challenge sent to an unvalidated UDP address: what to send back to join (`#pong# CODE`, or
/// the code alone).
pub fn validation_challenge(cookie: &str) -> Bytes {
    line(&[CHALLENGE_PREFIX, cookie])
}

#[cfg(test)]
mod tests {

    #[test]
    fn gathered_chat_lines_are_the_lines_one_by_one() {
        let mut out = BytesMut::new();
        write_chat_line(&mut out, "ann", "hi");
        write_chat_line(&mut out, "ann", "there");
        let one_by_one = [chat_line("ann", "hi"), chat_line("ann", "there")].concat();
        assert_eq!(&out[..], &one_by_one[..]);
    }
    use super::*;
    use crate::store::epoch::MessageId;

    #[test]
    fn info_requests_and_the_command() {
        assert!(is_info_request(b"#info#"));
        assert!(is_info_request(format!("{INFO_REQUEST:<300}\n").as_bytes()));
        assert!(!is_info_request(b"#info# please"));
        assert!(!is_info_request(b"#infos#"));
        assert_eq!(parse(b"/info"), Input::Command(Command::Info));
        assert_eq!(parse(b"/INFO"), Input::Command(Command::Info));
    }

    #[test]
    fn plain_text_is_chat() {
        assert_eq!(parse(b"hello world"), Input::Chat("hello world".into()));
    }

    #[test]
    fn datagram_terminators_are_stripped() {
        assert_eq!(parse(b"hi\n"), Input::Chat("hi".into()));
        assert_eq!(parse(b"hi\r\n"), Input::Chat("hi".into()));
        assert_eq!(parse(b"#ping#\n"), Input::Ping);
    }

    #[test]
    fn blank_lines_are_empty() {
        assert_eq!(parse(b""), Input::Empty);
        assert_eq!(parse(b"  \t "), Input::Empty);
        assert_eq!(parse(b"\x1b[2J"), Input::Empty);
    }

    #[test]
    fn ping_and_pong() {
        assert_eq!(parse(b"#ping#"), Input::Ping);
        assert_eq!(parse(b"#pong# abc123"), Input::Pong("abc123".into()));
        assert_eq!(parse(b"#pong#"), Input::Pong(String::new()));
        assert_eq!(parse(b"#pongx"), Input::Chat("#pongx".into()));
    }

    #[test]
    fn a_challenge_is_its_prefix_the_code_and_a_newline() {
        let code = "k7q2m4xd";
        assert_eq!(code.len(), crate::guard::cookie::CODE_LEN);
        let challenge = validation_challenge(code);
        assert_eq!(&challenge[..], b"* to join, send: #pong# k7q2m4xd\n");
        assert_eq!(challenge.len(), CHALLENGE_LEN);
    }

    #[test]
    fn commands() {
        assert_eq!(parse(b"/quit"), Input::Command(Command::Quit(None)));
        assert_eq!(
            parse(b"/quit bye all"),
            Input::Command(Command::Quit(Some("bye all".into())))
        );
        assert_eq!(
            parse(b"/NICK bob"),
            Input::Command(Command::Nick("bob".into()))
        );
        assert_eq!(
            parse(b"/nick"),
            Input::Command(Command::Usage("usage: /nick NAME"))
        );
        assert_eq!(parse(b"/who"), Input::Command(Command::Who));
        assert_eq!(parse(b"/help"), Input::Command(Command::Help));
        assert_eq!(
            parse(b"/msg bob  hi there"),
            Input::Command(Command::Msg {
                to: "bob".into(),
                text: "hi there".into()
            })
        );
        assert_eq!(
            parse(b"/msg bob"),
            Input::Command(Command::Usage("usage: /msg NAME text"))
        );
        assert_eq!(
            parse(b"/frob x"),
            Input::Command(Command::Unknown("frob".into()))
        );
    }

    #[test]
    fn room_and_history_commands() {
        let cmd = |line: &[u8]| match parse(line) {
            Input::Command(c) => c,
            other => panic!("not a command: {other:?}"),
        };
        assert_eq!(cmd(b"/join #rust"), Command::Join("#rust".into()));
        assert_eq!(cmd(b"/part"), Command::Part(None));
        assert_eq!(cmd(b"/part #rust"), Command::Part(Some("#rust".into())));
        assert_eq!(cmd(b"/me waves"), Command::Me("waves".into()));
        assert_eq!(cmd(b"/me "), Command::Usage("usage: /me TEXT"));
        assert_eq!(cmd(b"/join"), Command::Usage("usage: /join ROOM"));
        assert_eq!(cmd(b"/rooms"), Command::Rooms);
        assert_eq!(
            cmd(b"/history"),
            Command::History(HistoryRequest::Last(None))
        );
        assert_eq!(
            cmd(b"/history 5"),
            Command::History(HistoryRequest::Last(Some(5)))
        );
        assert_eq!(
            cmd(b"/history since 42"),
            Command::History(HistoryRequest::Since(MessageId {
                id: 42,
                epoch: None
            }))
        );
        assert_eq!(
            cmd(b"/history since #42@abc123"),
            Command::History(HistoryRequest::Since(MessageId {
                id: 42,
                epoch: Some("abc123".into())
            }))
        );
        for bad in [
            &b"/history x"[..],
            b"/history since",
            b"/history since -1",
            b"/history since 4@x",
            b"/history 1 2",
        ] {
            assert!(matches!(cmd(bad), Command::Usage(_)), "{bad:?}");
        }
        assert_eq!(cmd(b"/ids on"), Command::Ids(true));
        assert_eq!(cmd(b"/IDS Off"), Command::Ids(false));
        assert!(matches!(cmd(b"/ids"), Command::Usage(_)));
    }

    #[test]
    fn double_slash_sends_a_literal_slash() {
        assert_eq!(parse(b"//quit"), Input::Chat("/quit".into()));
        assert_eq!(parse(b"// x"), Input::Chat("/ x".into()));
    }

    #[test]
    fn leading_whitespace_is_trimmed_consistently() {
        assert_eq!(parse(b" //x"), Input::Chat("/x".into()));
        assert_eq!(parse(b"\t //x "), Input::Chat("/x ".into()));
        assert_eq!(parse(b" /who"), Input::Command(Command::Who));
        assert_eq!(parse(b"  #ping#"), Input::Ping);
        // Plain chat keeps its indentation.
        assert_eq!(parse(b"  indented"), Input::Chat("  indented".into()));
    }

    #[test]
    fn control_words_are_chat_over_tcp() {
        assert_eq!(parse_tcp_line(b"#ping#"), Input::Chat("#ping#".into()));
        assert_eq!(
            parse_tcp_line(b"#pong# abc"),
            Input::Chat("#pong# abc".into())
        );
        assert_eq!(parse_tcp_line(b"#token#"), Input::Chat("#token#".into()));
        assert_eq!(parse_tcp_line(b"/who"), Input::Command(Command::Who));
        assert_eq!(parse_tcp_line(b" //x"), Input::Chat("/x".into()));
        assert_eq!(parse_tcp_line(b"  "), Input::Empty);
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        assert_eq!(parse(b"a\xffb"), Input::Chat("a\u{fffd}b".into()));
    }

    #[test]
    fn escapes_and_controls_are_stripped() {
        assert_eq!(sanitize("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(sanitize("\x1b]0;title\x07after"), "after");
        assert_eq!(sanitize("\x1b]8;;http://x\x1b\\link"), "link");
        assert_eq!(sanitize("bell\x07 back\x08 del\x7f"), "bell back del");
        assert_eq!(sanitize("tab\tkept"), "tab\tkept");
        assert_eq!(sanitize("c1\u{9b}2Jx"), "c1x");
        assert_eq!(sanitize("rtl\u{202e}evil"), "rtlevil");
        assert!(matches!(sanitize("plain"), Cow::Borrowed("plain")));
        assert!(matches!(sanitize("déjà vu 张三"), Cow::Borrowed(_)));
    }

    #[test]
    fn invisible_and_format_characters_are_stripped() {
        for c in [
            '\u{ad}',
            '\u{61c}',
            '\u{180e}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2028}',
            '\u{2029}',
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{206a}',
            '\u{206b}',
            '\u{206c}',
            '\u{206d}',
            '\u{206e}',
            '\u{206f}',
            '\u{feff}',
            '\u{fff9}',
            '\u{e0001}',
            '\u{e0020}',
            '\u{e0041}',
            '\u{e007f}',
            '\u{115f}',
            '\u{1160}',
            '\u{3164}',
            '\u{ffa0}',
        ] {
            assert_eq!(
                sanitize(&format!("a{c}b")),
                "ab",
                "U+{:04X} kept",
                u32::from(c)
            );
        }
        // Visible text from other scripts, and ordinary spaces, stay.
        assert_eq!(sanitize("ø\u{a0}한국\u{3000}x"), "ø\u{a0}한국\u{3000}x");
    }

    #[test]
    fn session_tokens_prefix_a_datagram() {
        assert_eq!(
            split_token(b"#t:ab12# hello"),
            (Some(&b"ab12"[..]), &b"hello"[..])
        );
        assert_eq!(split_token(b"#t:ab12# "), (Some(&b"ab12"[..]), &b""[..]));
        assert_eq!(split_token(b"hello"), (None, &b"hello"[..]));
        // Not a prefix: no space, no token, a bad character, too long.
        assert_eq!(split_token(b"#t:ab12#x"), (None, &b"#t:ab12#x"[..]));
        assert_eq!(split_token(b"#t:# x"), (None, &b"#t:# x"[..]));
        assert_eq!(split_token(b"#t:a-b# x"), (None, &b"#t:a-b# x"[..]));
        let long = format!("#t:{}# x", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(split_token(long.as_bytes()).0, None);
        let longest = format!("#t:{}# x", "a".repeat(MAX_TOKEN_LEN));
        assert!(split_token(longest.as_bytes()).0.is_some());
        assert_eq!(with_token("ab12", "hi"), "#t:ab12# hi");
        assert_eq!(parse(b"#token#"), Input::TokenRequest);
        assert_eq!(parse(b"#token#\n"), Input::TokenRequest);
    }

    #[test]
    fn token_answers_round_trip() {
        let answer = token_answer("00ff");
        assert_eq!(
            &answer[..],
            b"* your session token: 00ff (start every datagram with #t:00ff# and a space)\n"
        );
        assert_eq!(token_from_answer(strip_terminator(&answer)), Some("00ff"));
        assert_eq!(token_from_answer(b"<x> * your session token: 00ff"), None);
        assert_eq!(token_from_answer(b"* your session token: "), None);
    }

    #[test]
    fn server_lines_are_recognised() {
        assert!(is_server_line(&validation_challenge("00ff")));
        assert!(is_server_line(&error(
            "too many connections from your address"
        )));
        assert!(is_server_line(&notice("x joined")));
        assert!(!is_server_line(b"hello"));
        assert!(!is_server_line(b"*bold*"));
        assert!(!is_server_line(b"#ping#"));
        assert!(is_server_line(br#"{"name":"lab","version":"0.1.0"}"#));
        assert!(!is_server_line(br#"{"x":1}"#));
        // Room traffic and history, as another server sends them to a member.
        assert!(is_server_line(&chat_line("bob", "hi")));
        assert!(is_server_line(&private_line("bob", "hi")));
        assert!(is_server_line(b"[18:47] <alice> hi\n"));
        assert!(is_server_line(b"[2026-12-01 18:47] <alice> hi\n"));
        assert!(is_server_line(&with_id(42, &chat_line("bob", "hi"))));
        assert!(is_server_line(b"#7 [18:47] <alice> hi\n"));
        // What people type stays chat.
        assert!(!is_server_line(b"<3 you all"));
        assert!(!is_server_line(b"[wave]"));
        assert!(!is_server_line(b"#1 fan"));
        assert!(!is_server_line(b"#rust is nice"));
    }

    #[test]
    fn formatting() {
        assert_eq!(&chat_line("bob", "hi")[..], b"<bob> hi\n");
        assert_eq!(&private_line("bob", "hi")[..], b"[private] <bob> hi\n");
        assert_eq!(&private_sent("bob", "hi")[..], b"[private to bob] hi\n");
        assert_eq!(&notice("bob joined")[..], b"* bob joined\n");
        assert_eq!(&error("line too long")[..], b"! line too long\n");
        assert_eq!(&left_notice("bob", Departure::Silent)[..], b"* bob left\n");
        assert_eq!(
            &left_notice("bob", Departure::Server("timed out"))[..],
            b"* bob left (timed out)\n"
        );
        assert_eq!(
            &left_notice("bob", Departure::Said("timed out"))[..],
            b"* bob left: \"timed out\"\n"
        );
        assert_eq!(
            &welcome("welcome to chatd", "1.2.3.4:5")[..],
            b"* welcome to chatd - you are 1.2.3.4:5; type /help for commands\n"
        );
        assert_eq!(
            &welcome("hi\n* fake\u{2028}line", "bob")[..],
            b"* hi* fakeline - you are bob; type /help for commands\n"
        );
        assert_eq!(
            &validation_challenge("00ff")[..],
            b"* to join, send: #pong# 00ff\n"
        );
    }
}
