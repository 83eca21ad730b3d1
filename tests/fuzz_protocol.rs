//! Property-based fuzzing of everything a client's bytes go through before they reach other people:
//! the TCP line framing ([`LineCodec`], and [`datagram_lines`] for UDP) and the protocol parser ([`protocol::parse`], `sanitize`,
//! `validate_nick` and the line formatting).
//!
//! cargo-fuzz needs a nightly toolchain that CI cannot fetch, so this is proptest. In the normal
//! suite every property runs proptest's default number of cases, which takes a few seconds. For a
//! long fuzzing run raise the count through proptest's own environment variable, in release mode:
//!
//! ```text
//! PROPTEST_CASES=1000000 nice -n 10 cargo test --release --test fuzz_protocol
//! ```
//!
//! The generators are biased towards what the parser and the codec treat specially (escape
//! sequences, C1 controls, bidi controls, invalid UTF-8, slash commands, heartbeats, `\r` and `\n`,
//! lines around the length limit): uniformly random bytes almost never form `\x1b]...\x07` or a
//! `/msg` command, so they alone would leave most branches unexplored.

use std::net::SocketAddr;

use bytes::BytesMut;
use chatd::names::{self, NameError};
use chatd::protocol::codec::{datagram_lines, Frame, LineCodec};
use chatd::protocol::{self, Command, Input};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use tokio_util::codec::Decoder;

// ---------------------------------------------------------------------------------------------
// Oracles, written independently of the code under test (code points, not `char::is_control`).
// ---------------------------------------------------------------------------------------------

/// What must never reach another member's terminal: C0 controls except tab, DEL, C1 controls,
/// every format character (general category Cf, listed by hand from the Unicode character
/// database: bidi controls, zero-width characters, BOM, soft hyphen, tags, ...), the line and
/// paragraph separators, and the Hangul fillers.
fn is_forbidden(c: char) -> bool {
    const FORMAT: &[(u32, u32)] = &[
        (0xad, 0xad),
        (0x600, 0x605),
        (0x61c, 0x61c),
        (0x6dd, 0x6dd),
        (0x70f, 0x70f),
        (0x890, 0x891),
        (0x8e2, 0x8e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
    ];
    let c = u32::from(c);
    (c < 0x20 && c != 0x09)
        || (0x7f..=0x9f).contains(&c)
        || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
        || matches!(c, 0x2028 | 0x2029)
        || matches!(c, 0x115f | 0x1160 | 0x3164 | 0xffa0)
}

/// The sanitiser and the hand-made oracle agree on every code point (escape introducers aside,
/// which also swallow what follows them).
#[test]
fn the_sanitiser_removes_exactly_the_forbidden_characters() {
    let introduces = |c: char| {
        matches!(
            c,
            '\x1b' | '\u{90}' | '\u{98}' | '\u{9b}' | '\u{9d}'..='\u{9f}'
        )
    };
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        if introduces(c) {
            continue;
        }
        let mut buf = [0u8; 4];
        let one = c.encode_utf8(&mut buf);
        assert_eq!(
            protocol::sanitize(one).is_empty(),
            is_forbidden(c),
            "U+{:04X}",
            u32::from(c)
        );
    }
}

fn assert_clean(what: &str, s: &str) -> Result<(), TestCaseError> {
    if let Some(c) = s.chars().find(|&c| is_forbidden(c)) {
        return Err(TestCaseError::fail(format!(
            "{what} {s:?} contains forbidden {c:?}"
        )));
    }
    Ok(())
}

/// Text shown to other members: clean and not blank (a blank line would be noise in the room).
fn assert_shown(what: &str, s: &str) -> Result<(), TestCaseError> {
    assert_clean(what, s)?;
    prop_assert!(!s.trim().is_empty(), "{} {:?} is blank", what, s);
    Ok(())
}

/// An outgoing line must be exactly one line, or a member could forge lines in others' views.
fn assert_one_line(line: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        line.last(),
        Some(&b'\n'),
        "line {:?} lacks its newline",
        line
    );
    prop_assert_eq!(
        line.iter().filter(|&&b| b == b'\n').count(),
        1,
        "line {:?} holds more than one newline",
        line
    );
    let text = std::str::from_utf8(&line[..line.len() - 1]).expect("outgoing lines are UTF-8");
    assert_clean("outgoing line", text)
}

