//! Parsing of the account and moderation commands (`/register`, `/login`, `/kick`, `/ban`, ...):
//! pure functions from a command's words to a value, unit-tested here. What they do is
//! [`crate::auth`] and [`crate::room::moderation`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Longest ban or mute accepted (ten years): longer is "for good", which no duration means.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest `/slow` interval.
pub const MAX_SLOW: u64 = 3600;

/// A password as typed: never printed (its `Debug` is `***`) and wiped when dropped, so it lives
/// no longer than the check it was sent for.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(text: &str) -> Secret {
        Secret(text.to_string())
    }

    /// The password's bytes, for hashing.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        for b in bytes.iter_mut() {
            // Volatile, so the wipe of memory about to be freed is not optimised away.
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// An account command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// `/register PASSWORD`: register the current name.
    Register(Secret),
    /// `/login NAME PASSWORD [CLIENT]`: take a registered name, as the client named `CLIENT`
    /// (for "what you missed", see [`crate::store::seen`]).
    Login {
        /// The account.
        name: String,
        /// Its password.
        password: Secret,
        /// The client's name, checked and folded; `None`: the transport's.
        client: Option<String>,
    },
    /// `/password OLD NEW`.
    Password {
        /// The password now.
        old: Secret,
        /// The one to set.
        new: Secret,
    },
    /// `/unregister PASSWORD`.
    Unregister(Secret),
}

/// Whom a ban is for: a name (an account or a present guest) or an address block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanTarget {
    /// A member's or account's name.
    Name(String),
    /// `ADDRESS[/PREFIX]`.
    Block(AddrBlock),
}

/// An IPv4 or IPv6 address block, `ADDRESS/PREFIX` (a lone address is the whole width).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct AddrBlock {
    /// The block's first address (host bits cleared).
    pub ip: IpAddr,
    /// Leading bits that must match.
    pub prefix: u8,
}

impl AddrBlock {
    /// Parses `1.2.3.4`, `1.2.3.0/24`, `::1`, `fe80::/10`; None if it is not one.
    pub fn parse(text: &str) -> Option<AddrBlock> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = ip.parse().ok()?;
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= width)?,
            None => width,
        };
        Some(AddrBlock {
            ip: mask(ip, prefix),
            prefix,
        })
    }

    /// The block of exactly one address.
    pub fn single(ip: IpAddr) -> AddrBlock {
        AddrBlock {
            ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.ip.is_ipv4() && mask(ip, self.prefix) == self.ip
    }
}

impl fmt::Display for AddrBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = if self.ip.is_ipv4() { 32 } else { 128 };
        if self.prefix == width {
            write!(f, "{}", self.ip)
        } else {
            write!(f, "{}/{}", self.ip, self.prefix)
        }
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = bits.checked_shr(32 - u32::from(prefix)).unwrap_or(0);
            let masked = kept.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(masked.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = bits.checked_shr(128 - u32::from(prefix)).unwrap_or(0);
            let masked = kept.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(masked.into())
        }
    }
}

/// A moderation command (room operators and server operators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModCommand {
    /// `/op NAME`.
    Op(String),
    /// `/deop NAME`.
    Deop(String),
    /// `/topic [TEXT]`: set it, or show it.
    Topic(Option<String>),
    /// `/kick NAME [reason]`.
    Kick {
        /// Who.
        name: String,
        /// Why, if said.
        reason: Option<String>,
    },
    /// `/ban NAME|ADDRESS[/PREFIX] [DURATION] [reason]`.
    Ban {
        /// Whom.
        target: BanTarget,
        /// How long; for good when absent.
        duration: Option<Duration>,
        /// Why, if said.
        reason: Option<String>,
    },
    /// `/unban NAME|ADDRESS[/PREFIX]`.
    Unban(BanTarget),
    /// `/bans`.
    Bans,
    /// `/mute NAME [DURATION]`.
    Mute {
        /// Whom.
        name: String,
        /// How long; until unmuted when absent.
        duration: Option<Duration>,
    },
    /// `/unmute NAME`.
    Unmute(String),
    /// `/slow SECONDS` (0 turns it off).
    Slow(u64),
    /// `/mode [CHANGES [ARGS]]`: show the room's modes, or change them (`+m`, `+k KEY`...).
    Mode(String),
    /// `/invite NAME`: let a member into this room past `+i`, `+k` and `+l`.
    Invite(String),
    /// `/kill NAME [reason]` (server operators).
    Kill {
        /// Whom.
        name: String,
        /// Why, if said.
        reason: Option<String>,
    },
    /// `/gban ADDRESS[/PREFIX] DURATION [reason]` (server operators).
    Gban {
        /// The block.
        block: AddrBlock,
        /// How long.
        duration: Duration,
        /// Why, if said.
        reason: Option<String>,
    },
    /// `/ungban ADDRESS[/PREFIX]` (server operators).
    Ungban(AddrBlock),
    /// `/wall TEXT` (server operators).
    Wall(String),
    /// `/lockdown on|off` (server operators).
    Lockdown(bool),
}

