//! A room's modes as a value, and the mode words every face sets them with (`+m`, `-t`,
//! `+k KEY`, `+l 10`, `+v NAME`): IRC's `MODE #room ...` and the line protocol's `/mode ...`
//! parse through [`parse`], so both faces accept and refuse the same changes.
//!
//! - `t`: only operators set the topic (on by default: chatd's rule before modes).
//! - `n`: no messages from members outside the room (on by default).
//! - `m`: only operators (and voiced members) speak.
//! - `s`: secret: left out of `LIST` and `/rooms` for those not in it.
//! - `i`: invite only. `k KEY`: a key to join. `l N`: at most N members.
//! - `v NAME`: voice (speaks under `+m`), for the member's session in this room.

/// Longest key (RFC 2812's 23).
pub const MAX_KEY: usize = 23;
/// Largest member limit taken.
pub const MAX_LIMIT: u32 = 1_000_000;

/// The modes of a room; stored with its lasting state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Modes {
    /// `+t`: only operators set the topic.
    pub topic_ops: bool,
    /// `+n`: no messages from outside.
    pub no_outside: bool,
    /// `+m`: only operators and voiced members speak.
    pub moderated: bool,
    /// `+s`: left out of room lists for non-members.
    pub secret: bool,
    /// `+i`: only invited members (and operators) join.
    pub invite_only: bool,
    /// `+k`: the key to join.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `+l`: most members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl Default for Modes {
    fn default() -> Modes {
        Modes {
            topic_ops: true,
            no_outside: true,
            moderated: false,
            secret: false,
            invite_only: false,
            key: None,
            limit: None,
        }
    }
}

/// One mode change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A mode without an argument (`t`, `n`, `m`, `s`, `i`) on or off.
    Flag(char, bool),
    /// `+k KEY` / `-k`.
    Key(Option<String>),
    /// `+l N` / `-l`.
    Limit(Option<u32>),
    /// `+v NAME` / `-v NAME`.
    Voice(String, bool),
    /// `+o NAME` / `-o NAME`.
    Op(String, bool),
    /// `+b MASK` / `-b MASK`.
    Ban(String, bool),
    /// `b` with no argument: list the bans.
    BanList,
}

/// Why a mode word was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// Not a mode chatd knows (IRC 472).
    #[error("unknown mode {0}")]
    Unknown(char),
    /// A mode that needs an argument came without one (IRC 461).
    #[error("mode {0} needs an argument")]
    Missing(char),
    /// The argument is not valid for the mode (IRC 696): the mode, the argument, why.
    #[error("invalid {0} argument {1:?}: {2}")]
    Invalid(char, String, &'static str),
}

/// Parses `changes` (`+mk-l`) with its arguments into changes, one result per mode letter, in
/// order; a bad letter is reported where it stands and the others still apply.
pub fn parse<'a>(
    changes: &str,
    mut args: impl Iterator<Item = &'a str>,
) -> Vec<Result<Change, ModeError>> {
    let mut adding = true;
    let mut out = Vec::new();
    for mode in changes.chars() {
        let change = match mode {
            '+' => {
                adding = true;
                continue;
            }
            '-' => {
                adding = false;
                continue;
            }
            't' | 'n' | 'm' | 's' | 'i' => Ok(Change::Flag(mode, adding)),
            'k' if adding => match args.next() {
                None => Err(ModeError::Missing('k')),
                Some(key) => valid_key(key).map(|k| Change::Key(Some(k))),
            },
            // `-k` takes the key as an argument in IRC; any is accepted.
            'k' => {
                args.next();
                Ok(Change::Key(None))
            }
            'l' if adding => match args.next() {
                None => Err(ModeError::Missing('l')),
                Some(n) => match n.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Change::Limit(Some(n))),
                    _ => Err(ModeError::Invalid(
                        'l',
                        n.to_string(),
                        "the limit is a whole number from 1 up",
                    )),
                },
            },
            'l' => Ok(Change::Limit(None)),
            'v' | 'o' | 'b' => match (args.next(), mode) {
                (None, 'b') => Ok(Change::BanList),
                (None, _) => Err(ModeError::Missing(mode)),
                (Some(name), 'v') => Ok(Change::Voice(name.to_string(), adding)),
                (Some(name), 'o') => Ok(Change::Op(name.to_string(), adding)),
                (Some(mask), _) => Ok(Change::Ban(mask.to_string(), adding)),
            },
            other => Err(ModeError::Unknown(other)),
        };
        out.push(change);
    }
    out
}

fn valid_key(key: &str) -> Result<String, ModeError> {
    let why = if key.is_empty() {
        "the key is empty"
    } else if key.len() > MAX_KEY {
        "the key is longer than 23 bytes"
    } else if key
        .bytes()
        .any(|b| b == b' ' || b == b',' || b.is_ascii_control() || !b.is_ascii())
    {
        "the key holds a space, a comma or a character outside printable ASCII"
    } else {
        return Ok(key.to_string());
    };
    Err(ModeError::Invalid('k', "*".to_string(), why))
}