/// Checks every string the parser hands on, and the lines the server would build from them.
fn check_parsed(input: &Input) -> Result<(), TestCaseError> {
    match input {
        Input::Empty | Input::Ping | Input::TokenRequest => {}
        Input::Pong(cookie) => {
            assert_clean("pong cookie", cookie)?;
            prop_assert_eq!(cookie.trim(), cookie.as_str());
        }
        Input::Chat(text) => {
            assert_shown("chat text", text)?;
            assert_one_line(&protocol::chat_line("alice", text))?;
        }
        Input::Command(command) => match command {
            Command::Quit(None) | Command::Who | Command::Help => {}
            Command::Quit(Some(reason)) => {
                assert_shown("quit reason", reason)?;
                let how = protocol::Departure::Said(reason);
                assert_one_line(&protocol::left_notice("alice", how))?;
            }
            Command::Nick(name) => assert_shown("nick argument", name)?,
            Command::Join(room) | Command::Part(Some(room)) => assert_shown("room argument", room)?,
            Command::Part(None) => {}
            Command::Me(text) => {
                assert_shown("action text", text)?;
                let mut line = bytes::BytesMut::new();
                protocol::write_action_line(&mut line, "alice", text);
                assert_one_line(&line)?;
            }
            Command::Rooms | Command::History(_) | Command::Ids(_) | Command::Info => {}
            Command::Msg { to, text } => {
                assert_shown("msg recipient", to)?;
                prop_assert!(!to.contains(char::is_whitespace), "recipient {:?}", to);
                assert_shown("msg text", text)?;
                assert_one_line(&protocol::private_line("alice", text))?;
            }
            Command::Usage(usage) => assert_shown("usage", usage)?,
            // Echoed back in an error.
            Command::Malformed(why) => assert_one_line(&protocol::error(why))?,
            // Parsed from the same sanitised line as everything else; unit-tested in the library.
            Command::Account(_) | Command::Mod(_) => {}
            Command::Unknown(word) => {
                // The word after the slash, echoed back in an error. It is empty for a bare "/"
                // (or "/ text"), which the error message shows as "unknown command /": fine.
                assert_clean("unknown command", word)?;
                prop_assert!(!word.contains(char::is_whitespace), "word {:?}", word);
                assert_one_line(&protocol::error(&format!("unknown command /{word}")))?;
            }
        },
    }
    Ok(())
}

/// Reference nickname rule for ASCII names, straight from the spec: `[A-Za-z0-9_.-]{1,32}`,
/// length first. (Beyond ASCII, `chatd::names` has its own unit tests.)
fn nick_reference(name: &str) -> Result<(), NameError> {
    if !(1..=32).contains(&name.len()) {
        Err(NameError::Length)
    } else if name
        .chars()
        .all(|c| matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        Ok(())
    } else {
        Err(NameError::Charset)
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------------

/// Fragments the sanitizer and parser treat specially, or that look like they might be.
const TRICKY: &[&str] = &[
    "\x1b[", "\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\x1b\\", "\x1b", "\x07", "\u{9b}",
    "\u{90}", "\u{98}", "\u{9c}", "\u{9d}", "\u{9e}", "\u{9f}", "\u{85}", "[31m", "0;title", "m",
    "/", "//", "#ping#", "#pong#", "#pong# ", "\r", "\n", "\r\n", " ", "\t", "\u{a0}", "\u{3000}",
    "\u{202a}", "\u{202e}", "\u{2066}", "\u{2069}", "\u{200f}", "\u{2028}", "\u{feff}", "\u{fffd}",
];

/// Byte strings that are not UTF-8, several of them truncated encodings of dangerous characters.
const INVALID_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\x9b",         // a raw C1 CSI byte, as an 8-bit terminal would read it
    b"\xc0\x80",     // overlong NUL
    b"\xc0\x8a",     // overlong "\n"
    b"\xc2",         // lead byte of a C1 control, cut off
    b"\xe2\x80",     // a bidi override, cut off
    b"\xed\xa0\x80", // an encoded surrogate
    b"\xf4\x90\x80\x80",
];

/// Any character, but mostly printable ASCII and the control and bidi characters around it.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => (0x20u8..=0x7e).prop_map(char::from),
        2 => (0x00u8..0x20).prop_map(char::from),
        2 => (0x7fu8..=0x9f).prop_map(char::from),
        1 => prop_oneof![0x202au32..=0x202e, 0x2066u32..=0x2069]
            .prop_map(|c| char::from_u32(c).expect("bidi controls are chars")),
        1 => select(vec![
            '\u{ad}', '\u{61c}', '\u{200b}', '\u{200d}', '\u{2028}', '\u{2029}', '\u{2060}',
            '\u{206a}', '\u{feff}', '\u{e0041}', '\u{115f}', '\u{3164}', '\u{ffa0}',
        ]),
        1 => any::<char>(),
    ]
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(tricky_char(), 0..48).prop_map(String::from_iter),
        prop::collection::vec(select(TRICKY), 0..16).prop_map(|parts| parts.concat()),
        wire_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// A character the sanitizer must keep. (Built directly rather than with `prop_filter`, whose