/// What a command word with its arguments parses to: an account command, a moderation command,
/// or a usage error to show. None when `word` is not one of these commands.
pub fn parse(word: &str, rest: &str) -> Option<Result<Parsed, String>> {
    let args: Vec<&str> = rest.split_whitespace().collect();
    let parsed = match word {
        "register" => match args.as_slice() {
            [password] => Ok(Parsed::Account(AccountCommand::Register(Secret::new(
                password,
            )))),
            _ => Err("usage: /register PASSWORD (one word)".to_string()),
        },
        "login" | "identify" => match args.as_slice() {
            [name, password] => Ok(Parsed::Account(AccountCommand::Login {
                name: name.to_string(),
                password: Secret::new(password),
                client: None,
            })),
            [name, password, client] => match crate::store::seen::client_name(client) {
                Some(client) => Ok(Parsed::Account(AccountCommand::Login {
                    name: name.to_string(),
                    password: Secret::new(password),
                    client: Some(client),
                })),
                None => Err(format!(
                    "a client name is 1 to {} letters, digits, '-', '_' or '.' (/login NAME \
                     PASSWORD phone)",
                    crate::store::seen::MAX_CLIENT
                )),
            },
            _ => Err("usage: /login NAME PASSWORD [CLIENT]".to_string()),
        },
        "password" => match args.as_slice() {
            [old, new] => Ok(Parsed::Account(AccountCommand::Password {
                old: Secret::new(old),
                new: Secret::new(new),
            })),
            _ => Err("usage: /password OLD NEW".to_string()),
        },
        "unregister" => match args.as_slice() {
            [password] => Ok(Parsed::Account(AccountCommand::Unregister(Secret::new(
                password,
            )))),
            _ => Err("usage: /unregister PASSWORD".to_string()),
        },
        "op" | "deop" | "unmute" => match args.as_slice() {
            [name] => Ok(Parsed::Mod(match word {
                "op" => ModCommand::Op(name.to_string()),
                "deop" => ModCommand::Deop(name.to_string()),
                _ => ModCommand::Unmute(name.to_string()),
            })),
            _ => Err(format!("usage: /{word} NAME")),
        },
        "mode" => Ok(Parsed::Mod(ModCommand::Mode(rest.trim().to_string()))),
        "invite" => match args.as_slice() {
            [name] => Ok(Parsed::Mod(ModCommand::Invite(name.to_string()))),
            _ => Err("usage: /invite NAME".to_string()),
        },
        "topic" => Ok(Parsed::Mod(ModCommand::Topic(
            (!rest.trim().is_empty()).then(|| rest.trim().to_string()),
        ))),
        "kick" | "kill" => match args.split_first() {
            Some((name, reason)) => {
                let name = name.to_string();
                let reason = words(reason);
                Ok(Parsed::Mod(if word == "kick" {
                    ModCommand::Kick { name, reason }
                } else {
                    ModCommand::Kill { name, reason }
                }))
            }
            None => Err(format!("usage: /{word} NAME [reason]")),
        },
        "ban" => parse_ban(&args),
        "unban" => match args.as_slice() {
            [target] => Ok(Parsed::Mod(ModCommand::Unban(target_of(target)))),
            _ => Err("usage: /unban NAME|ADDRESS[/PREFIX]".to_string()),
        },
        "bans" => Ok(Parsed::Mod(ModCommand::Bans)),
        "mute" => match args.as_slice() {
            [name] => Ok(Parsed::Mod(ModCommand::Mute {
                name: name.to_string(),
                duration: None,
            })),
            [name, duration] => parse_duration(duration).map(|d| {
                Parsed::Mod(ModCommand::Mute {
                    name: name.to_string(),
                    duration: Some(d),
                })
            }),
            _ => Err("usage: /mute NAME [DURATION]".to_string()),
        },
        "slow" => match args.as_slice() {
            [seconds] => match seconds.parse::<u64>() {
                Ok(s) if s <= MAX_SLOW => Ok(Parsed::Mod(ModCommand::Slow(s))),
                _ => Err(format!(
                    "usage: /slow SECONDS (0 to {MAX_SLOW}; 0 turns it off)"
                )),
            },
            _ => Err(format!(
                "usage: /slow SECONDS (0 to {MAX_SLOW}; 0 turns it off)"
            )),
        },
        "gban" => parse_gban(&args),
        "ungban" => match args.as_slice() {
            [block] => match AddrBlock::parse(block) {
                Some(block) => Ok(Parsed::Mod(ModCommand::Ungban(block))),
                None => Err(format!("not an address or block: {block}")),
            },
            _ => Err("usage: /ungban ADDRESS[/PREFIX]".to_string()),
        },
        "wall" if rest.trim().is_empty() => Err("usage: /wall TEXT".to_string()),
        "wall" => Ok(Parsed::Mod(ModCommand::Wall(rest.trim().to_string()))),
        "lockdown" => match args.as_slice() {
            [on] if on.eq_ignore_ascii_case("on") => Ok(Parsed::Mod(ModCommand::Lockdown(true))),
            [off] if off.eq_ignore_ascii_case("off") => {
                Ok(Parsed::Mod(ModCommand::Lockdown(false)))
            }
            _ => Err("usage: /lockdown on|off".to_string()),
        },
        _ => return None,
    };
    Some(parsed)
}

