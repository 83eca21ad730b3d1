//! CTCP ACTION (`/me waves` in IRC clients) and chatd's `/me`: the room carries an action as the
//! text `/me waves` (what a line member types), IRC members get it back as
//! `\x01ACTION waves\x01`, and line members see it as `* alice waves`. Converted at the IRC edge,
//! before `protocol::sanitize` would strip the `\x01` bytes. An IRC client's text that is
//! literally `/me ...` is an action too, as if typed in a line client.

use std::borrow::Cow;

/// The prefix of an action's text in the room.
pub const ME: &str = "/me ";

/// A PRIVMSG's text as the room carries it: an ACTION becomes `/me ...`; anything else is
/// unchanged (other CTCP requests included, which the caller may answer or drop).
pub fn from_irc(text: &str) -> Cow<'_, str> {
    match irc_action(text) {
        Some(action) => Cow::Owned(format!("{ME}{action}")),
        None => Cow::Borrowed(text),
    }
}

/// The room's text as an IRC PRIVMSG's: `/me ...` becomes a CTCP ACTION.
pub fn to_irc(text: &str) -> Cow<'_, str> {
    match line_action(text) {
        Some(action) => Cow::Owned(format!("\u{1}ACTION {action}\u{1}")),
        None => Cow::Borrowed(text),
    }
}

/// The action in a CTCP ACTION (`\x01ACTION waves\x01`; the closing `\x01` is optional, as the
/// CTCP spec allows), or `None` for any other text.
pub fn irc_action(text: &str) -> Option<&str> {
    let (command, rest) = ctcp(text)?;
    command.eq_ignore_ascii_case("ACTION").then_some(rest)
}

/// A CTCP message's command and the rest, between the `\x01`s (the closing one optional).
fn ctcp(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('\u{1}')?;
    let body = body.strip_suffix('\u{1}').unwrap_or(body);
    Some(body.split_once(' ').unwrap_or((body, "")))
}

/// The action in a room's text (`/me waves` gives `waves`), or `None` for plain chat.
pub fn line_action(text: &str) -> Option<&str> {
    text.strip_prefix(ME)
}

/// A CTCP request other than ACTION (`VERSION`, `PING`...): its command, upper-cased.
pub fn other_ctcp(text: &str) -> Option<String> {
    let (command, _) = ctcp(text)?;
    let other = !command.is_empty() && !command.eq_ignore_ascii_case("ACTION");
    other.then(|| command.to_ascii_uppercase())
}

/// How a line member sees an action: `* alice waves`.
pub fn render_action(name: &str, action: &str) -> String {
    format!("* {name} {action}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_cross_both_ways() {
        assert_eq!(from_irc("\u{1}ACTION waves\u{1}"), "/me waves");
        assert_eq!(to_irc("/me waves"), "\u{1}ACTION waves\u{1}");
        assert_eq!(
            to_irc(&from_irc("\u{1}ACTION waves at 🐈\u{1}")),
            "\u{1}ACTION waves at 🐈\u{1}"
        );
        // Without the closing \x01, and in lower case, as some clients send it.
        assert_eq!(from_irc("\u{1}action nods"), "/me nods");
        assert_eq!(irc_action("\u{1}ACTION\u{1}"), Some(""));
    }

    #[test]
    fn plain_text_is_untouched() {
        for text in ["hello", "ACTION waves", "/meow", "\u{1}VERSION\u{1}", ""] {
            assert_eq!(from_irc(text), text);
            assert_eq!(to_irc(text), text);
        }
        assert_eq!(line_action("/me"), None);
        assert!(matches!(from_irc("hi"), Cow::Borrowed(_)));
    }

    #[test]
    fn line_members_see_a_star_line() {
        let text = from_irc("\u{1}ACTION waves\u{1}");
        let action = line_action(&text).expect("an action");
        assert_eq!(render_action("alice", action), "* alice waves");
    }

    #[test]
    fn other_ctcp_requests_are_named() {
        assert_eq!(other_ctcp("\u{1}version\u{1}").as_deref(), Some("VERSION"));
        assert_eq!(other_ctcp("\u{1}PING 123\u{1}").as_deref(), Some("PING"));
        assert_eq!(other_ctcp("\u{1}ACTION x\u{1}"), None);
        assert_eq!(other_ctcp("hi"), None);
    }
}