/// rejections count towards a limit over the whole run and would end a long run early.)
fn clean_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => (0x20u8..=0x7e).prop_map(char::from),
        1 => Just('\t'),
        1 => select(vec!['\u{a0}', '\u{3000}', '\u{2800}', '\u{fffd}', 'é', '한']),
        2 => any::<char>().prop_map(|c| if is_forbidden(c) { '\u{fffd}' } else { c }),
    ]
}

/// A string with nothing for the sanitizer to remove.
fn clean_string() -> impl Strategy<Value = String> {
    prop::collection::vec(clean_char(), 0..32).prop_map(String::from_iter)
}

fn wire_token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[ -~]{1,8}".prop_map(String::into_bytes),
        3 => select(TRICKY).prop_map(|s| s.as_bytes().to_vec()),
        2 => "/(?i:quit|exit|nick|msg|who|list|help)".prop_map(String::into_bytes),
        2 => tricky_char().prop_map(|c| c.to_string().into_bytes()),
        1 => select(INVALID_UTF8).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..4),
    ]
}

/// What a client might send as one line or datagram.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        3 => prop::collection::vec(wire_token(), 0..16).prop_map(|t| t.concat()),
    ]
}

/// A name as the server shows it: a chosen nickname or the default `ip:port`.
fn display_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.-]{1,32}",
        any::<SocketAddr>().prop_map(|a| a.to_string()),
    ]
}

