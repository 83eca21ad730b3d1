//! One IRC line as data: [`parse`] reads what a client sent (IRCv3 message tags, source, command,
//! parameters) within the IRCv3 size limits, and [`Message::line`] writes what the server sends.
//! Pure functions over strings, so every rule is unit-tested without a socket.

/// Most bytes of tags in a line: `@`, the tags and the space after them (IRCv3 message-tags:
/// 8191 in all, the server's included), so the most a connection reads before a line's body.
pub const MAX_TAGS_BYTES: usize = 8191;

/// Most bytes of tags a client may send, `@` and the space after them included (IRCv3
/// message-tags: 4094 bytes of tag data): past it the line is refused with 417, so that the
/// server's own tags still fit beside client tags it relays.
pub const MAX_CLIENT_TAGS_BYTES: usize = 4096;

/// Most bytes of the rest of a line (source, command, parameters) with its CR LF, as RFC 1459.
pub const MAX_BODY_BYTES: usize = 512;

/// Longest line a connection must buffer before it can tell one is too long: both parts.
pub const MAX_LINE_BYTES: usize = MAX_TAGS_BYTES + MAX_BODY_BYTES;

/// Most parameters in one message (RFC 1459): past 14, the rest of the line is the last one.
pub const MAX_PARAMS: usize = 15;

/// Why a client's line is not a message. [`ParseError::TagsTooLong`] and
/// [`ParseError::TooLong`] are answered with 417 (ERR_INPUTTOOLONG); an empty line is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but spaces (IRC servers ignore such lines silently).
    #[error("empty line")]
    Empty,
    /// The tags part (`@...` and its space) is over [`MAX_CLIENT_TAGS_BYTES`].
    #[error("message tags too long")]
    TagsTooLong,
    /// The part after the tags, with CR LF, is over [`MAX_BODY_BYTES`].
    #[error("input line was too long")]
    TooLong,
    /// A tag with an empty or malformed key, or tags with nothing after them.
    #[error("malformed message tags")]
    BadTags,
    /// A source (`:nick`) with no command after it, or an empty source.
    #[error("no command")]
    NoCommand,
    /// A command that is neither a word (letters, then letters or `_`) nor three digits.
    #[error("unknown command {0:?}")]
    BadCommand(String),
    /// Not UTF-8 (the server advertises UTF8ONLY).
    #[error("line is not UTF-8")]
    NotUtf8,
    /// A NUL, CR or LF inside the line.
    #[error("control character in line")]
    Control,
}

/// One IRC message: what a client sent, or what the server is about to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Message tags in order, values unescaped; a tag without a value has an empty one (IRCv3
    /// treats the two alike).
    pub tags: Vec<(String, String)>,
    /// The `:source` (a client's is ignored by servers; the server sets its own).
    pub source: Option<String>,
    /// The command, upper-cased (`PRIVMSG`), or a three-digit numeric.
    pub command: String,
    /// The parameters, the trailing one included without its `:`.
    pub params: Vec<String>,
}

/// Parses one line from a client, without or with its CR LF / LF.
pub fn parse(raw: &[u8]) -> Result<Message, ParseError> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut rest = raw;
    let mut tags_part: Option<&[u8]> = None;
    if let Some(after_at) = rest.strip_prefix(b"@") {
        let end = after_at.iter().position(|&b| b == b' ');
        let tags_len = end.map_or(raw.len(), |e| e + 2);
        if tags_len > MAX_CLIENT_TAGS_BYTES {
            return Err(ParseError::TagsTooLong);
        }
        let Some(end) = end else {
            return Err(ParseError::BadTags);
        };
        tags_part = Some(&after_at[..end]);
        rest = &after_at[end + 1..];
    }
    // The body limit counts the CR LF a line ends with.
    if rest.len() + 2 > MAX_BODY_BYTES {
        return Err(ParseError::TooLong);
    }
    if raw.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(ParseError::Control);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| ParseError::NotUtf8)?;
    let tags = match tags_part {
        Some(part) => parse_tags(std::str::from_utf8(part).map_err(|_| ParseError::NotUtf8)?)?,
        None => Vec::new(),
    };
    let mut rest = rest.trim_start_matches(' ');
    if rest.is_empty() {
        return if tags_part.is_some() {
            Err(ParseError::BadTags)
        } else {
            Err(ParseError::Empty)
        };
    }
    let mut source = None;
    if let Some(after) = rest.strip_prefix(':') {
        let (src, after) = after.split_once(' ').unwrap_or((after, ""));
        if src.is_empty() {
            return Err(ParseError::NoCommand);
        }
        source = Some(src.to_string());
        rest = after.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Err(ParseError::NoCommand);
    }
    let numeric = command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit());
    // Letters, and underscores after the first (a client's unknown `FOO_BAR` is still a command,
    // answered with ERR_UNKNOWNCOMMAND and its label).
    let word = command.starts_with(|c: char| c.is_ascii_alphabetic())
        && command
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_');
    if !numeric && !word {
        return Err(ParseError::BadCommand(command.to_string()));
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_string());
            break;
        }
        if params.len() == MAX_PARAMS - 1 {
            params.push(rest.to_string());
            break;
        }
        let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(param.to_string());
        rest = after;
    }
    Ok(Message {
        tags,
        source,
        command: command.to_ascii_uppercase(),
        params,
    })
}