/// An account or a moderation command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `/register`, `/login`, `/password`, `/unregister`.
    Account(AccountCommand),
    /// Everything operators do.
    Mod(ModCommand),
}

/// Longest reason kept for a kick, ban or kill, in characters: a reason is stored with each ban
/// and sent with every refusal, so a room's bans stay small whatever operators type.
pub const MAX_REASON_CHARS: usize = 200;

fn words(rest: &[&str]) -> Option<String> {
    (!rest.is_empty()).then(|| rest.join(" ").chars().take(MAX_REASON_CHARS).collect())
}

fn target_of(word: &str) -> BanTarget {
    match AddrBlock::parse(word) {
        Some(block) => BanTarget::Block(block),
        None => BanTarget::Name(word.to_string()),
    }
}

/// Parses a ban or mute duration: `30s`, `10m`, `2h`, `7d`, or a bare number of seconds. A word
/// starting with a digit is always taken as a duration, so `/ban bob 5x` is an error, not a ban
/// for good with the reason "5x".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if d.is_zero() => Err(format!("bad duration {text}: must be more than zero")),
        Ok(d) if d > MAX_DURATION => Err(format!(
            "bad duration {text}: at most 10 years (leave it out for good)"
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("bad duration {text}: {e} (say 30s, 10m, 2h or 7d)")),
    }
}

fn looks_like_duration(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit())
}

fn parse_ban(args: &[&str]) -> Result<Parsed, String> {
    let Some((target, rest)) = args.split_first() else {
        return Err("usage: /ban NAME|ADDRESS[/PREFIX] [DURATION] [reason]".to_string());
    };
    let (duration, reason) = match rest.split_first() {
        Some((word, reason)) if looks_like_duration(word) => {
            (Some(parse_duration(word)?), words(reason))
        }
        _ => (None, words(rest)),
    };
    Ok(Parsed::Mod(ModCommand::Ban {
        target: target_of(target),
        duration,
        reason,
    }))
}