impl Modes {
    /// Applies a flag, key or limit change; false when it changed nothing (or is not one).
    pub fn apply(&mut self, change: &Change) -> bool {
        let before = self.clone();
        match change {
            Change::Flag(flag, on) => {
                let slot = match flag {
                    't' => &mut self.topic_ops,
                    'n' => &mut self.no_outside,
                    'm' => &mut self.moderated,
                    's' => &mut self.secret,
                    'i' => &mut self.invite_only,
                    _ => return false,
                };
                *slot = *on;
            }
            Change::Key(key) => self.key.clone_from(key),
            Change::Limit(limit) => self.limit = *limit,
            _ => return false,
        }
        *self != before
    }

    /// The modes as IRC shows them (`+nt`, `+klnt KEY 10`); the key only when `show_key`.
    pub fn render(&self, show_key: bool) -> String {
        let mut letters = String::from("+");
        let mut args = Vec::new();
        if let Some(key) = &self.key {
            letters.push('k');
            args.push(if show_key { key.clone() } else { "*".into() });
        }
        if let Some(limit) = self.limit {
            letters.push('l');
            args.push(limit.to_string());
        }
        for (on, flag) in [
            (self.invite_only, 'i'),
            (self.moderated, 'm'),
            (self.no_outside, 'n'),
            (self.secret, 's'),
            (self.topic_ops, 't'),
        ] {
            if on {
                letters.push(flag);
            }
        }
        std::iter::once(letters)
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether these are the modes a new room has (nothing to store).
    pub fn is_default(&self) -> bool {
        *self == Modes::default()
    }
}

/// The letters of a mode word (`+kl-mv`) that take an argument, in order.
pub fn with_args(letters: &str) -> impl Iterator<Item = char> + '_ {
    let mut adding = true;
    letters.chars().filter(move |&c| match c {
        '+' | '-' => {
            adding = c == '+';
            false
        }
        'k' | 'o' | 'v' | 'b' => true,
        'l' => adding,
        _ => false,
    })
}

/// How a change reads in the announcement (`+k beer`, `-m`, `+v bob`).
pub fn describe(change: &Change) -> String {
    let sign = |on: bool| if on { '+' } else { '-' };
    match change {
        Change::Flag(flag, on) => format!("{}{flag}", sign(*on)),
        Change::Key(Some(key)) => format!("+k {key}"),
        Change::Key(None) => "-k *".to_string(),
        Change::Limit(Some(n)) => format!("+l {n}"),
        Change::Limit(None) => "-l".to_string(),
        Change::Voice(name, on) => format!("{}v {name}", sign(*on)),
        Change::Op(name, on) => format!("{}o {name}", sign(*on)),
        Change::Ban(mask, on) => format!("{}b {mask}", sign(*on)),
        Change::BanList => "b".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(changes: &str, args: &[&str]) -> Vec<Change> {
        parse(changes, args.iter().copied())
            .into_iter()
            .map(|c| c.expect("valid"))
            .collect()
    }

    #[test]
    fn flags_keys_and_limits_parse_with_their_arguments_in_order() {
        assert_eq!(
            ok("+mk-l+v", &["beer", "bob"]),
            vec![
                Change::Flag('m', true),
                Change::Key(Some("beer".into())),
                Change::Limit(None),
                Change::Voice("bob".into(), true),
            ]
        );
        assert_eq!(ok("-k", &["anything"]), vec![Change::Key(None)]);
        assert_eq!(ok("b", &[]), vec![Change::BanList]);
        assert_eq!(with_args("+kl-lm+v").collect::<String>(), "klv");
    }

    #[test]
    fn bad_keys_limits_and_letters_are_refused_with_a_reason() {
        let refused = |changes: &str, args: &[&str]| {
            parse(changes, args.iter().copied())
                .into_iter()
                .next()
                .expect("one")
                .expect_err("refused")
        };
        assert!(matches!(
            refused("+k", &[""]),
            ModeError::Invalid('k', _, _)
        ));
        assert!(matches!(
            refused("+k", &["a b"]),
            ModeError::Invalid('k', _, _)
        ));
        assert!(matches!(
            refused("+k", &[&"x".repeat(24)]),
            ModeError::Invalid('k', _, _)
        ));
        assert!(matches!(
            refused("+l", &["0"]),
            ModeError::Invalid('l', _, _)
        ));
        assert!(matches!(
            refused("+l", &["-3"]),
            ModeError::Invalid('l', _, _)
        ));
        assert!(matches!(
            refused("+l", &["x"]),
            ModeError::Invalid('l', _, _)
        ));
        assert_eq!(refused("+l", &[]), ModeError::Missing('l'));
        assert_eq!(refused("+z", &[]), ModeError::Unknown('z'));
    }

    #[test]
    fn modes_render_as_irc_shows_them_and_default_to_nt() {
        let mut modes = Modes::default();
        assert_eq!(modes.render(true), "+nt");
        assert!(modes.apply(&Change::Key(Some("beer".into()))));
        assert!(modes.apply(&Change::Limit(Some(5))));
        assert!(modes.apply(&Change::Flag('t', false)));
        assert!(!modes.apply(&Change::Flag('n', true)));
        assert_eq!(modes.render(true), "+kln beer 5");
        assert_eq!(modes.render(false), "+kln * 5");
        assert!(!modes.is_default());
    }
}