/// One of `words` in random ASCII case. (A regex `(?i:...)` would also yield Unicode case
/// variants such as the Kelvin sign for `k`, which are rightly not commands.)
fn ascii_any_case(words: Vec<&'static str>) -> impl Strategy<Value = String> {
    (select(words), prop::collection::vec(any::<bool>(), 8)).prop_map(|(word, upper)| {
        word.chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// A complete terminal escape sequence, which the sanitizer must remove whole.
fn escape_sequence() -> impl Strategy<Value = String> {
    let csi = (
        prop_oneof!["\x1b\\[", "\u{9b}"],
        "[0-?]{0,8}", // parameter bytes
        "[ -/]{0,2}", // intermediate bytes
        "[@-~]",      // final byte
    )
        .prop_map(|(intro, params, inter, fin)| format!("{intro}{params}{inter}{fin}"));
    let string = (
        select(vec![
            "\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\u{90}", "\u{98}", "\u{9d}", "\u{9e}",
            "\u{9f}",
        ]),
        clean_string(),
        select(vec!["\x07", "\x1b\\", "\u{9c}"]),
    )
        .prop_map(|(intro, body, end)| format!("{intro}{body}{end}"));
    // Two-character escapes such as ESC c (reset) or ESC 7 (save cursor).
    let short = "\x1b[0-9A-OQ-WYZa-z=<>]";
    prop_oneof![csi, string, short]
}

// ---------------------------------------------------------------------------------------------
// Parser properties.
// ---------------------------------------------------------------------------------------------

proptest! {
    /// Whatever arrives, parsing neither panics nor lets anything unsafe or blank through.
    #[test]
    fn parse_output_is_safe(raw in wire_bytes()) {
        check_parsed(&protocol::parse(&raw))?;
    }

    /// The chat text the server relays parses back to itself (with a leading `/` escaped as
    /// `//`), so sanitizing and interpreting a line is stable rather than depending on how often
    /// the text passes through.
    #[test]
    fn chat_text_round_trips(raw in wire_bytes()) {
        if let Input::Chat(text) = protocol::parse(&raw) {
            let resend = if text.starts_with('/') { format!("/{text}") } else { text.clone() };
            prop_assert_eq!(protocol::parse(resend.as_bytes()), Input::Chat(text));
        }
    }

    /// A chat line is exactly one line, whoever says it and whatever they say.
    #[test]
    fn chat_line_is_one_line(name in display_name(), raw in wire_bytes()) {
        if let Input::Chat(text) = protocol::parse(&raw) {
            let line = protocol::chat_line(&name, &text);
            assert_one_line(&line)?;
            let expected = format!("<{name}> {text}\n");
            prop_assert_eq!(&line[..], expected.as_bytes());
        }
    }

    #[test]
    fn sanitize_is_idempotent_and_clean(text in tricky_string()) {
        let once = protocol::sanitize(&text);
        assert_clean("sanitized", &once)?;
        prop_assert_eq!(protocol::sanitize(&once), once.clone());
        // It only ever removes: every character it keeps was there, in the same order.
        let mut rest = text.chars();
        for kept in once.chars() {
            prop_assert!(rest.any(|c| c == kept), "{:?} -> {:?} invented {:?}", text, once, kept);
        }
    }

    #[test]
    fn sanitize_leaves_plain_text_alone(text in "[ -~\t]{0,80}") {
        let clean = protocol::sanitize(&text);
        prop_assert_eq!(clean.as_ref(), text.as_str());
        // The common case must not allocate.
        prop_assert!(matches!(clean, std::borrow::Cow::Borrowed(_)));
    }

    /// Without an escape-sequence introducer (ESC or a C1 CSI/string introducer) the sanitizer
    /// drops exactly the forbidden characters, no more: text next to a stray control survives.
    #[test]
    fn sanitize_without_escapes_only_filters(text in tricky_string()) {
        let introduces = |c: char| matches!(c, '\x1b' | '\u{90}' | '\u{98}' | '\u{9b}' | '\u{9d}'..='\u{9f}');
        let text: String = text.chars().filter(|&c| !introduces(c)).collect();
        let expected: String = text.chars().filter(|&c| !is_forbidden(c)).collect();
        prop_assert_eq!(protocol::sanitize(&text), expected);
    }

    /// A complete escape sequence disappears whole, and the text on both sides of it stays.
    #[test]
    fn escape_sequences_vanish_whole(
        before in clean_string(),
        seq in escape_sequence(),
        after in clean_string(),
    ) {
        let text = format!("{before}{seq}{after}");
        prop_assert_eq!(protocol::sanitize(&text), format!("{before}{after}"));
    }

    /// `//x` is how one sends a line starting with `/`; it must never turn into a command.
    #[test]
    fn double_slash_is_a_literal(x in prop_oneof!["[ -~]{0,40}", clean_string()]) {
        prop_assert_eq!(
            protocol::parse(format!("//{x}").as_bytes()),
            Input::Chat(format!("/{x}"))
        );
    }

    /// Commands are case-insensitive, take any whitespace as separator, and trim their argument.
    #[test]
    fn commands_take_their_arguments(
        word in ascii_any_case(vec!["nick", "msg", "quit", "exit"]),
        sep in select(vec![" ", "  ", "\t", "\u{3000}"]),
        to in "[A-Za-z0-9_.-]{1,32}",
        arg in clean_string(),
    ) {
        let verb = word.to_ascii_lowercase();
        let (line, expected) = match verb.as_str() {
            "nick" => (
                format!("/{word}{sep}{arg}"),
                if arg.trim().is_empty() {
                    Command::Usage("usage: /nick NAME")
                } else {
                    Command::Nick(arg.trim().to_string())
                },
            ),
            "msg" => (
                format!("/{word}{sep}{to}{sep}{arg}"),
                if arg.trim().is_empty() {
                    Command::Usage("usage: /msg NAME text")
                } else {
                    Command::Msg { to: to.clone(), text: arg.trim().to_string() }
                },
            ),
            _ => (
                format!("/{word}{sep}{arg}"),
                Command::Quit((!arg.trim().is_empty()).then(|| arg.trim().to_string())),
            ),
        };
        prop_assert_eq!(protocol::parse(line.as_bytes()), Input::Command(expected));
    }

    #[test]
    fn ascii_names_follow_the_reference(
        name in prop_oneof![
            3 => "[A-Za-z0-9_.-]{0,40}",
            1 => "[ -~]{0,40}",
        ],
    ) {
        let expected = nick_reference(&name).map(|()| name.clone());
        prop_assert_eq!(names::normalize(&name), expected, "{:?}", name);
    }

    #[test]
    fn every_valid_ascii_nick_is_accepted(name in "[A-Za-z0-9_.-]{1,32}") {
        prop_assert_eq!(names::normalize(&name), Ok(name.clone()));
    }

    #[test]
    fn an_accepted_name_is_short_clean_and_stable(
        name in prop_oneof![
            2 => ("[A-Za-z0-9_.-]{0,20}", tricky_char(), "[A-Za-z0-9_.-]{0,20}")
                .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
            1 => "[a-zé٣Ａ:]{0,20}",
            1 => any::<String>(),
        ],
    ) {
        if let Ok(shown) = names::normalize(&name) {
            let count = shown.chars().count();
            prop_assert!((1..=32).contains(&count), "{:?}", shown);
            assert_clean("name", &shown)?;
            prop_assert!(!shown.contains(|c: char| c == ':' || c.is_whitespace()), "{:?}", shown);
            // Normalising is idempotent, and the key does not depend on the form given.
            prop_assert_eq!(names::normalize(&shown), Ok(shown.clone()));
            prop_assert_eq!(names::key(&shown), names::key(&name));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Codec properties.
// ---------------------------------------------------------------------------------------------

/// What the codec should yield, as an independent model: a line ends at `\r\n`, `\n` or a lone
/// `\r`, and a line longer than `max` is TooLong. An over-long line is one TooLong however many
/// reads it arrives in. At end of stream the bytes after the last line end are a final line by the
/// same rules, unless there are none.
fn reference_frames(stream: &[u8], max: usize) -> Vec<Frame> {
    // Every line end becomes one `\n`; then the stream splits on `\n` alone.
    let mut normalised = Vec::with_capacity(stream.len());
    let mut bytes = stream.iter().peekable();
    while let Some(&b) = bytes.next() {
        if b == b'\r' {
            bytes.next_if_eq(&&b'\n');
            normalised.push(b'\n');
        } else {
            normalised.push(b);
        }
    }
    let mut lines: Vec<&[u8]> = normalised.split(|&b| b == b'\n').collect();
    let tail = lines.pop().expect("split yields at least one piece");
    if !tail.is_empty() {
        lines.push(tail);
    }
    lines
        .into_iter()
        .map(|line| {
            if line.len() > max {
                Frame::TooLong
            } else {
                Frame::Line(BytesMut::from(line))
            }
        })
        .collect()
}

/// Feeds `stream` to a fresh codec in the pieces ending at `cuts` (then the rest), draining it
/// after each piece as `FramedRead` does, then decodes to the end of the stream.
fn decode_chunked(max: usize, stream: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, TestCaseError> {
    decode_with(max, stream, cuts, false)
}

/// Like [`decode_chunked`], but after each piece the pending partial line is taken as complete,
/// as `--partial-timeout` does when a client stops mid-line.
fn decode_ending_lines(
    max: usize,
    stream: &[u8],
    cuts: &[usize],
) -> Result<Vec<Frame>, TestCaseError> {
    decode_with(max, stream, cuts, true)
}

fn decode_with(
    max: usize,
    stream: &[u8],
    cuts: &[usize],
    end_lines: bool,
) -> Result<Vec<Frame>, TestCaseError> {
    let mut codec = LineCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // Each frame consumes at least one byte or ends the stream, so more than this is a loop.
    let limit = stream.len() + 1;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        while let Some(frame) = codec.decode(&mut buf).map_err(fail)? {
            frames.push(frame);
            prop_assert!(frames.len() <= limit, "decode keeps yielding frames");
        }
        // Between reads only a partial line is held, and no more of it than the limit (every
        // line end, a `\r` too, ends a line at once): however much a client sends without a line
        // end, memory stays bounded.
        prop_assert!(!buf.contains(&b'\n'), "decode left a newline in {:?}", buf);
        prop_assert!(!buf.contains(&b'\r'), "decode left a CR in {:?}", buf);
        prop_assert!(buf.len() <= max, "{} bytes held, max {}", buf.len(), max);
        prop_assert_eq!(codec.has_partial(&buf) || buf.is_empty(), true);
        if end_lines {
            while let Some(frame) = codec.end_line(&mut buf).map_err(fail)? {
                frames.push(frame);
                prop_assert!(frames.len() <= limit, "end_line keeps yielding frames");
            }
            prop_assert!(buf.is_empty(), "end_line left {:?}", buf);
            prop_assert!(
                !codec.has_partial(&buf),
                "a partial line is left after end_line"
            );
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).map_err(fail)? {
        frames.push(frame);
        prop_assert!(frames.len() <= limit, "decode_eof keeps yielding frames");
    }
    prop_assert!(buf.is_empty(), "{:?} left over at end of stream", buf);
    Ok(frames)
}

/// The stream as the model sees it when every cut ends the partial line: a `\n` at each cut that
/// falls inside a line (after a byte that is not a line end). A cut right after a `\r` adds
/// nothing: that line has already ended, and a `\n` after it still belongs to it.
fn with_line_ends_at(stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream.len() + cuts.len());
    let mut start = 0;
    let mut cuts = cuts.to_vec();
    cuts.dedup();
    for &cut in &cuts {
        out.extend_from_slice(&stream[start..cut]);
        start = cut;
        if cut > 0 && !matches!(stream[cut - 1], b'\r' | b'\n') {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(&stream[start..]);
    out
}

fn fail(e: std::io::Error) -> TestCaseError {
    TestCaseError::fail(format!("codec error: {e}"))
}

/// A byte stream dense in terminators and in lines around the small limits used here.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => Just(b"\n".to_vec()),
        2 => Just(b"\r\n".to_vec()),
        2 => Just(b"\r".to_vec()),
        1 => Just(b"\r\r\n\n".to_vec()),
        4 => prop::collection::vec(b'a'..=b'z', 0..80),
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => wire_bytes(),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// A stream, a limit, and cut points splitting the stream into reads.
fn chunked_stream() -> impl Strategy<Value = (Vec<u8>, usize, Vec<usize>)> {
    (
        stream_bytes(),
        0usize..=64,
        prop::collection::vec(any::<Index>(), 0..16),
    )
        .prop_map(|(stream, max, cuts)| {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            (stream, max, cuts)
        })
}

proptest! {
    /// The frames depend only on the bytes, never on how reads split them, and match the model.
    #[test]
    fn codec_frames_match_the_reference((stream, max, cuts) in chunked_stream()) {
        let expected = reference_frames(&stream, max);
        let whole = decode_chunked(max, &stream, &[])?;
        prop_assert_eq!(&whole, &expected, "in one piece, max {}", max);
        let chunked = decode_chunked(max, &stream, &cuts)?;
        prop_assert_eq!(&chunked, &expected, "cut at {:?}, max {}", cuts, max);
        let bytewise: Vec<usize> = (1..stream.len()).collect();
        let trickled = decode_chunked(max, &stream, &bytewise)?;
        prop_assert_eq!(&trickled, &expected, "byte by byte, max {}", max);
    }

    /// Ending the partial line after a read (the partial timeout) is the same as a line end
    /// there: `\r\n` split by it stays one line end, and an over-long line stays one TooLong.
    #[test]
    fn ending_partial_lines_is_a_line_end_at_the_cut((stream, max, cuts) in chunked_stream()) {
        let expected = reference_frames(&with_line_ends_at(&stream, &cuts), max);
        let ended = decode_ending_lines(max, &stream, &cuts)?;
        prop_assert_eq!(&ended, &expected, "ended at {:?}, max {}", cuts, max);
        for frame in ended {
            if let Frame::Line(line) = frame {
                prop_assert!(line.len() <= max, "{}-byte line, max {}", line.len(), max);
            }
        }
    }

    /// A datagram splits into lines like a stream that ends there, except that a datagram with
    /// no line at all (empty, or a lone line end) still carries one empty line.
    #[test]
    fn datagram_lines_match_the_stream_model(stream in stream_bytes()) {
        let lines: Vec<&[u8]> = datagram_lines(&stream).collect();
        let mut expected: Vec<Vec<u8>> = reference_frames(&stream, usize::MAX)
            .into_iter()
            .map(|frame| match frame {
                Frame::Line(line) => line.to_vec(),
                Frame::TooLong => unreachable!("no line is longer than usize::MAX"),
            })
            .collect();
        if expected.is_empty() {
            expected.push(Vec::new());
        }
        prop_assert_eq!(lines, expected.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    /// The cap holds on its own terms (not only via the model), and every line that makes it
    /// through the codec parses into something safe: the whole TCP input path.
    #[test]
    fn codec_lines_respect_the_cap_and_parse_safely((stream, max, cuts) in chunked_stream()) {
        for frame in decode_chunked(max, &stream, &cuts)? {
            if let Frame::Line(line) = frame {
                prop_assert!(line.len() <= max, "{}-byte line, max {}", line.len(), max);
                prop_assert!(!line.contains(&b'\n'));
                prop_assert!(!line.contains(&b'\r'));
                check_parsed(&protocol::parse(&line))?;
            }
        }
    }
}
