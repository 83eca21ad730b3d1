//! WHO (and WHOX), WHOIS, WHOWAS and USERHOST: who is here (or was), as IRC asks it.

use super::*;
use crate::hub::{About, Target};

/// Most WHO replies to one query; a server of thousands is not listed whole.
const WHO_LIMIT: usize = 500;
/// Most WHOWAS entries given when the client asks for no count.
const WHOWAS_DEFAULT: usize = 8;

/// One WHO line: where, who, and its flags.
struct WhoRow {
    channel: String,
    nick: String,
    about: About,
    account: Option<String>,
    op: bool,
    voiced: bool,
    oper: bool,
}

/// Whether `text` matches the IRC mask `mask` (`*` any run, `?` one character), without case.
pub fn mask_matches(mask: &str, text: &str) -> bool {
    let mask: Vec<char> = mask.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let (mut m, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if m < mask.len() && (mask[m] == '?' || mask[m] == text[t]) {
            m += 1;
            t += 1;
        } else if m < mask.len() && mask[m] == '*' {
            star = Some(m);
            mark = t;
            m += 1;
        } else if let Some(s) = star {
            m = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    mask[m..].iter().all(|&c| c == '*')
}

impl Session {
    /// Whether `target` operates `room`.
    fn operates(&self, target: &Target, room: &Room) -> bool {
        room.moderate(|m| m.is_op(target.who()))
    }

    fn row(&self, target: &Target, room: Option<&Arc<Room>>) -> WhoRow {
        WhoRow {
            channel: room.map_or_else(|| "*".to_string(), |r| r.label()),
            nick: nick_from_name(&target.name),
            about: target.about.clone(),
            account: target
                .account
                .as_ref()
                .map(|key| self.hub.accounts().registered(key).unwrap_or(key.clone())),
            op: room.is_some_and(|r| self.operates(target, r)),
            voiced: room.is_some_and(|r| r.moderate(|m| m.is_voiced(target.id))),
            oper: self.hub.is_oper(target.account.as_deref()),
        }
    }

    /// Rows for the members of other nodes in `room`: what this node knows of them is their
    /// name, transport and login.
    fn remote_rows(&self, room: &Room) -> Vec<WhoRow> {
        let Some(cluster) = crate::cluster::Bridge::of(&self.hub) else {
            return Vec::new();
        };
        let channel = room.label();
        cluster
            .members_in(&room.name().key)
            .into_iter()
            .map(|(_, m)| WhoRow {
                channel: channel.clone(),
                nick: nick_from_name(&m.name),
                account: m.registered.then(|| m.name.clone()),
                about: About {
                    user: m.transport,
                    realname: m.name,
                    ..About::default()
                },
                op: false,
                voiced: false,
                oper: false,
            })
            .collect()
    }

    pub(super) fn who(&mut self, p: &[String]) {
        let Some(mask_arg) = p.first().cloned() else {
            self.numeric(Numeric::EndOfWho { mask: "*" });
            return;
        };
        let whox = p
            .get(1)
            .and_then(|f| f.strip_prefix('%'))
            .map(str::to_string);
        let rows: Vec<WhoRow> = if mask_arg.starts_with('#') {
            match self.hub.room(&mask_arg) {
                Some(room) => {
                    let key = room.name().key.clone();
                    let mut list: Vec<WhoRow> = self
                        .hub
                        .targets(|t| t.in_room(&key).is_some())
                        .iter()
                        .map(|t| self.row(t, Some(&room)))
                        .collect();
                    list.extend(self.remote_rows(&room));
                    list.sort_by(|a, b| a.nick.cmp(&b.nick));
                    list
                }
                None => Vec::new(),
            }
        } else {
            let mine: Vec<String> = self
                .feeds
                .iter()
                .map(|f| f.room.name().key.clone())
                .collect();
            let mask = mask_arg.clone();
            let wild = mask.contains(['*', '?']) || mask == "0";
            let me = self.id();
            let mut list: Vec<WhoRow> = self
                .hub
                .targets(|t| {
                    let hidden = wild
                        && t.about.invisible
                        && t.id != me
                        && !t.rooms.iter().any(|r| mine.contains(&r.name().key));
                    !hidden && (mask == "0" || mask_matches(&mask, &nick_from_name(&t.name)))
                })
                .iter()
                .take(WHO_LIMIT)
                .map(|t| {
                    // A channel both share, else any of its channels.
                    let room = t
                        .rooms
                        .iter()
                        .find(|r| mine.contains(&r.name().key))
                        .or_else(|| t.rooms.first());
                    self.row(t, room)
                })
                .collect();
            list.sort_by(|a, b| a.nick.cmp(&b.nick));
            list
        };
        let server = self.server();
        for row in rows {
            let mut flags = String::from(if row.about.away.is_some() { "G" } else { "H" });
            if row.oper {
                flags.push('*');
            }
            if row.op {
                flags.push('@');
            }
            // Voice too, when the client takes several prefixes or it is the only one.
            if row.voiced && (!row.op || self.caps.has(Cap::MultiPrefix)) {
                flags.push('+');
            }
            match &whox {
                Some(spec) => {
                    let (fields, token) = spec.split_once(',').unwrap_or((spec.as_str(), ""));
                    let mut values = Vec::new();
                    // WHOX gives the fields in this order, whatever order they were asked in.
                    for field in "tcuihsnfdlaor".chars().filter(|f| fields.contains(*f)) {
                        values.push(match field {
                            't' => token.to_string(),
                            'c' => row.channel.clone(),
                            'u' => row.about.user.clone(),
                            'i' => "255.255.255.255".to_string(),
                            'h' => "chatd".to_string(),
                            's' => server.to_string(),
                            'n' => row.nick.clone(),
                            'f' => flags.clone(),
                            'd' => "0".to_string(),
                            'l' => "0".to_string(),
                            'a' => row.account.clone().unwrap_or_else(|| "0".to_string()),
                            'o' => "n/a".to_string(),
                            _ => row.about.realname.clone(),
                        });
                    }
                    self.numeric(Numeric::WhoxReply { fields: &values });
                }
                None => self.numeric(Numeric::WhoReply {
                    channel: &row.channel,
                    user: &row.about.user,
                    host: "chatd",
                    server: &server,
                    nick: &row.nick,
                    flags: &flags,
                    hops: 0,
                    realname: &row.about.realname,
                }),
            }
        }
        self.numeric(Numeric::EndOfWho { mask: &mask_arg });
    }

    pub(super) fn whois(&mut self, p: &[String]) {
        let Some(asked) = p.last().cloned() else {
            self.numeric(Numeric::NoNicknameGiven {});
            return;
        };
        let target = name_from_nick(&asked)
            .ok()
            .and_then(|n| self.hub.target(&n));
        let Some(target) = target else {
            if self.whois_remote(&asked) {
                return;
            }
            self.numeric(Numeric::NoSuchNick { nick: &asked });
            self.numeric(Numeric::EndOfWhois { nick: &asked });
            return;
        };
        let nick = nick_from_name(&target.name);
        self.numeric(Numeric::WhoisUser {
            nick: &nick,
            user: &target.about.user,
            host: "chatd",
            realname: &target.about.realname,
        });
        let channels: Vec<String> = target
            .rooms
            .iter()
            .map(|r| {
                let op = if self.operates(&target, r) { "@" } else { "" };
                format!("{op}{}", r.label())
            })
            .collect();
        let mine: Vec<String> = self
            .feeds
            .iter()
            .map(|f| f.room.name().key.clone())
            .collect();
        let hidden = target.about.invisible
            && target.id != self.id()
            && !target.rooms.iter().any(|r| mine.contains(&r.name().key));
        if !channels.is_empty() && !hidden {
            let joined = channels.join(" ");
            self.numeric(Numeric::WhoisChannels {
                nick: &nick,
                channels: &joined,
            });
        }
        let server = self.server();
        self.numeric(Numeric::WhoisServer {
            nick: &nick,
            server: &server,
            info: "chatd",
        });
        if let Some(away) = &target.about.away {
            self.numeric(Numeric::Away {
                nick: &nick,
                message: away,
            });
        }
        if self.hub.is_oper(target.account.as_deref()) {
            self.numeric(Numeric::WhoisOperator { nick: &nick });
        }
        let account = target
            .account
            .as_ref()
            .map(|key| self.hub.accounts().registered(key).unwrap_or(key.clone()));
        if let Some(account) = &account {
            self.numeric(Numeric::WhoisAccount {
                nick: &nick,
                account,
            });
        }
        self.numeric(Numeric::EndOfWhois { nick: &nick });
    }

    /// WHOIS of a member of another node (`--cluster`): what this node knows of it, its
    /// channels those this client shares with it; false when there is none by that nick.
    fn whois_remote(&mut self, asked: &str) -> bool {
        let found = name_from_nick(asked)
            .ok()
            .and_then(|name| crate::cluster::Bridge::of(&self.hub)?.remote_member(&name));
        let Some((node, member)) = found else {
            return false;
        };
        let nick = nick_from_name(&member.name);
        self.numeric(Numeric::WhoisUser {
            nick: &nick,
            user: &member.transport,
            host: "chatd",
            realname: &member.name,
        });
        let shared: Vec<&str> = member
            .rooms
            .iter()
            .filter(|p| self.feeds.iter().any(|f| f.room.name().key == p.key))
            .map(|p| p.label.as_str())
            .collect();
        if !shared.is_empty() {
            let channels = shared.join(" ");
            self.numeric(Numeric::WhoisChannels {
                nick: &nick,
                channels: &channels,
            });
        }
        self.numeric(Numeric::WhoisServer {
            nick: &nick,
            server: &node,
            info: "chatd",
        });
        if member.registered {
            self.numeric(Numeric::WhoisAccount {
                nick: &nick,
                account: &member.name,
            });
        }
        self.numeric(Numeric::EndOfWhois { nick: &nick });
        true
    }

    pub(super) fn whowas(&mut self, p: &[String]) {
        let Some(asked) = p.first().filter(|n| !n.is_empty()).cloned() else {
            self.numeric(Numeric::NoNicknameGiven {});
            return;
        };
        let count = match p.get(1).and_then(|c| c.parse::<i64>().ok()) {
            Some(n) if n > 0 => n as usize,
            _ => WHOWAS_DEFAULT,
        };
        let key = name_from_nick(&asked)
            .map(|n| crate::names::key(&n))
            .unwrap_or_default();
        let gone = self.hub.departed(&key);
        if gone.is_empty() {
            self.numeric(Numeric::WasNoSuchNick { nick: &asked });
        }
        for departed in gone.into_iter().take(count) {
            let nick = nick_from_name(&departed.name);
            self.numeric(Numeric::WhowasUser {
                nick: &nick,
                user: &departed.about.user,
                host: "chatd",
                realname: &departed.about.realname,
            });
            let server = self.server();
            self.numeric(Numeric::WhoisServer {
                nick: &nick,
                server: &server,
                info: "chatd",
            });
        }
        self.numeric(Numeric::EndOfWhowas { nick: &asked });
    }

    /// USERHOST: `nick=+user@host` (`-` when away, `*` for server operators), up to 5 nicks.
    pub(super) fn userhost(&mut self, p: &[String]) {
        if p.is_empty() {
            self.numeric(Numeric::NeedMoreParams {
                command: "USERHOST",
            });
            return;
        }
        let replies: Vec<String> = p
            .iter()
            .take(5)
            .filter_map(|nick| {
                let t = self.hub.target(&name_from_nick(nick).ok()?)?;
                let oper = if self.hub.is_oper(t.account.as_deref()) {
                    "*"
                } else {
                    ""
                };
                let away = if t.about.away.is_some() { '-' } else { '+' };
                Some(format!(
                    "{}{oper}={away}{}@chatd",
                    nick_from_name(&t.name),
                    t.about.user
                ))
            })
            .collect();
        let joined = replies.join(" ");
        self.numeric(Numeric::UserHost { replies: &joined });
    }
}

#[cfg(test)]
mod tests {
    use super::mask_matches;

    #[test]
    fn masks_match_like_irc_globs() {
        assert!(mask_matches("coolni*", "coolNick"));
        assert!(mask_matches("*", "anyone"));
        assert!(mask_matches("c?olnick", "CoolNick"));
        assert!(!mask_matches("cool", "coolNick"));
        assert!(mask_matches("*nick", "coolNick"));
        assert!(!mask_matches("x*", "coolNick"));
    }
}
