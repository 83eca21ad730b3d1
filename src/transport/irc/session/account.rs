//! Accounts and server operators on the IRC face: SASL PLAIN (`AUTHENTICATE`), `OPER`, and what
//! server operators do (`KILL`, `WALLOPS`, `GBAN`, `LOCKDOWN`, mapped onto chatd's `/kill`,
//! `/wall`, `/gban`, `/lockdown`). Passwords are checked by [`crate::auth::Accounts`] off the
//! connection's task; the connection waits on [`wait`] beside its socket and stops taking the
//! client's lines until the answer is in, so replies stay in order and nothing else is held up.
//! A successful check logs the member in to the account under the nick it has
//! ([`crate::member::Member::log_in_keeping_name`]).

use tokio::sync::oneshot;

use super::super::cap::Cap;
use super::super::deliver::mask;
use super::super::message::Message;
use super::super::nick::name_from_nick;
use super::super::numeric::Numeric;
use super::super::sasl::{self, Sasl, Step};
use super::Session;
use crate::auth::AuthError;
use crate::guard::share::share_of;
use crate::names;
use crate::protocol::{self, moderation::Secret};

/// What a password check was started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in super::super) enum Purpose {
    /// `AUTHENTICATE` (SASL PLAIN).
    Sasl,
    /// `OPER name password`.
    Oper,
    /// NickServ `IDENTIFY`.
    Identify,
    /// NickServ `REGISTER` (the result is the name registered).
    Register,
}

/// A finished check: what it was for, and the account's name as registered (or why not).
pub(in super::super) type Checked = (Purpose, Result<String, AuthError>);

/// One connection's account state.
#[derive(Default)]
pub(in super::super) struct State {
    sasl: Sasl,
    /// The account SASL logged in to before registration; the member logs in to it on registering.
    sasl_account: Option<String>,
    /// The client SASL's `alice@phone` named (for "what you missed"); the transport's if none.
    sasl_client: Option<String>,
    /// The check in flight, if any.
    pending: Option<(Purpose, oneshot::Receiver<Result<String, AuthError>>)>,
}

impl State {
    /// Whether a check is in flight (the client's next lines wait for it).
    pub(in super::super) fn busy(&self) -> bool {
        self.pending.is_some()
    }
}

/// The check in flight's result; never ready when none is.
pub(in super::super) async fn wait(state: &mut State) -> Checked {
    let Some((purpose, rx)) = state.pending.as_mut() else {
        return std::future::pending().await;
    };
    let purpose = *purpose;
    let result = rx.await.unwrap_or(Err(AuthError::Unavailable));
    state.pending = None;
    (purpose, result)
}

impl Session {
    /// Whether the client's lines must wait for a password check.
    pub fn busy(&self) -> bool {
        self.account.busy()
    }

    /// The member whose IRC mask is `source`: its account (as registered) if it is logged in,
    /// and its real name; None when `source` is no member (the server, NickServ, one gone).
    fn sender(&self, source: &str) -> Option<(Option<String>, String)> {
        // Members' masks are `nick!chat@chatd` (see deliver::mask); services' are not.
        let nick = source.strip_suffix("!chat@chatd")?;
        let target = self.hub.target(&name_from_nick(nick).ok()?)?;
        let account = target
            .account
            .map(|key| self.hub.accounts().registered(&key).unwrap_or(key));
        Some((account, target.about.realname))
    }

    /// Adds what account-tag and extended-join say about the sender of `message`: the `account`
    /// tag, and JOIN's account (`*` when not logged in) and real name.
    pub(super) fn with_account(&self, mut message: Message) -> Message {
        let tag = self.caps.has(Cap::AccountTag);
        let join = self.caps.has(Cap::ExtendedJoin)
            && message.command == "JOIN"
            && message.params.len() == 3;
        if !tag && !join {
            return message;
        }
        let Some((account, realname)) = message.source.as_deref().and_then(|s| self.sender(s))
        else {
            return message;
        };
        if join {
            message.params[1] = account.clone().unwrap_or_else(|| "*".to_string());
            if !realname.is_empty() {
                message.params[2] = realname;
            }
        }
        match account {
            Some(account) if tag => message.tag("account", &account),
            _ => message,
        }
    }