/// Reads `key=value;key2;...`; a repeated key keeps its last value, as IRCv3 says.
pub fn parse_tags(part: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for tag in part.split(';').filter(|t| !t.is_empty()) {
        let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
        if !valid_tag_key(key) {
            return Err(ParseError::BadTags);
        }
        let value = unescape_tag_value(value);
        match tags.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = value,
            None => tags.push((key.to_string(), value)),
        }
    }
    Ok(tags)
}

/// `[+][vendor/]name`: the name of letters, digits and `-`, the vendor a host name.
fn valid_tag_key(key: &str) -> bool {
    let key = key.strip_prefix('+').unwrap_or(key);
    let (vendor, name) = key.rsplit_once('/').unwrap_or(("", key));
    let vendor_ok = vendor
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    vendor_ok && name_ok && !(key.contains('/') && vendor.is_empty())
}

/// IRCv3's tag value escapes: `\:` `;`, `\s` space, `\\`, `\r`, `\n`; an unknown escape is the
/// character itself and a lone `\` at the end is dropped.
fn unescape_tag_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Writes tags as `key=value;key2` (values escaped), the inverse of [`parse_tags`].
pub fn write_tags(tags: &[(String, String)], out: &mut String) {
    for (n, (key, value)) in tags.iter().enumerate() {
        if n > 0 {
            out.push(';');
        }
        out.push_str(key);
        if !value.is_empty() {
            out.push('=');
            escape_tag_value(value, out);
        }
    }
}

/// The inverse of [`unescape_tag_value`], for tags the server sends.
fn escape_tag_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Message {
    /// A message with this command and no source, tags or parameters.
    pub fn new(command: &str) -> Message {
        Message {
            command: command.to_string(),
            ..Message::default()
        }
    }

    /// Sets the source (`server.name` or `nick!user@host`).
    pub fn source(mut self, source: &str) -> Message {
        self.source = Some(source.to_string());
        self
    }

    /// Adds one parameter.
    pub fn param(mut self, param: impl Into<String>) -> Message {
        self.params.push(param.into());
        self
    }

    /// Adds parameters in order.
    pub fn params<S: Into<String>>(mut self, params: impl IntoIterator<Item = S>) -> Message {
        self.params.extend(params.into_iter().map(Into::into));
        self
    }

    /// Adds a tag (`time`, `msgid`, `label`, `batch`, `account`...); an empty value is sent bare.
    pub fn tag(mut self, key: &str, value: &str) -> Message {
        self.tags.push((key.to_string(), value.to_string()));
        self
    }

    /// The value of a tag, if the message has it.
    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The line to send, ending in CR LF. The last parameter gets its `:` when it needs one
    /// (empty, holding a space, or starting with `:`). A CR, LF or NUL inside a parameter or the
    /// source becomes a space, so no text can end the line early and smuggle in another command.
    pub fn line(&self) -> String {
        let mut out = String::with_capacity(64);
        if !self.tags.is_empty() {
            out.push('@');
            write_tags(&self.tags, &mut out);
            out.push(' ');
        }
        if let Some(source) = &self.source {
            out.push(':');
            push_clean(source, &mut out);
            out.push(' ');
        }
        push_clean(&self.command, &mut out);
        let last = self.params.len().saturating_sub(1);
        for (n, param) in self.params.iter().enumerate() {
            out.push(' ');
            let needs_colon = param.is_empty() || param.contains(' ') || param.starts_with(':');
            if n == last && needs_colon {
                out.push(':');
            } else {
                // Only the last parameter may hold spaces: a middle one that does is a bug in
                // whoever built the message, and is cut to its first word rather than shifting
                // every parameter after it.
                debug_assert!(
                    !needs_colon,
                    "middle parameter {param:?} of {}",
                    self.command
                );
            }
            let param = if n == last {
                param.as_str()
            } else {
                param.split(' ').next().unwrap_or("")
            };
            push_clean(param, &mut out);
        }
        out.push_str("\r\n");
        out
    }

    /// Bytes of the line without its tags, CR LF included: what [`MAX_BODY_BYTES`] limits.
    pub fn body_len(&self) -> usize {
        let line = self.line();
        match line.strip_prefix('@') {
            Some(after) => after.split_once(' ').map_or(line.len(), |(_, b)| b.len()),
            None => line.len(),
        }
    }
}

