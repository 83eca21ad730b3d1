//! IRCv3 capability negotiation (`CAP LS`/`REQ`/`LIST`/`END`) as a state machine with no I/O: the
//! connection hands it each `CAP` command's parameters and sends back the replies it returns, and
//! asks it whether registration must wait ([`Caps::holds_registration`]) and which capabilities are
//! on ([`Caps::has`]). The capabilities offered are one table, [`OFFERED`].

use super::message::{Message, MAX_BODY_BYTES};
use super::numeric::Numeric;

/// One capability the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `cap-notify`: CAP NEW/DEL when the offer changes (on for every 302 client).
    CapNotify,
    /// `server-time`: a `time` tag on messages (history keeps its times).
    ServerTime,
    /// `message-tags`: client tags (`+...`) relayed, and TAGMSG.
    MessageTags,
    /// `echo-message`: the sender gets its own messages back.
    EchoMessage,
    /// `batch`: related lines (history, netsplits) grouped.
    Batch,
    /// `labeled-response`: a reply carries the `label` of the command it answers.
    LabeledResponse,
    /// `multi-prefix`: every prefix in NAMES and WHO, not only the highest.
    MultiPrefix,
    /// `userhost-in-names`: `nick!user@host` in NAMES.
    UserhostInNames,
    /// `account-tag`: an `account` tag on a logged-in sender's messages.
    AccountTag,
    /// `account-notify`: ACCOUNT when a member logs in or out.
    AccountNotify,
    /// `away-notify`: AWAY when a member in a shared channel goes away or comes back.
    AwayNotify,
    /// `extended-join`: JOIN carries the account and real name.
    ExtendedJoin,
    /// `sasl`: AUTHENTICATE before registration, against chatd's accounts.
    Sasl,
    /// `draft/chathistory`: CHATHISTORY served from the room history.
    ChatHistory,
    /// `draft/read-marker`: MARKREAD, the account's client's place in each channel.
    ReadMarker,
}

/// Every capability offered: its name and its value (sent to `CAP LS 302` clients only). Only
/// what the connection really does is here: a client that asks for a capability relies on it.
pub const OFFERED: &[(Cap, &str, Option<&str>)] = &[
    (Cap::CapNotify, "cap-notify", None),
    (Cap::ServerTime, "server-time", None),
    (Cap::EchoMessage, "echo-message", None),
    (Cap::MultiPrefix, "multi-prefix", None),
    (Cap::UserhostInNames, "userhost-in-names", None),
    (Cap::ExtendedJoin, "extended-join", None),
    (Cap::AccountTag, "account-tag", None),
    (Cap::Sasl, "sasl", Some(super::sasl::MECHANISMS)),
    (Cap::Batch, "batch", None),
    (Cap::LabeledResponse, "labeled-response", None),
    (Cap::ChatHistory, "draft/chathistory", None),
    (Cap::MessageTags, "message-tags", None),
    (Cap::AccountNotify, "account-notify", None),
    (Cap::AwayNotify, "away-notify", None),
    (Cap::ReadMarker, "draft/read-marker", None),
];

/// The first CAP version that lists values and implies cap-notify.
pub const CAP_302: u32 = 302;

/// One connection's negotiation: the capabilities on, the CAP version it spoke, and whether it is
/// negotiating (which holds registration until `CAP END`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    enabled: u32,
    version: u32,
    negotiating: bool,
}

fn bit(cap: Cap) -> u32 {
    1 << (cap as u32)
}

fn by_name(name: &str) -> Option<Cap> {
    OFFERED
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(c, _, _)| *c)
}

impl Caps {
    /// A connection that has not spoken CAP: nothing on, registration not held.
    pub fn new() -> Caps {
        Caps::default()
    }

    /// Whether `cap` is on.
    pub fn has(&self, cap: Cap) -> bool {
        self.enabled & bit(cap) != 0
    }

    /// Whether registration must wait: a CAP LS or REQ came before registration and no CAP END yet.
    pub fn holds_registration(&self) -> bool {
        self.negotiating
    }

