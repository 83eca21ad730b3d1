//! WHO (and WHOX) and WHOIS: who is here, as IRC asks it.

use super::*;

impl Session {
    pub(super) fn who(&mut self, p: &[String]) {
        let Some(mask_arg) = p.first().cloned() else {
            self.numeric(Numeric::EndOfWho { mask: "*" });
            return;
        };
        let whox = p
            .get(1)
            .and_then(|f| f.strip_prefix('%'))
            .map(str::to_string);
        let rows: Vec<(String, String, bool)> = if mask_arg.starts_with('#') {
            match self.hub.room(&mask_arg) {
                Some(room) => {
                    let label = room.label();
                    self.roster(&room)
                        .into_iter()
                        .map(|(nick, op)| (label.clone(), nick, op))
                        .collect()
                }
                None => Vec::new(),
            }
        } else {
            match name_from_nick(&mask_arg)
                .ok()
                .and_then(|n| self.hub.target(&n))
            {
                Some(t) => {
                    let channel = t.rooms.first().map_or("*".to_string(), |r| r.label());
                    vec![(channel, nick_from_name(&t.name), false)]
                }
                None => Vec::new(),
            }
        };
        for (channel, nick, op) in rows {
            let flags = if op { "H@" } else { "H" };
            match &whox {
                Some(spec) => {
                    let (fields, token) = spec.split_once(',').unwrap_or((spec.as_str(), ""));
                    let mut values = Vec::new();
                    for field in fields.chars() {
                        match field {
                            't' => values.push(token.to_string()),
                            'c' => values.push(channel.clone()),
                            'u' => values.push("chat".to_string()),
                            'i' => values.push("255.255.255.255".to_string()),
                            'h' => values.push("chatd".to_string()),
                            's' => values.push(self.server().to_string()),
                            'n' => values.push(nick.clone()),
                            'f' => values.push(flags.to_string()),
                            'd' => values.push("0".to_string()),
                            'l' => values.push("0".to_string()),
                            'a' => values.push("0".to_string()),
                            'o' => values.push("n/a".to_string()),
                            'r' => values.push(nick.clone()),
                            _ => {}
                        }
                    }
                    self.numeric(Numeric::WhoxReply { fields: &values });
                }
                None => self.numeric(Numeric::WhoReply {
                    channel: &channel,
                    user: "chat",
                    host: "chatd",
                    server: &self.server(),
                    nick: &nick,
                    flags,
                    hops: 0,
                    realname: &nick,
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
            self.numeric(Numeric::NoSuchNick { nick: &asked });
            self.numeric(Numeric::EndOfWhois { nick: &asked });
            return;
        };
        let nick = nick_from_name(&target.name);
        self.numeric(Numeric::WhoisUser {
            nick: &nick,
            user: "chat",
            host: "chatd",
            realname: &nick,
        });
        let channels: Vec<String> = target.rooms.iter().map(|r| r.label()).collect();
        if !channels.is_empty() {
            let joined = channels.join(" ");
            self.numeric(Numeric::WhoisChannels {
                nick: &nick,
                channels: &joined,
            });
        }
        self.numeric(Numeric::WhoisServer {
            nick: &nick,
            server: &self.server(),
            info: "chatd",
        });
        if let Some(account) = &target.account {
            self.numeric(Numeric::WhoisAccount {
                nick: &nick,
                account,
            });
        }
        self.numeric(Numeric::EndOfWhois { nick: &nick });
    }
}
