//! How `chatc` shows server lines on a terminal: each name in its own stable colour, `* ` notices
//! dimmed, `! ` errors red, history replay dimmed with its time; and which member names a line
//! mentions, for Tab completion. Pure, so it is unit-tested without a terminal.

use crate::protocol;

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const BOLD_MAGENTA: &str = "\x1b[1;35m";
/// The colours names are given: readable on dark and light backgrounds alike (no black, white,
/// or the red kept for errors).
const NAME_COLOURS: [u8; 10] = [32, 33, 34, 35, 36, 92, 93, 94, 95, 96];

/// When to colour, as `--color` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Never.
    Never,
    /// When stdout is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always, even into a pipe.
    Always,
}

impl ColorChoice {
    /// Whether to colour, given whether stdout is a terminal and the value of `NO_COLOR`.
    pub fn colour(self, stdout_is_terminal: bool, no_color: Option<&str>) -> bool {
        match self {
            ColorChoice::Never => false,
            ColorChoice::Always => true,
            // https://no-color.org: set and not empty means no colour.
            ColorChoice::Auto => stdout_is_terminal && no_color.is_none_or(str::is_empty),
        }
    }
}

/// The SGR colour code of `name`: a hash of its bytes (FNV-1a, stable across runs and builds)
/// picks one of [`NAME_COLOURS`].
pub fn name_colour(name: &str) -> u8 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    NAME_COLOURS[hash as usize % NAME_COLOURS.len()]
}

fn coloured_name(name: &str) -> String {
    format!("\x1b[{}m{name}{RESET}", name_colour(name))
}

/// `<NAME> rest` split at the name, if `text` starts with one.
fn split_name(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('<')?;
    let end = rest
        .find("> ")
        .or_else(|| rest.strip_suffix('>').map(str::len))?;
    let name = &rest[..end];
    (!name.is_empty()).then(|| (name, rest.get(end + 1..).unwrap_or("")))
}

/// `#ID ` and `[HH:MM] ` prefixes (history ids and replayed lines), and what follows them.
fn split_prefixes(line: &str) -> (&str, bool, &str) {
    let mut rest = line;
    let mut end = 0;
    if let Some(after) = line.strip_prefix('#') {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(' ') {
            end = 1 + digits + 1;
            rest = &line[end..];
        }
    }
    let replayed = rest.len() >= 8
        && rest.as_bytes()[0] == b'['
        && rest.as_bytes()[6] == b']'
        && rest.as_bytes()[7] == b' '
        && rest.as_bytes()[3] == b':';
    if replayed {
        end += 8;
    }
    (&line[..end], replayed, &line[end..])
}

/// One server line as it is shown: stripped of anything that could drive the terminal, and
/// coloured when `colour` is set.
pub fn paint(line: &str, colour: bool) -> String {
    let line = protocol::sanitize(line);
    if !colour {
        return line.into_owned();
    }
    if line.starts_with("! ") {
        return format!("{RED}{line}{RESET}");
    }
    if line.starts_with("* ") {
        return format!("{DIM}{line}{RESET}");
    }
    if let Some(rest) = line.strip_prefix("[private] ") {
        if let Some((name, text)) = split_name(rest) {
            return format!(
                "{BOLD_MAGENTA}[private]{RESET} <{}>{text}",
                coloured_name(name)
            );
        }
    }
    let (prefix, replayed, rest) = split_prefixes(&line);
    if let Some((name, text)) = split_name(rest) {
        let mark = if prefix.is_empty() {
            String::new()
        } else {
            format!("{DIM}{prefix}{RESET}")
        };
        return if replayed {
            // Replayed history: dimmed, so it reads as the past.
            format!("{mark}<{}>{DIM}{text}{RESET}", coloured_name(name))
        } else {
            format!("{mark}<{}>{text}", coloured_name(name))
        };
    }
    line.into_owned()
}