    /// Starts checking `password` for account `name` (or registering it, for
    /// [`Purpose::Register`]) off this task; Err when the limits refuse it now.
    pub(super) fn start_check(
        &mut self,
        purpose: Purpose,
        name: String,
        password: &str,
    ) -> Result<(), AuthError> {
        let accounts = self.hub.accounts().clone();
        let from = share_of(self.addr.ip(), self.hub.config().ipv6_prefix);
        accounts.attempt(from, &names::key(&name))?;
        let reserved = accounts.reserve(from)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuthError::Unavailable)?;
        let password = Secret::new(password);
        let (tx, rx) = oneshot::channel();
        runtime.spawn(async move {
            let result = match purpose {
                Purpose::Register => accounts
                    .register(name.clone(), password)
                    .await
                    .map(|()| name),
                _ => accounts.login(name, password, from).await,
            };
            drop(reserved);
            // A client gone meanwhile needs no answer.
            let _ = tx.send(result);
        });
        self.account.pending = Some((purpose, rx));
        Ok(())
    }

    /// A check finished: answers it, and logs the member in when it succeeded.
    pub fn checked(&mut self, (purpose, result): Checked) {
        match purpose {
            Purpose::Sasl => self.sasl_checked(result),
            Purpose::Oper => self.oper_checked(result),
            Purpose::Identify | Purpose::Register => self.service_checked(purpose, result),
        }
    }

    /// `AUTHENTICATE param`.
    pub(super) fn authenticate(&mut self, p: &[String]) {
        if !self.caps.has(Cap::Sasl) {
            self.numeric(Numeric::SaslFail {});
            return;
        }
        // Logged in already: a new exchange may switch accounts, as `/login` may (IRCv3 sasl-3.2).
        let Some(param) = p.first() else {
            self.numeric(Numeric::NeedMoreParams {
                command: "AUTHENTICATE",
            });
            return;
        };
        match self.account.sasl.authenticate(param) {
            Step::Challenge => self.send(Message::new("AUTHENTICATE").param("+")),
            Step::Wait => {}
            Step::Plain(plain) => {
                // `alice@phone`: account alice, client phone (ergo's and soju's convention).
                let (authcid, client) = crate::store::seen::split_account(&plain.authcid);
                let client = match client.map(crate::store::seen::client_name) {
                    None => None,
                    Some(Some(client)) => Some(client),
                    Some(None) => {
                        self.notice_from_server("a client name (alice@CLIENT) is 1 to 32 letters, digits, '-', '_' or '.'");
                        self.numeric(Numeric::SaslFail {});
                        return;
                    }
                };
                let authzid = crate::store::seen::split_account(&plain.authzid).0;
                let same = authzid.is_empty() || names::key(authzid) == names::key(authcid);
                if !same {
                    self.numeric(Numeric::SaslFail {});
                    return;
                }
                self.account.sasl_client = client;
                let authcid = authcid.to_string();
                if let Err(e) = self.start_check(Purpose::Sasl, authcid, &plain.password) {
                    self.notice_from_server(&e.to_string());
                    self.numeric(Numeric::SaslFail {});
                }
            }
            Step::UnknownMechanism => {
                self.numeric(Numeric::SaslMechs {
                    mechanisms: sasl::MECHANISMS,
                });
                self.numeric(Numeric::SaslFail {});
            }
            Step::Aborted => self.numeric(Numeric::SaslAborted {}),
            Step::TooLong => self.numeric(Numeric::SaslTooLong {}),
            Step::Failed => self.numeric(Numeric::SaslFail {}),
        }
    }

    fn sasl_checked(&mut self, result: Result<String, AuthError>) {
        let name = match result {
            Ok(name) => name,
            Err(e) => {
                if !matches!(e, AuthError::Refused) {
                    self.notice_from_server(&e.to_string());
                }
                self.numeric(Numeric::SaslFail {});
                return;
            }
        };
        let who = mask(&self.nick());
        self.numeric(Numeric::LoggedIn {
            mask: &who,
            account: &name,
        });
        self.numeric(Numeric::SaslSuccess {});
        if self.member.is_some() {
            let client = self.account.sasl_client.take();
            if let (Some(member), Some(client)) = (self.member.as_mut(), client) {
                // The place of the client it was stays with the account it leaves.
                member.log_in_keeping_name(&name);
                member.set_client(client);
            } else {
                self.log_in_checked(&name);
            }
        } else {
            self.account.sasl_account = Some(name);
        }
    }

    /// Whether SASL logged this client in to the account whose name has `key` (before
    /// registration): that account's nick is its own even while other sessions go by it.
    pub(super) fn sasl_logged_in_as(&self, key: &str) -> bool {
        self.account
            .sasl_account
            .as_deref()
            .is_some_and(|name| names::key(name) == key)
    }

    /// At registration: logs the new member in to the account SASL checked, if any, before it
    /// takes its nick (which may be the account's name, refused to anyone not logged in to it).
    pub(super) fn log_in_registered(&mut self, member: &mut crate::member::Member) {
        if let Some(name) = self.account.sasl_account.take() {
            if let Some(client) = self.account.sasl_client.take() {
                member.set_client(client);
            }
            member.log_in_keeping_name(&name);
        }
    }

    /// Logs the member in to account `name` (checked already); its nick stays as it is, as IRC
    /// clients expect of SASL, OPER and NickServ.
    pub(super) fn log_in_checked(&mut self, name: &str) {
        if let Some(member) = self.member.as_mut() {
            member.log_in_keeping_name(name);
        }
    }

    /// `OPER name password`: a server operator's account (`--oper`) gets 381 and user mode +o, and
    /// the member is logged in to it (so takes its name, as with `/login`).
    pub(super) fn oper(&mut self, p: &[String]) {
        let [name, password, ..] = p else {
            self.numeric(Numeric::NeedMoreParams { command: "OPER" });
            return;
        };
        if !self.hub.is_oper(Some(&names::key(name))) {
            self.numeric(Numeric::NoOperHost {});
            return;
        }
        if let Err(e) = self.start_check(Purpose::Oper, name.clone(), password) {
            self.notice_from_server(&e.to_string());
            self.numeric(Numeric::PasswdMismatch {});
        }
    }

    fn oper_checked(&mut self, result: Result<String, AuthError>) {
        match result {
            Ok(name) if self.hub.is_oper(Some(&names::key(&name))) => {
                // Told under the nick the client had when it asked; the login's rename follows.
                self.numeric(Numeric::YoureOper {});
                let nick = self.nick();
                self.send(
                    Message::new("MODE")
                        .source(&mask(&nick))
                        .param(nick.as_str())
                        .param("+o"),
                );
                let already =
                    self.member.as_ref().and_then(|m| m.account()) == Some(&names::key(&name));
                if !already {
                    self.log_in_checked(&name);
                }
            }
            Ok(_) => self.numeric(Numeric::NoOperHost {}),
            Err(AuthError::Refused) => self.numeric(Numeric::PasswdMismatch {}),
            Err(e) => {
                self.notice_from_server(&e.to_string());
                self.numeric(Numeric::PasswdMismatch {});
            }
        }
    }

    /// Whether the member is a server operator; 481 if not.
    fn oper_only(&mut self) -> bool {
        let account = self.member.as_ref().and_then(|m| m.account());
        if self.hub.is_oper(account) {
            return true;
        }
        self.numeric(Numeric::NoPrivileges {});
        false
    }

    /// `KILL`, `WALLOPS`, `GBAN`, `LOCKDOWN`: chatd's server-operator commands, for server
    /// operators only (481 for others, before chatd's own check).
    pub(super) fn server_command(&mut self, command: &str, p: &[String]) {
        let Some(first) = p.first() else {
            self.numeric(Numeric::NeedMoreParams { command });
            return;
        };
        if !self.oper_only() {
            return;
        }
        let line = match command {
            "KILL" => {
                let name = name_from_nick(first).unwrap_or_else(|_| first.clone());
                match p.get(1) {
                    Some(reason) => format!("/kill {name} {reason}"),
                    None => format!("/kill {name}"),
                }
            }
            "WALLOPS" => format!("/wall {first}"),
            "GBAN" => format!("/gban {}", p.join(" ")),
            _ => format!("/lockdown {first}"),
        };
        if let Some(member) = self.member.as_mut() {
            if member.handle(protocol::parse_tcp_line(line.as_bytes())) == crate::member::Flow::Quit
            {
                self.ended = Some(super::Ended::Quit);
            }
        }
    }

    pub(super) fn notice_from_server(&mut self, text: &str) {
        let nick = self.nick();
        let server = self.server();
        self.send(
            Message::new("NOTICE")
                .source(&server)
                .param(nick)
                .param(text),
        );
    }
}