    /// The highest CAP version the client announced (0 if none; `CAP LS` alone is 301).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Handles one `CAP` command (its parameters) from the client known as `nick` (`*` before
    /// it has one), and returns the replies from `server` to send.
    pub fn handle(
        &mut self,
        params: &[String],
        server: &str,
        nick: &str,
        registered: bool,
    ) -> Vec<Message> {
        let Some(sub) = params.first() else {
            return vec![Numeric::NeedMoreParams { command: "CAP" }.to(server, nick)];
        };
        let sub = sub.to_ascii_uppercase();
        match sub.as_str() {
            "LS" => {
                let asked = params
                    .get(1)
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(301);
                self.version = self.version.max(asked.max(301));
                if self.version >= CAP_302 {
                    self.enabled |= bit(Cap::CapNotify);
                }
                self.negotiating |= !registered;
                let with_values = self.version >= CAP_302;
                let offered = OFFERED.iter().map(|(_, name, value)| match value {
                    Some(value) if with_values => format!("{name}={value}"),
                    _ => name.to_string(),
                });
                self.listing(server, nick, "LS", offered.collect())
            }
            "LIST" => {
                let on = OFFERED
                    .iter()
                    .filter(|(cap, _, _)| self.has(*cap))
                    .map(|(_, name, _)| name.to_string());
                self.listing(server, nick, "LIST", on.collect())
            }
            "REQ" => {
                self.negotiating |= !registered;
                let asked = params.get(1).map(String::as_str).unwrap_or("").trim();
                let verdict = if self.apply(asked) { "ACK" } else { "NAK" };
                vec![Message::new("CAP")
                    .source(server)
                    .params([nick, verdict])
                    .param(asked)]
            }
            "END" => {
                self.negotiating = false;
                Vec::new()
            }
            _ => vec![Numeric::InvalidCapCmd { subcommand: &sub }.to(server, nick)],
        }
    }

