//! Accounts: registered names and their Argon2id password hashes, and the limits on guessing.
//!
//! Every account is kept in memory (so `/nick` can ask whether a name is registered under the
//! hub's lock, without I/O), and written through to the database when there is one
//! ([`crate::store::meta`]); without one they are gone at exit. Hashing and the database writes
//! that follow it run on tokio's blocking pool, at most [`hashers`] at once, so a burst of logins
//! costs CPU beside chat, never the async workers that deliver it. The in-memory map is updated
//! only after the database write succeeds, in the same blocking job: whoever asks next reads what
//! was written.
//!
//! - [`password`]: hashing and checking. [`attempts`]: the attempt limits. [`server`]: server
//!   bans and lockdown. [`opers`]: configured server operators. [`hash_password`]: `chatd
//!   hash-password`.

pub mod attempts;
pub mod hash_password;
pub mod opers;
pub mod password;
pub mod server;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::names;
use crate::protocol::moderation::Secret;
use crate::store::meta::{MetaDb, StoredAccount};
use attempts::Guesses;
use opers::{OperSpec, Operators};
use password::Cost;

/// Most password hashes computed at once: half the cores (at least one), since each takes a
/// whole core and the configured memory, and the other half must stay free for chat.
pub fn hashers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
/// Most account commands waiting for a hasher; more are refused at once ("server busy").
const MAX_WAITING: usize = 1024;
/// Most account commands from one address (IPv6: one prefix) waiting or hashing at once; more are
/// refused at once, so a few addresses cannot fill the whole queue.
pub const MAX_WAITING_PER_ADDRESS: usize = 3;
/// Most accounts the server holds.
pub const MAX_ACCOUNTS: usize = 100_000;

/// Why an account command failed, as the member is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The name is registered already.
    #[error("{0} is already registered")]
    Registered(String),
    /// No such account, or the wrong password (one answer for both, so names cannot be probed).
    #[error("wrong name or password")]
    Refused,
    /// Too many attempts from this address or for this account.
    #[error("too many attempts, wait {0}s")]
    TooMany(u64),
    /// Too many account commands waiting.
    #[error("server busy; try again in a moment")]
    Busy,
    /// Too many account commands from this address waiting ([`MAX_WAITING_PER_ADDRESS`]).
    #[error("too many account commands from your address are waiting; try again in a moment")]
    BusyFromAddress,
    /// The server holds [`MAX_ACCOUNTS`].
    #[error("the server has too many accounts")]
    Full,
    /// A server operator's password is set in the server's configuration, not by a command.
    #[error("{0} is a server operator whose password is set in the server's configuration")]
    Configured(String),
    /// The database or the hasher failed (logged; the member is told only this).
    #[error("accounts are not available right now")]
    Unavailable,
}

#[derive(Debug, Clone)]
struct Account {
    name: String,
    phc: String,
}

struct Inner {
    accounts: Mutex<HashMap<String, Account>>,
    db: Option<Arc<MetaDb>>,
    attempts: Mutex<Guesses>,
    /// The configured server operators (`--oper`).
    operators: Mutex<Operators>,
    hashers: Semaphore,
    /// One more hasher, only for logins from an account's known addresses
    /// ([`attempts::Guesses::known`]): they never wait behind a queue of strangers' guesses.
    known_lane: Semaphore,
    waiting: AtomicUsize,
    /// Account commands waiting or running, by address; only addresses with some are kept.
    by_address: Mutex<HashMap<IpAddr, usize>>,
    cost: Cost,
    /// With `--cluster`: where account changes go, and where an account unknown here is looked up.
    cluster: std::sync::OnceLock<Shared>,
}

/// Looks an account up in the cluster's bucket by its state key (`account:KEY`): its JSON.
pub type Lookup =
    Arc<dyn Fn(String) -> futures::future::BoxFuture<'static, Option<String>> + Send + Sync>;

struct Shared {
    sink: crate::store::StateSink,
    lookup: Lookup,
}

/// The state key of the account with this key, as the cluster's bucket holds it.
pub fn account_key(key: &str) -> String {
    format!("account:{key}")
}

/// A cheap-to-clone handle to the accounts.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