/// The member names `line` shows (a speaker, someone joining, renamed, or listed by `/who`).
pub fn names_in(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let body = line.strip_prefix("[private] ").unwrap_or(line);
    let (_, _, rest) = split_prefixes(body);
    if let Some((name, _)) = split_name(rest) {
        found.push(name.to_string());
    } else if let Some(notice) = line.strip_prefix("* ") {
        let words: Vec<&str> = notice.split_whitespace().collect();
        match words.as_slice() {
            [name, "joined", ..] => found.push(name.to_string()),
            [old, "is", "now", "known", "as", new] => {
                found.push(old.to_string());
                found.push(new.to_string());
            }
            // `/who`: `*   NAME (tcp)` or `*   NAME (udp) (you)`.
            [name, transport, ..]
                if notice.starts_with("  ") && matches!(*transport, "(tcp)" | "(udp)") =>
            {
                found.push(name.to_string());
            }
            _ => {}
        }
    }
    found.retain(|n| !n.is_empty() && n.len() <= 128);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_follows_the_flag_the_terminal_and_no_color() {
        assert!(ColorChoice::Auto.colour(true, None));
        assert!(ColorChoice::Auto.colour(true, Some("")));
        assert!(!ColorChoice::Auto.colour(true, Some("1")));
        assert!(!ColorChoice::Auto.colour(false, None));
        assert!(ColorChoice::Always.colour(false, Some("1")));
        assert!(!ColorChoice::Never.colour(true, None));
    }

    #[test]
    fn names_keep_their_colour() {
        assert_eq!(name_colour("alice"), name_colour("alice"));
        let colours: std::collections::HashSet<u8> =
            ["alice", "bob", "carol", "dave", "erin", "frank"]
                .iter()
                .map(|n| name_colour(n))
                .collect();
        assert!(colours.len() > 2, "names spread over colours: {colours:?}");
        let painted = paint("<alice> hi there", true);
        let colour = name_colour("alice");
        assert_eq!(painted, format!("<\x1b[{colour}malice\x1b[0m> hi there"));
    }

    #[test]
    fn notices_dim_errors_red_history_marked() {
        assert_eq!(paint("* bob joined", true), "\x1b[2m* bob joined\x1b[0m");
        assert_eq!(
            paint("! that name is taken", true),
            "\x1b[31m! that name is taken\x1b[0m"
        );
        let replay = paint("[18:48] <alice> ready?", true);
        assert!(replay.starts_with("\x1b[2m[18:48] \x1b[0m<"), "{replay:?}");
        assert!(replay.ends_with("\x1b[2m ready?\x1b[0m"), "{replay:?}");
        let private = paint("[private] <bob> psst", true);
        assert!(
            private.contains("[private]") && private.contains("bob"),
            "{private:?}"
        );
    }

    #[test]
    fn without_colour_a_line_is_only_made_safe() {
        assert_eq!(paint("<alice> hi", false), "<alice> hi");
        assert_eq!(paint("* x\x1b[31m", false), "* x");
        assert!(!paint("<a\x1b]0;pwn\x07> hi", true).contains("\x1b]"));
    }

    #[test]
    fn names_seen_in_lines() {
        assert_eq!(names_in("<alice> hi"), ["alice"]);
        assert_eq!(names_in("#12 [18:48] <bob> old"), ["bob"]);
        assert_eq!(names_in("[private] <carol> psst"), ["carol"]);
        assert_eq!(names_in("* dave joined"), ["dave"]);
        assert_eq!(names_in("* dave joined #lab"), ["dave"]);
        assert_eq!(names_in("* a is now known as b"), ["a", "b"]);
        assert_eq!(names_in("*   erin (tcp)"), ["erin"]);
        assert_eq!(names_in("*   me (udp) (you)"), ["me"]);
        assert!(names_in("* 2 here:").is_empty());
        assert!(names_in("* welcome to chatd - you are x; type /help").is_empty());
        assert!(names_in("plain text").is_empty());
    }
}
