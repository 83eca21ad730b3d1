//! A member's account commands: checked and limited here, hashed on the blocking pool
//! ([`crate::auth`]), and finished when the result comes back as a [`Control::Auth`], in order
//! with the member's other input (which waits meanwhile, see [`Member::gather`]).

use std::future::Future;

use super::Member;
use crate::auth::AuthError;
use crate::control::{AuthDone, Control};
use crate::guard::share::share_of;
use crate::names;
use crate::protocol::{self, moderation::AccountCommand};

impl Member {
    /// Starts an account command.
    pub(super) fn account_command(&mut self, command: AccountCommand) {
        let accounts = self.hub.accounts().clone();
        let account = self.account.clone();
        // Limits count by address, or by IPv6 prefix: one host's addresses are one guesser.
        let ip = share_of(self.addr.ip(), self.hub.config().ipv6_prefix);
        match command {
            AccountCommand::Register(password) => {
                let name = self.name.clone();
                let key = names::key(&name);
                if account.is_some() || accounts.registered(&key).is_some() {
                    self.reply(protocol::error(&format!("{name} is already registered")));
                    return;
                }
                if names::normalize(&name).is_err()
                    || name.to_lowercase().starts_with(names::GUEST_PREFIX)
                {
                    self.reply(protocol::error(
                        "pick a name first (/nick NAME), then /register PASSWORD",
                    ));
                    return;
                }
                if self.limited(ip, &key) {
                    return;
                }
                self.run_auth(async move {
                    let result = accounts.register(name.clone(), password).await;
                    AuthDone::Registered(name, result)
                });
            }
            AccountCommand::Login {
                name,
                password,
                client,
            } => {
                let key = names::key(&name);
                if account.as_deref() == Some(key.as_str()) {
                    self.reply(protocol::error(&format!(
                        "you are logged in as {} already",
                        self.name
                    )));
                    return;
                }
                if self.limited(ip, &key) {
                    return;
                }
                self.login_client = client;
                self.run_auth(async move {
                    AuthDone::LoggedIn(accounts.login(name, password, ip).await)
                });
            }
            AccountCommand::Password { old, new } => {
                let Some(key) = account else {
                    self.reply(protocol::error("log in first: /login NAME PASSWORD"));
                    return;
                };
                if self.limited(ip, &key) {
                    return;
                }
                self.run_auth(
                    async move { AuthDone::Changed(accounts.change(key, old, new).await) },
                );
            }
            AccountCommand::Unregister(password) => {
                let Some(key) = account else {
                    self.reply(protocol::error("log in first: /login NAME PASSWORD"));
                    return;
                };
                if self.limited(ip, &key) {
                    return;
                }
                let store = self.hub.store().clone();
                self.run_auth(async move {
                    let result = accounts.unregister(key.clone(), password).await;
                    if result.is_ok() {
                        // Whoever registers the name next must not get what was kept for it.
                        let (kept, forget) = (store.clone(), key.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            kept.take_messages(&forget);
                            // Nor where its clients stopped reading.
                            kept.set_state(&crate::store::seen::state_key(&forget), None);
                        })
                        .await;
                        // Rights in closed rooms (only stored) go before the member is told;
                        // open rooms' own copies are changed when it is.
                        let forget = key.clone();
                        let rooms = tokio::task::spawn_blocking(move || {
                            crate::room::forget_operator(&store, &forget)
                        })
                        .await;
                        tracing::debug!(account = %key, ?rooms, "operator rights withdrawn");
                    }
                    AuthDone::Unregistered(key, result)
                });
            }
        }
    }

    /// Counts an attempt; true (and the member told) when over the limit.
    fn limited(&self, ip_key: std::net::IpAddr, key: &str) -> bool {
        match self.hub.accounts().attempt(ip_key, key) {
            Ok(()) => false,
            Err(e) => {
                let ip = match self.hub.config().private_logs {
                    false => self.addr.ip().to_string(),
                    true => "hidden".to_string(),
                };
                // Once a minute per address: a guesser is refused thousands of times.
                if self.hub.accounts().first_refusal(ip_key) {
                    tracing::info!(%ip, account = key, "account attempts over the limit");
                }
                self.reply(protocol::error(&e.to_string()));
                true
            }
        }
    }

    /// Runs `job` off this member's task; its result comes back as a control.
    fn run_auth(&mut self, job: impl Future<Output = AuthDone> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reply(protocol::error(&AuthError::Unavailable.to_string()));
            return;
        };
        let from = share_of(self.addr.ip(), self.hub.config().ipv6_prefix);
        let reserved = match self.hub.accounts().reserve(from) {
            Ok(reserved) => reserved,
            Err(e) => {
                self.reply(protocol::error(&e.to_string()));
                return;
            }
        };
        self.busy = true;
        let tx = self.control_tx.clone();
        runtime.spawn(async move {
            let done = job.await;
            drop(reserved);
            // Gone members need no answer.
            let _ = tx.send(Control::Auth(done)).await;
        });
    }

    /// Finishes an account command with its result.
    pub(super) fn auth_done(&mut self, done: AuthDone) {
        let addr = self.hub.config().log_addr(self.addr);
        match done {
            AuthDone::Registered(name, Ok(())) => {
                self.account = Some(names::key(&name));
                self.hub.set_account(self.id, self.account.clone());
                self.tell_account();
                tracing::info!(%addr, account = %name, "account registered");
                self.reply(protocol::notice(&format!(
                    "{name} is registered to you; next time: /login {name} PASSWORD"
                )));
            }
            AuthDone::LoggedIn(Ok(name)) => {
                if !self.login_claim_first(&name) {
                    self.login_now(&name);
                }
            }
            AuthDone::Changed(Ok(())) => {
                tracing::info!(%addr, account = %self.name, "password changed");
                self.reply(protocol::notice("password changed"));
            }
            AuthDone::Unregistered(key, Ok(())) => {
                if self.hub.account_of(self.id).as_deref() == Some(key.as_str()) {
                    self.hub.set_account(self.id, None);
                    self.account = None;
                    self.tell_account();
                }
                // Whoever registers the name next must not inherit its operator rights.
                for room in self.hub.open_rooms() {
                    room.moderate(|m| m.drop_operator(&key));
                }

                tracing::info!(%addr, account = %self.name, "account removed");
                self.reply(protocol::notice(&format!(
                    "{} is no longer registered",
                    self.name
                )));
            }
            AuthDone::LoggedIn(Err(e)) => {
                tracing::info!(%addr, error = %e, "login refused");
                self.reply(protocol::error(&e.to_string()));
            }
            AuthDone::Registered(_, Err(e))
            | AuthDone::Changed(Err(e))
            | AuthDone::Unregistered(_, Err(e)) => {
                self.reply(protocol::error(&e.to_string()));
            }
        }
    }

    /// Logs the member in to the account `name` (its password checked already) under the name it
    /// has: IRC's way (SASL, OPER, NickServ), where an account and a nick are apart. The
    /// account's name stays its own: nobody else may take it meanwhile.
    pub fn log_in_keeping_name(&mut self, name: &str) {
        let key = names::key(name);
        tracing::info!(addr = %self.hub.config().log_addr(self.addr), account = %name, "logged in");
        // The account it leaves keeps its place in the rooms this member is in.
        self.note_read(&self.hub.rooms_of(self.id));
        self.hub.set_account(self.id, Some(key.clone()));
        self.account = Some(key);
        self.tell_account();
        self.deliver_kept();
    }

    /// Tells the rooms this member is in that its account changed (IRC's account-notify; an
    /// IRC member logging in at registration is in none yet).
    fn tell_account(&self) {
        let rooms = self.hub.rooms_of(self.id);
        if rooms.is_empty() {
            return;
        }
        let account = self.account.as_ref().map(|key| {
            self.hub
                .accounts()
                .registered(key)
                .unwrap_or_else(|| key.clone())
        });
        let what = std::sync::Arc::new(crate::room::Happening::Account {
            name: self.name.clone(),
            account,
            change: crate::room::fresh_change(),
        });
        for room in rooms {
            room.signal(self.id, std::sync::Arc::clone(&what));
        }
    }

    /// Gives the member the name of the account `name` it logged in to (in a cluster: once the
    /// name is claimed); false when another session holds it.
    pub(super) fn login_now(&mut self, name: &str) -> bool {
        match self.hub.login(self.id, name) {
            Ok((old, new)) => {
                tracing::info!(addr = %self.hub.config().log_addr(self.addr), account = %new, "logged in");
                self.note_read(&self.hub.rooms_of(self.id));
                self.account = Some(names::key(&new));
                if let Some(client) = self.login_client.take() {
                    self.client = client;
                }
                let told = format!("you are logged in as {new}");
                self.took_name(&old, new, &told);
                self.tell_account();
                self.deliver_kept();
                self.replay_missed();
                true
            }
            Err(e) => {
                self.reply(protocol::error(&e.to_string()));
                false
            }
        }
    }
}