/// One account command's place in the queue (see [`Accounts::reserve`]); freed when dropped.
pub struct Reserved {
    inner: Arc<Inner>,
    from: IpAddr,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut by_address = lock(&self.inner.by_address);
        if let Some(held) = by_address.get_mut(&self.from) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                by_address.remove(&self.from);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Accounts {
    /// Accounts hashed at `cost`, read from and written to `db` when given.
    pub fn new(db: Option<Arc<MetaDb>>, cost: Cost) -> Accounts {
        Accounts::with_operators(db, cost, &[])
    }

    /// Accounts as [`Accounts::new`], with the server operators `opers` (whose names are reserved
    /// and whose configured hashes are checked instead of an account's); logs what applies to
    /// each.
    pub fn with_operators(db: Option<Arc<MetaDb>>, cost: Cost, opers: &[OperSpec]) -> Accounts {
        let mut accounts = HashMap::new();
        if let Some(db) = &db {
            match db.accounts(MAX_ACCOUNTS) {
                Ok(stored) => {
                    for (key, a) in stored {
                        accounts.insert(
                            key,
                            Account {
                                name: a.name,
                                phc: a.phc,
                            },
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read accounts"),
            }
        }
        let operators = Operators::new(opers, |key| accounts.contains_key(key));
        Accounts {
            inner: Arc::new(Inner {
                accounts: Mutex::new(accounts),
                db,
                attempts: Mutex::new(Guesses::default()),
                operators: Mutex::new(operators),
                hashers: Semaphore::new(hashers()),
                known_lane: Semaphore::new(1),
                waiting: AtomicUsize::new(0),
                by_address: Mutex::new(HashMap::new()),
                cost,
                cluster: std::sync::OnceLock::new(),
            }),
        }
    }

    /// With `--cluster`: changes go to `sink` too, and logins for accounts unknown here ask
    /// `lookup` (the bucket is the source of truth).
    pub fn share(&self, sink: crate::store::StateSink, lookup: Lookup) {
        let _ = self.inner.cluster.set(Shared { sink, lookup });
    }

    /// With `--cluster`: the value the cluster's bucket holds under the state key `key`, read
    /// from the bucket itself (what this node has applied may lag behind it).
    pub fn look_up(
        &self,
        key: String,
    ) -> Option<futures::future::BoxFuture<'static, Option<String>>> {
        self.inner.cluster.get().map(|shared| (shared.lookup)(key))
    }

    /// Applies an account change that came from the cluster's bucket (`None`: removed).
    pub fn apply(&self, key: &str, json: Option<&str>) {
        let mut accounts = lock(&self.inner.accounts);
        match json.map(serde_json::from_str::<StoredAccount>) {
            Some(Ok(a)) => {
                if accounts.len() < MAX_ACCOUNTS || accounts.contains_key(key) {
                    accounts.insert(
                        key.to_string(),
                        Account {
                            name: a.name,
                            phc: a.phc,
                        },
                    );
                }
            }
            Some(Err(e)) => tracing::error!(key, error = %e, "unreadable account from the cluster"),
            None => {
                accounts.remove(key);
                lock(&self.inner.operators).account_removed(key);
            }
        }
    }

    /// The registered name with this [`names::key`], if any: an account's, or a configured
    /// server operator's (reserved whether or not it has an account).
    pub fn registered(&self, key: &str) -> Option<String> {
        let operator = lock(&self.inner.operators)
            .get(key)
            .map(|o| (o.name.clone(), o.phc.is_some()));
        let account = lock(&self.inner.accounts).get(key).map(|a| a.name.clone());
        match (operator, account) {
            // A credential sets any stored account aside: the configured name is the name.
            (Some((name, true)), _) => Some(name),
            (_, Some(name)) => Some(name),
            (operator, None) => operator.map(|(name, _)| name),
        }
    }

    /// Whether the account with this key is a server operator now.
    pub fn is_oper(&self, key: &str) -> bool {
        lock(&self.inner.operators).rights(key)
    }

    /// How many accounts there are.
    pub fn count(&self) -> usize {
        lock(&self.inner.accounts).len()
    }

    /// Counts a password attempt from `from` (an address, or an IPv6 prefix: see
    /// [`crate::guard::share::share_of`]) for the account `key`; refused past the limits (see
    /// [`attempts::Guesses`]).
    pub fn attempt(&self, from: IpAddr, key: &str) -> Result<(), AuthError> {
        lock(&self.inner.attempts)
            .attempt(from, key, Instant::now())
            .map_err(|d| AuthError::TooMany(d.as_secs().max(1)))
    }

    /// Whether a refusal of `from` by the limits is the first in a minute (the one to log).
    pub fn first_refusal(&self, from: IpAddr) -> bool {
        lock(&self.inner.attempts).first_refusal(from, Instant::now())
    }

    /// A place in the queue for one account command from `from` (the address's share), held until
    /// the command is done; refused past [`MAX_WAITING_PER_ADDRESS`].
    pub fn reserve(&self, from: IpAddr) -> Result<Reserved, AuthError> {
        let mut by_address = lock(&self.inner.by_address);
        let held = by_address.entry(from).or_insert(0);
        if *held >= MAX_WAITING_PER_ADDRESS {
            return Err(AuthError::BusyFromAddress);
        }
        *held += 1;
        Ok(Reserved {
            inner: Arc::clone(&self.inner),
            from,
        })
    }

    /// Runs `work` on the blocking pool once a hasher is free.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        self.blocking_in(false, work).await
    }

    /// [`Accounts::blocking`], and with `known` the known addresses' own hasher too, whichever
    /// is free first.
    async fn blocking_in<T: Send + 'static>(
        &self,
        known: bool,
        work: impl FnOnce(&Inner) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        if self.inner.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(AuthError::Busy);
        }
        let permit = if known {
            tokio::select! {
                p = self.inner.known_lane.acquire() => p,
                p = self.inner.hashers.acquire() => p,
            }
        } else {
            self.inner.hashers.acquire().await
        };
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(_permit) = permit else {
            return Err(AuthError::Unavailable);
        };
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || work(&inner)).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "account work failed");
                Err(AuthError::Unavailable)
            }
        }
    }

    /// Registers `name` with `password`.
    pub async fn register(&self, name: String, password: Secret) -> Result<(), AuthError> {
        self.blocking(move |inner| {
            let key = names::key(&name);
            if let Some(oper) = lock(&inner.operators).get(&key) {
                return Err(AuthError::Registered(oper.name.clone()));
            }
            {
                let accounts = lock(&inner.accounts);
                if let Some(held) = accounts.get(&key) {
                    return Err(AuthError::Registered(held.name.clone()));
                }
                if accounts.len() >= MAX_ACCOUNTS {
                    return Err(AuthError::Full);
                }
            }
            let phc = hash(inner.cost, &password)?;
            drop(password);
            inner.store(&key, Account { name, phc })
        })
        .await
    }

    /// Checks `password` for the account named `name`, tried from `from` (an address or IPv6
    /// prefix, as given to [`Accounts::attempt`]); returns the account's name as registered. A
    /// wrong password counts against the account and marks `from` as guessing.
    pub async fn login(
        &self,
        name: String,
        password: Secret,
        from: IpAddr,
    ) -> Result<String, AuthError> {
        let key = names::key(&name);
        if let Some(shared) = self.inner.cluster.get() {
            if self.registered(&key).is_none() {
                // Registered on another node a moment ago: the bucket knows it already.
                let found = (shared.lookup)(account_key(&key)).await;
                if found.is_some() {
                    self.apply(&key, found.as_deref());
                }
            }
        }
        let known = lock(&self.inner.attempts).known(from, &key, Instant::now());
        let result = self
            .blocking_in(known, move |inner| {
                inner.check(&names::key(&name), &password)
            })
            .await
            .map(|a| a.name);
        match &result {
            Err(AuthError::Refused) => {
                lock(&self.inner.attempts).failed(from, &key, Instant::now());
            }
            Ok(_) => lock(&self.inner.attempts).succeeded(from, &key),
            Err(_) => {}
        }
        result
    }

    /// Changes the password of account `key` from `old` to `new`.
    pub async fn change(&self, key: String, old: Secret, new: Secret) -> Result<(), AuthError> {
        self.blocking(move |inner| {
            inner.not_configured(&key)?;
            let account = inner.check(&key, &old)?;
            drop(old);
            let phc = hash(inner.cost, &new)?;
            drop(new);
            inner.store(
                &key,
                Account {
                    name: account.name,
                    phc,
                },
            )
        })
        .await
    }

    /// Removes account `key`, if `password` is its password.
    pub async fn unregister(&self, key: String, password: Secret) -> Result<(), AuthError> {
        self.blocking(move |inner| {
            inner.not_configured(&key)?;
            inner.check(&key, &password)?;
            drop(password);
            if let Some(db) = &inner.db {
                db.delete_account(&key).map_err(|e| {
                    tracing::error!(error = %e, "cannot delete account");
                    AuthError::Unavailable
                })?;
            }
            lock(&inner.accounts).remove(&key);
            lock(&inner.operators).account_removed(&key);
            inner.share(&key, None);
            Ok(())
        })
        .await
    }
}