fn parse_gban(args: &[&str]) -> Result<Parsed, String> {
    const USAGE: &str = "usage: /gban ADDRESS[/PREFIX] DURATION [reason]";
    let [block, duration, reason @ ..] = args else {
        return Err(USAGE.to_string());
    };
    let Some(block) = AddrBlock::parse(block) else {
        return Err(format!("not an address or block: {block}"));
    };
    Ok(Parsed::Mod(ModCommand::Gban {
        block,
        duration: parse_duration(duration)?,
        reason: words(reason),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Parsed, String> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        parse(word, rest).expect("a command of this module")
    }

    #[test]
    fn account_commands_take_exactly_their_words_and_hide_passwords() {
        assert_eq!(
            parsed("login alice s3cret"),
            Ok(Parsed::Account(AccountCommand::Login {
                name: "alice".into(),
                password: Secret::new("s3cret"),
                client: None,
            }))
        );
        assert_eq!(
            parsed("login alice s3cret Phone"),
            Ok(Parsed::Account(AccountCommand::Login {
                name: "alice".into(),
                password: Secret::new("s3cret"),
                client: Some("phone".into()),
            }))
        );
        assert!(parsed("login alice s3cret two words").is_err());
        assert!(parsed("login alice s3cret ph@ne").is_err());
        assert!(parsed("login alice").is_err());
        assert!(parsed("register two words").is_err());
        assert!(parsed("password old").is_err());
        let debug = format!("{:?}", parsed("password old1 new2"));
        assert!(
            !debug.contains("old1") && !debug.contains("new2"),
            "{debug}"
        );
        assert!(parse("nick", "x").is_none());
    }

    #[test]
    fn ban_takes_a_name_or_block_then_an_optional_duration_then_a_reason() {
        assert_eq!(
            parsed("ban bob 10m spamming links"),
            Ok(Parsed::Mod(ModCommand::Ban {
                target: BanTarget::Name("bob".into()),
                duration: Some(Duration::from_secs(600)),
                reason: Some("spamming links".into())
            }))
        );
        assert_eq!(
            parsed("ban 10.0.0.7/8 rude"),
            Ok(Parsed::Mod(ModCommand::Ban {
                target: BanTarget::Block(AddrBlock::parse("10.0.0.0/8").expect("block")),
                duration: None,
                reason: Some("rude".into())
            }))
        );
        let bad = parsed("ban bob 5x").expect_err("a malformed duration");
        assert!(bad.starts_with("bad duration 5x"), "{bad}");
        assert!(parsed("ban").is_err());
        assert!(parsed("mute bob soon").is_err());
        assert!(parsed("gban 1.2.3.4").is_err(), "gban needs a duration");
        assert!(parsed("gban bob 1h").is_err(), "gban needs an address");
        assert!(parsed("slow 3601").is_err());
        assert_eq!(parsed("slow 0"), Ok(Parsed::Mod(ModCommand::Slow(0))));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("11y").is_err());
    }

    #[test]
    fn address_blocks_match_by_prefix() {
        let block = AddrBlock::parse("192.168.1.77/24").expect("block");
        assert_eq!(block.to_string(), "192.168.1.0/24");
        assert!(block.contains("192.168.1.200".parse().expect("ip")));
        assert!(!block.contains("192.168.2.1".parse().expect("ip")));
        assert!(block.contains("::ffff:192.168.1.5".parse().expect("mapped")));
        let all = AddrBlock::parse("0.0.0.0/0").expect("all");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        assert!(!all.contains("::1".parse().expect("v6")));
        let one = AddrBlock::parse("::1").expect("v6");
        assert_eq!(one.prefix, 128);
        assert!(one.contains("::1".parse().expect("v6")));
        assert!(AddrBlock::parse("1.2.3.4/33").is_none());
        assert!(AddrBlock::parse("bob").is_none());
    }

    #[test]
    fn reasons_are_cut_to_their_limit() {
        let long = "why ".repeat(1000);
        let Some(Ok(Parsed::Mod(ModCommand::Kick { reason, .. }))) =
            parse("kick", &format!("bob {long}"))
        else {
            panic!("a kick");
        };
        assert_eq!(reason.map(|r| r.chars().count()), Some(MAX_REASON_CHARS));
    }
}