fn push_clean(text: &str, out: &mut String) {
    for c in text.chars() {
        out.push(if matches!(c, '\r' | '\n' | '\0') {
            ' '
        } else {
            c
        });
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, for a trailing parameter that
/// must fit in [`MAX_BODY_BYTES`] with the rest of its line.
pub fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Message {
        parse(line.as_bytes()).expect(line)
    }

    #[test]
    fn reads_command_and_params() {
        let m = ok("privmsg #den :hello there\r\n");
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#den", "hello there"]);
        assert!(m.tags.is_empty() && m.source.is_none());
        let m = ok("NICK   alice");
        assert_eq!(m.params, ["alice"]);
        let m = ok("USER a 0 * :Alice A.");
        assert_eq!(m.params, ["a", "0", "*", "Alice A."]);
        // A trailing parameter may be empty, and may hold colons after its first.
        assert_eq!(ok("TOPIC #den :").params, ["#den", ""]);
        assert_eq!(ok("PRIVMSG #den ::-) x").params, ["#den", ":-) x"]);
        // A colon inside a middle parameter is part of it.
        assert_eq!(ok("PRIVMSG a:b c").params, ["a:b", "c"]);
        assert_eq!(ok("001 x").command, "001");
    }

    #[test]
    fn reads_tags_and_source() {
        let m = ok("@label=a\\sb\\:c;+draft/reply=12;bare;label=again :nick!u@h PRIVMSG x :hi\n");
        assert_eq!(
            m.tags,
            [
                ("label".to_string(), "again".to_string()),
                ("+draft/reply".to_string(), "12".to_string()),
                ("bare".to_string(), String::new()),
            ]
        );
        assert_eq!(m.source.as_deref(), Some("nick!u@h"));
        assert_eq!(m.tag_value("bare"), Some(""));
        let m = ok("@a=x\\\\y\\r\\n\\q\\ PING t");
        assert_eq!(m.tag_value("a"), Some("x\\y\r\nq"));
    }

    #[test]
    fn past_fourteen_params_the_rest_is_the_last() {
        let m = ok("CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16");
        assert_eq!(m.params.len(), MAX_PARAMS);
        assert_eq!(m.params[14], "15 16");
    }

    #[test]
    fn refuses_bad_lines_clearly() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"   \r\n"), Err(ParseError::Empty));
        assert_eq!(parse(b"@a=b"), Err(ParseError::BadTags));
        assert_eq!(parse(b"@a=b   "), Err(ParseError::BadTags));
        assert_eq!(parse(b"@=b PING x"), Err(ParseError::BadTags));
        assert_eq!(parse(b"@a!b PING x"), Err(ParseError::BadTags));
        assert_eq!(parse(b"@/a PING x"), Err(ParseError::BadTags));
        assert_eq!(parse(b": PING"), Err(ParseError::NoCommand));
        assert_eq!(parse(b":nick"), Err(ParseError::NoCommand));
        assert_eq!(
            parse(b"PRIV\x01MSG x"),
            Err(ParseError::BadCommand("PRIV\x01MSG".into()))
        );
        assert_eq!(parse(b"1234 x"), Err(ParseError::BadCommand("1234".into())));
        assert_eq!(parse(b"_A x"), Err(ParseError::BadCommand("_A".into())));
        assert_eq!(parse(b"NO_SUCH x").map(|m| m.command), Ok("NO_SUCH".into()));
        assert_eq!(parse(b"PRIVMSG x :\xff\xfe"), Err(ParseError::NotUtf8));
        assert_eq!(parse(b"@a=\xff PING x"), Err(ParseError::NotUtf8));
        assert_eq!(parse(b"PRIVMSG x :a\0b"), Err(ParseError::Control));
        assert_eq!(parse(b"PRIVMSG x :a\rb"), Err(ParseError::Control));
    }

    #[test]
    fn limits_tags_and_body_apart() {
        // 510 bytes plus CR LF is the most a body may be; one more is too long.
        let body = format!("PRIVMSG #den :{}", "x".repeat(510 - 14));
        assert_eq!(body.len(), 510);
        assert!(parse(body.as_bytes()).is_ok());
        assert_eq!(
            parse(format!("{body}x").as_bytes()),
            Err(ParseError::TooLong)
        );
        // Long tags do not eat into the body's 512 bytes.
        let tags = format!("@a={} ", "v".repeat(MAX_CLIENT_TAGS_BYTES - 4));
        assert_eq!(tags.len(), MAX_CLIENT_TAGS_BYTES);
        let m = ok(&format!("{tags}{body}\r\n"));
        assert_eq!(m.params[1].len(), 496);
        let tags = format!("@a={} ", "v".repeat(MAX_CLIENT_TAGS_BYTES - 3));
        assert_eq!(
            parse(format!("{tags}{body}").as_bytes()),
            Err(ParseError::TagsTooLong)
        );
        // Tags with no end are measured too, not buffered for ever.
        let endless = format!("@{}", "a".repeat(MAX_TAGS_BYTES + 10));
        assert_eq!(parse(endless.as_bytes()), Err(ParseError::TagsTooLong));
    }

    #[test]
    fn writes_lines_with_colon_only_when_needed() {
        let m = Message::new("PRIVMSG")
            .source("alice!alice@chatd")
            .param("#den")
            .param("hello there");
        assert_eq!(m.line(), ":alice!alice@chatd PRIVMSG #den :hello there\r\n");
        assert_eq!(Message::new("PING").param("x").line(), "PING x\r\n");
        assert_eq!(
            Message::new("TOPIC").params(["#d", ""]).line(),
            "TOPIC #d :\r\n"
        );
        assert_eq!(Message::new("X").param(":)").line(), "X ::)\r\n");
        assert_eq!(Message::new("QUIT").line(), "QUIT\r\n");
    }

    #[test]
    fn writes_escaped_tags_that_read_back() {
        let m = Message::new("PRIVMSG")
            .tag("time", "2026-12-07T19:00:00.000Z")
            .tag("label", "a; b\\c\r\n")
            .tag("bare", "")
            .source("s")
            .params(["#den", "hi"]);
        let line = m.line();
        assert_eq!(
            line,
            "@time=2026-12-07T19:00:00.000Z;label=a\\:\\sb\\\\c\\r\\n;bare :s PRIVMSG #den hi\r\n"
        );
        assert_eq!(ok(&line), m);
    }

    #[test]
    fn no_text_can_end_a_line_early() {
        let m = Message::new("PRIVMSG")
            .source("a\r\nb")
            .params(["#den", "hi\r\nQUIT :bye\0"]);
        let line = m.line();
        assert_eq!(line.matches("\r\n").count(), 1);
        assert!(line.ends_with("\r\n") && !line.contains('\0'));
    }

    #[test]
    fn body_len_leaves_tags_out() {
        let m = Message::new("PING").param("x");
        assert_eq!(m.body_len(), "PING x\r\n".len());
        assert_eq!(m.clone().tag("label", "abc").body_len(), m.body_len());
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        assert_eq!(truncate_bytes("héllo", 2), "h");
        assert_eq!(truncate_bytes("héllo", 3), "hé");
        assert_eq!(truncate_bytes("hi", 10), "hi");
    }

    mod properties {
        use std::collections::BTreeMap;

        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #[test]
            fn any_bytes_parse_or_fail_cleanly(raw in vec(any::<u8>(), 0..9000)) {
                if let Ok(m) = parse(&raw) {
                    prop_assert!(m.params.len() <= MAX_PARAMS);
                    prop_assert!(!m.command.is_empty());
                }
            }

            #[test]
            fn built_messages_read_back(
                tags in proptest::collection::btree_map("\\+?[a-z][a-z0-9-]{0,8}", "\\PC{0,12}", 0..4),
                source in proptest::option::of("[a-z]{1,8}(![a-z]{1,5}@[a-z.]{1,10})?"),
                command in "[A-Z]{1,10}|[0-9]{3}",
                middles in vec("[^ :\r\n\0][^ \r\n\0]{0,10}", 0..5),
                last in "[^\r\n\0]{0,40}",
            ) {
                let tags: BTreeMap<String, String> = tags;
                let mut m = Message::new(&command).params(middles).param(last);
                m.source = source;
                for (key, value) in &tags {
                    m = m.tag(key, value);
                }
                let line = m.line();
                prop_assert_eq!(parse(line.as_bytes()), Ok(m));
            }
        }
    }
}