fn hash(cost: Cost, password: &Secret) -> Result<String, AuthError> {
    password::hash(cost, password).map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        AuthError::Unavailable
    })
}

impl Inner {
    /// The account `key` if `password` is right. A missing account costs a hash all the same, so
    /// timing does not tell which names are registered. A server operator with a configured hash
    /// is checked against that hash, never a stored account's.
    fn check(&self, key: &str, password: &Secret) -> Result<Account, AuthError> {
        let configured = lock(&self.operators).get(key).and_then(|o| {
            o.phc.clone().map(|phc| Account {
                name: o.name.clone(),
                phc,
            })
        });
        let account = configured.or_else(|| lock(&self.accounts).get(key).cloned());
        match account {
            Some(account) if password::verify(&account.phc, password) => Ok(account),
            Some(_) => Err(AuthError::Refused),
            None => {
                let _ = password::hash(self.cost, password);
                Err(AuthError::Refused)
            }
        }
    }

    /// Refuses commands that would change a server operator whose hash the configuration sets.
    fn not_configured(&self, key: &str) -> Result<(), AuthError> {
        match lock(&self.operators).get(key) {
            Some(o) if o.phc.is_some() => Err(AuthError::Configured(o.name.clone())),
            _ => Ok(()),
        }
    }

    fn store(&self, key: &str, account: Account) -> Result<(), AuthError> {
        if let Some(db) = &self.db {
            let stored = StoredAccount {
                name: account.name.clone(),
                phc: account.phc.clone(),
            };
            db.put_account(key, &stored).map_err(|e| {
                tracing::error!(error = %e, "cannot store account");
                AuthError::Unavailable
            })?;
        }
        let json = serde_json::to_string(&StoredAccount {
            name: account.name.clone(),
            phc: account.phc.clone(),
        })
        .ok();
        lock(&self.accounts).insert(key.to_string(), account);
        self.share(key, json);
        Ok(())
    }