    /// Turns on and off what `asked` lists (`a b -c`), all or none: false if any name is not
    /// offered, or asks to turn cap-notify off for a 302 client (it cannot be).
    fn apply(&mut self, asked: &str) -> bool {
        let mut enabled = self.enabled;
        let mut any = false;
        for word in asked.split(' ').filter(|w| !w.is_empty()) {
            any = true;
            let (off, name) = match word.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, word),
            };
            let Some(cap) = by_name(name) else {
                return false;
            };
            if off {
                if cap == Cap::CapNotify && self.version >= CAP_302 {
                    return false;
                }
                enabled &= !bit(cap);
            } else {
                enabled |= bit(cap);
            }
        }
        self.enabled = enabled;
        any
    }

    /// `CAP nick LS|LIST :names`, over several lines when they do not fit in one; lines before the
    /// last carry `*` for 302 clients (older ones get one line per part, as they expect).
    fn listing(&self, server: &str, nick: &str, sub: &str, names: Vec<String>) -> Vec<Message> {
        // Room for `:server CAP nick SUB * :` and CR LF.
        let room = MAX_BODY_BYTES.saturating_sub(server.len() + nick.len() + sub.len() + 16);
        let mut parts: Vec<String> = vec![String::new()];
        for name in names {
            let last = parts.last_mut().expect("never empty");
            if !last.is_empty() && last.len() + 1 + name.len() > room {
                parts.push(name);
            } else {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(&name);
            }
        }
        let count = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(n, part)| {
                let mut m = Message::new("CAP").source(server).params([nick, sub]);
                if n + 1 < count && self.version >= CAP_302 {
                    m = m.param("*");
                }
                m.param(part)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::parse;
    use super::*;

    /// Runs `CAP line` as a client would send it, and returns the reply lines.
    fn cap(caps: &mut Caps, line: &str, registered: bool) -> Vec<String> {
        let message = parse(format!("CAP {line}").as_bytes()).expect("a CAP line");
        caps.handle(&message.params, "srv", "*", registered)
            .iter()
            .map(Message::line)
            .collect()
    }

    #[test]
    fn ls_302_lists_values_holds_registration_and_implies_cap_notify() {
        let mut caps = Caps::new();
        assert!(!caps.holds_registration());
        let lines = cap(&mut caps, "LS 302", false);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with(":srv CAP * LS :cap-notify server-time "));
        for (_, name, value) in OFFERED {
            let listed = match value {
                Some(value) => format!("{name}={value}"),
                None => name.to_string(),
            };
            assert!(lines[0].contains(&listed), "{listed} in {}", lines[0]);
        }
        assert!(caps.holds_registration());
        assert!(caps.has(Cap::CapNotify));
        assert_eq!(caps.version(), 302);
        assert!(cap(&mut caps, "END", false).is_empty());
        assert!(!caps.holds_registration());
    }

    #[test]
    fn plain_ls_has_no_values_and_every_offer_once() {
        let mut caps = Caps::new();
        let lines = cap(&mut caps, "LS", false);
        assert!(lines[0].contains(" echo-message ") && !lines[0].contains('='));
        assert!(!caps.has(Cap::CapNotify));
        let listed = lines[0]
            .trim_end()
            .rsplit_once(" :")
            .expect("trailing")
            .1
            .to_string();
        let names: Vec<&str> = listed.split(' ').collect();
        assert_eq!(names.len(), OFFERED.len());
        // Each table row has its own bit.
        let mut all = Caps::new();
        let every: Vec<&str> = OFFERED.iter().map(|(_, n, _)| *n).collect();
        assert!(all.apply(&every.join(" ")));
        assert_eq!(all.enabled.count_ones() as usize, OFFERED.len());
    }

    #[test]
    fn req_is_all_or_nothing() {
        let mut caps = Caps::new();
        let lines = cap(&mut caps, "REQ :server-time  echo-message", false);
        assert_eq!(lines, [":srv CAP * ACK :server-time  echo-message\r\n"]);
        assert!(caps.has(Cap::ServerTime) && caps.has(Cap::EchoMessage));
        assert!(caps.holds_registration(), "REQ starts negotiation too");
        let lines = cap(&mut caps, "REQ :batch bogus-cap", false);
        assert_eq!(lines, [":srv CAP * NAK :batch bogus-cap\r\n"]);
        assert!(!caps.has(Cap::Batch), "a NAK changes nothing");
        // A value cannot be requested, and an empty request is refused.
        assert_eq!(
            cap(&mut caps, "REQ sasl=PLAIN", false),
            [":srv CAP * NAK sasl=PLAIN\r\n"]
        );
        assert_eq!(cap(&mut caps, "REQ :", false), [":srv CAP * NAK :\r\n"]);
    }

    #[test]
    fn req_minus_turns_off() {
        let mut caps = Caps::new();
        cap(&mut caps, "REQ :echo-message multi-prefix", true);
        assert!(
            !caps.holds_registration(),
            "after registration nothing is held"
        );
        let lines = cap(&mut caps, "REQ :-echo-message", true);
        assert_eq!(lines, [":srv CAP * ACK -echo-message\r\n"]);
        assert!(!caps.has(Cap::EchoMessage) && caps.has(Cap::MultiPrefix));
        let lines = cap(&mut caps, "LIST", true);
        assert_eq!(lines, [":srv CAP * LIST multi-prefix\r\n"]);
    }

    #[test]
    fn cap_notify_stays_on_for_302() {
        let mut caps = Caps::new();
        cap(&mut caps, "LS 302", false);
        assert_eq!(
            cap(&mut caps, "REQ -cap-notify", false),
            [":srv CAP * NAK -cap-notify\r\n"]
        );
        assert!(caps.has(Cap::CapNotify));
        // A 301 client may turn it on and off.
        let mut old = Caps::new();
        cap(&mut old, "REQ cap-notify", false);
        cap(&mut old, "REQ -cap-notify", false);
        assert!(!old.has(Cap::CapNotify));
    }

    #[test]
    fn bad_subcommands_are_answered() {
        let mut caps = Caps::new();
        assert_eq!(
            cap(&mut caps, "FOO", false),
            [":srv 410 * FOO :Invalid CAP command\r\n"]
        );
        assert_eq!(
            caps.handle(&[], "srv", "*", false)[0].line(),
            ":srv 461 * CAP :Not enough parameters\r\n"
        );
        // Subcommands are case-insensitive.
        assert_eq!(cap(&mut caps, "ls", false).len(), 1);
    }

    #[test]
    fn long_listings_split_with_a_star_for_302() {
        let caps = Caps {
            version: 302,
            ..Caps::default()
        };
        let names: Vec<String> = (0..60).map(|n| format!("vendor.example/cap-{n}")).collect();
        let lines = caps.listing("srv", "ann", "LS", names.clone());
        assert!(lines.len() > 1);
        let mut seen = Vec::new();
        for (n, m) in lines.iter().enumerate() {
            assert!(m.line().len() <= MAX_BODY_BYTES);
            let star = m.params.len() == 4;
            assert_eq!(
                star,
                n + 1 < lines.len(),
                "only lines before the last have *"
            );
            seen.extend(
                m.params
                    .last()
                    .expect("names")
                    .split(' ')
                    .map(str::to_string),
            );
        }
        assert_eq!(seen, names);
    }
}