    fn share(&self, key: &str, json: Option<String>) {
        if let Some(shared) = self.cluster.get() {
            if shared.sink.try_send((account_key(key), json)).is_err() {
                tracing::error!(
                    key,
                    "cluster state queue full; account kept on this node only"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Cost = Cost {
        memory_kib: 64,
        iterations: 1,
    };
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn each_address_holds_a_few_places_in_the_queue_at_most() {
        let accounts = Accounts::new(None, CHEAP);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let held: Vec<Reserved> = (0..MAX_WAITING_PER_ADDRESS)
            .map(|_| accounts.reserve(a).expect("a place"))
            .collect();
        assert!(matches!(
            accounts.reserve(a),
            Err(AuthError::BusyFromAddress)
        ));
        let other = accounts
            .reserve(b)
            .expect("another address has its own places");
        drop(held);
        drop(other);
        assert!(lock(&accounts.inner.by_address).is_empty());
        assert!(accounts.reserve(a).is_ok(), "freed when done");
    }

    #[tokio::test]
    async fn shared_accounts_send_their_changes_and_take_the_cluster_s() {
        let accounts = Accounts::new(None, CHEAP);
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let stored = {
            let other = Accounts::new(None, CHEAP);
            other
                .register("Bob".into(), Secret::new("pw"))
                .await
                .expect("register");
            let phc = lock(&other.inner.accounts)["bob"].phc.clone();
            serde_json::to_string(&StoredAccount {
                name: "Bob".into(),
                phc,
            })
            .expect("json")
        };
        let lookup: Lookup = Arc::new(move |key| {
            let found = (key == "account:bob").then(|| stored.clone());
            Box::pin(async move { found })
        });
        accounts.share(tx, lookup);
        accounts
            .register("Alice".into(), Secret::new("pw1"))
            .await
            .expect("register");
        let (key, json) = rx.try_recv().expect("the change went out");
        assert_eq!(key, "account:alice");
        assert!(json.is_some_and(|j| j.contains("\"name\":\"Alice\"")));
        assert_eq!(
            accounts.login("bob".into(), Secret::new("pw"), LOCAL).await,
            Ok("Bob".into()),
            "an account unknown here is looked up"
        );
        accounts.apply("alice", None);
        assert_eq!(accounts.registered("alice"), None, "removed elsewhere");
    }

    #[tokio::test]
    async fn register_login_change_unregister_in_memory() {
        let accounts = Accounts::new(None, CHEAP);
        accounts
            .register("Alice".into(), Secret::new("pw1"))
            .await
            .expect("register");
        assert_eq!(accounts.registered("alice").as_deref(), Some("Alice"));
        assert_eq!(
            accounts.register("alice".into(), Secret::new("x")).await,
            Err(AuthError::Registered("Alice".into()))
        );
        assert_eq!(
            accounts
                .login("ALICE".into(), Secret::new("pw1"), LOCAL)
                .await,
            Ok("Alice".into())
        );
        assert_eq!(
            accounts
                .login("alice".into(), Secret::new("bad"), LOCAL)
                .await,
            Err(AuthError::Refused)
        );
        assert_eq!(
            accounts
                .login("nobody".into(), Secret::new("pw1"), LOCAL)
                .await,
            Err(AuthError::Refused)
        );
        accounts
            .change("alice".into(), Secret::new("pw1"), Secret::new("pw2"))
            .await
            .expect("change");
        assert_eq!(
            accounts
                .login("alice".into(), Secret::new("pw1"), LOCAL)
                .await,
            Err(AuthError::Refused)
        );
        assert_eq!(
            accounts
                .unregister("alice".into(), Secret::new("pw1"))
                .await,
            Err(AuthError::Refused)
        );
        accounts
            .unregister("alice".into(), Secret::new("pw2"))
            .await
            .expect("unregister");
        assert_eq!(accounts.registered("alice"), None);
    }

    #[tokio::test]
    async fn a_configured_operator_logs_in_by_its_hash_and_its_name_is_nobody_else_s() {
        let phc = password::hash(CHEAP, &Secret::new("pw-root")).expect("hash");
        let opers = [opers::parse_oper(&format!("root={phc}")).expect("spec")];
        let accounts = Accounts::with_operators(None, CHEAP, &opers);
        assert_eq!(accounts.registered("root").as_deref(), Some("root"));
        assert!(accounts.is_oper("root"));
        assert_eq!(
            accounts.register("ROOT".into(), Secret::new("x")).await,
            Err(AuthError::Registered("root".into()))
        );
        assert_eq!(
            accounts
                .login("root".into(), Secret::new("pw-root"), LOCAL)
                .await,
            Ok("root".into())
        );
        assert_eq!(
            accounts
                .login("root".into(), Secret::new("guess"), LOCAL)
                .await,
            Err(AuthError::Refused)
        );
        assert_eq!(
            accounts
                .change("root".into(), Secret::new("pw-root"), Secret::new("n"))
                .await,
            Err(AuthError::Configured("root".into()))
        );
        assert_eq!(
            accounts
                .unregister("root".into(), Secret::new("pw-root"))
                .await,
            Err(AuthError::Configured("root".into()))
        );
    }

    #[tokio::test]
    async fn wrong_passwords_close_the_account_to_guessers_not_to_others() {
        let accounts = Accounts::new(None, CHEAP);
        accounts
            .register("alice".into(), Secret::new("right"))
            .await
            .expect("register");
        let guesser: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..5 {
            accounts.attempt(guesser, "alice").expect("under the limit");
            let wrong = accounts.login("alice".into(), Secret::new("x"), guesser);
            assert_eq!(wrong.await, Err(AuthError::Refused));
        }
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        accounts.attempt(other, "alice").expect("not guessing yet");
        let wrong = accounts.login("alice".into(), Secret::new("y"), other);
        assert_eq!(wrong.await, Err(AuthError::Refused));
        assert!(matches!(
            accounts.attempt(other, "alice"),
            Err(AuthError::TooMany(_))
        ));
        assert_eq!(accounts.attempt(LOCAL, "alice"), Ok(()), "the owner");
    }
}
