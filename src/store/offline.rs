//! Messages kept while away: a `/msg` (or IRC PRIVMSG) to a registered account that has no
//! session is kept here and handed over when the account next logs in, with the time it was sent.
//!
//! Bounded either way: at most `--offline-max` per account (the oldest go first, counted, so the
//! owner is told how many), and without a database at most [`MAX_MEMORY_TOTAL`] in all (past it a
//! message is refused, and its sender told). With `--db` they are rows of the same SQLite file,
//! so they survive a restart; [`Boxes`] is the memory form, pure and tested without I/O. With
//! `--cluster` an account's messages are one JSON value (`kept:KEY`, see [`add_shared`]) of the
//! cluster's state bucket, so a login on any node finds them.

use std::collections::{HashMap, VecDeque};

use rusqlite::{params, Connection};

/// Most messages kept in memory for every account together (without `--db`).
pub const MAX_MEMORY_TOTAL: usize = 100_000;

/// One message kept for an account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    /// Who sent it (their name then).
    pub from: String,
    /// What they said.
    pub text: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// What an account finds on logging in (with `--cluster`, also what the cluster's bucket holds
/// for it, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Taken {
    /// The messages, oldest first.
    pub messages: Vec<Kept>,
    /// How many older ones were dropped to keep within the per-account limit.
    pub dropped: u64,
}

/// Why a message could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepError {
    /// The server keeps as many messages as it may (without a database).
    #[error("the server keeps too many messages for absent members already")]
    Full,
    /// Messages are not kept (`--offline-max 0`).
    #[error("messages are not kept for absent members on this server")]
    Off,
    /// The database failed.
    #[error("the message could not be stored")]
    Failed,
}

#[derive(Debug, Default)]
struct AccountBox {
    messages: VecDeque<Kept>,
    dropped: u64,
}

/// Kept messages in memory, bounded per account and in all.
#[derive(Debug)]
pub struct Boxes {
    accounts: HashMap<String, AccountBox>,
    total: usize,
    max_total: usize,
}

impl Boxes {
    /// Empty boxes holding at most `max_total` messages in all.
    pub fn new(max_total: usize) -> Boxes {
        Boxes {
            accounts: HashMap::new(),
            total: 0,
            max_total,
        }
    }

    /// Keeps `kept` for `account`, dropping its oldest beyond `max`; returns how many of its
    /// messages are dropped so far.
    pub fn keep(&mut self, account: &str, kept: Kept, max: usize) -> Result<u64, KeepError> {
        if max == 0 {
            return Err(KeepError::Off);
        }
        let held = self.accounts.get(account).map_or(0, |b| b.messages.len());
        // A full box makes room of its own; otherwise the message needs room in the total.
        if held < max && self.total >= self.max_total {
            return Err(KeepError::Full);
        }
        let boxed = self.accounts.entry(account.to_string()).or_default();
        boxed.messages.push_back(kept);
        self.total += 1;
        while boxed.messages.len() > max {
            boxed.messages.pop_front();
            boxed.dropped += 1;
            self.total -= 1;
        }
        Ok(boxed.dropped)
    }

    /// Takes what is kept for `account` (nothing remains).
    pub fn take(&mut self, account: &str) -> Taken {
        let Some(boxed) = self.accounts.remove(account) else {
            return Taken::default();
        };
        self.total -= boxed.messages.len();
        Taken {
            messages: boxed.messages.into(),
            dropped: boxed.dropped,
        }
    }

    /// Forgets what is kept for `account` (it was unregistered).
    pub fn forget(&mut self, account: &str) {
        self.take(account);
    }
}

/// The state key under which the cluster's bucket holds what is kept for `account`.
pub fn state_key(account: &str) -> String {
    format!("kept:{account}")
}

/// Most bytes of JSON one account's kept messages take in the cluster's bucket (one value there):
/// past it the oldest go, as past `--offline-max`.
pub const MAX_SHARED_BYTES: usize = 256 * 1024;

/// `taken` (one account's kept messages, as the bucket holds them) with `kept` added, within `max`
/// messages and [`MAX_SHARED_BYTES`]; its JSON.
pub fn add_shared(mut taken: Taken, kept: Kept, max: usize) -> (Taken, String) {
    taken.messages.push(kept);
    let excess = taken.messages.len().saturating_sub(max);
    taken.messages.drain(..excess);
    taken.dropped += excess as u64;
    loop {
        let json = serde_json::to_string(&taken).unwrap_or_default();
        if json.len() <= MAX_SHARED_BYTES || taken.messages.len() <= 1 {
            return (taken, json);
        }
        taken.messages.remove(0);
        taken.dropped += 1;
    }
}

/// Makes the tables (with `--db`).
pub(super) fn create(conn: &Connection) -> Result<(), super::sqlite::OpenCause> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kept (
             seq     INTEGER PRIMARY KEY AUTOINCREMENT,
             account TEXT    NOT NULL,
             at_ms   INTEGER NOT NULL,
             sender  TEXT    NOT NULL,
             text    TEXT    NOT NULL
         );
         CREATE INDEX IF NOT EXISTS kept_account ON kept (account, seq);
         CREATE TABLE IF NOT EXISTS kept_dropped (
             account TEXT PRIMARY KEY,
             dropped INTEGER NOT NULL
         );",
    )?;
    super::sqlite::check_columns(conn, "kept", &["seq", "account", "at_ms", "sender", "text"])?;
    super::sqlite::check_columns(conn, "kept_dropped", &["account", "dropped"])?;
    Ok(())
}

/// [`Boxes::keep`] in the database, in one transaction.
pub(super) fn keep_in(
    conn: &mut Connection,
    account: &str,
    kept: &Kept,
    max: usize,
) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO kept (account, at_ms, sender, text) VALUES (?1, ?2, ?3, ?4)",
        params![account, kept.at_ms, kept.from, kept.text],
    )?;
    let held: i64 = tx.query_row(
        "SELECT count(*) FROM kept WHERE account = ?1",
        [account],
        |row| row.get(0),
    )?;
    let excess = held - i64::try_from(max).unwrap_or(i64::MAX);
    if excess > 0 {
        tx.execute(
            "DELETE FROM kept WHERE seq IN \
             (SELECT seq FROM kept WHERE account = ?1 ORDER BY seq LIMIT ?2)",
            params![account, excess],
        )?;
        tx.execute(
            "INSERT INTO kept_dropped (account, dropped) VALUES (?1, ?2) \
             ON CONFLICT (account) DO UPDATE SET dropped = dropped + ?2",
            params![account, excess],
        )?;
    }
    let dropped = dropped_of(&tx, account)?;
    tx.commit()?;
    Ok(dropped)
}

/// How many of `account`'s messages were dropped so far.
fn dropped_of(conn: &Connection, account: &str) -> rusqlite::Result<u64> {
    let dropped: i64 = conn
        .query_row(
            "SELECT dropped FROM kept_dropped WHERE account = ?1",
            [account],
            |row| row.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(0),
            e => Err(e),
        })?;
    Ok(u64::try_from(dropped).unwrap_or(0))
}

/// [`Boxes::take`] in the database, in one transaction.
pub(super) fn take_from(conn: &mut Connection, account: &str) -> rusqlite::Result<Taken> {
    let tx = conn.transaction()?;
    let messages = {
        let mut query =
            tx.prepare("SELECT sender, text, at_ms FROM kept WHERE account = ?1 ORDER BY seq")?;
        let rows = query.query_map([account], |row| {
            Ok(Kept {
                from: row.get(0)?,
                text: row.get(1)?,
                at_ms: row.get(2)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<Kept>>>()?
    };
    let dropped = dropped_of(&tx, account)?;
    tx.execute("DELETE FROM kept WHERE account = ?1", [account])?;
    tx.execute("DELETE FROM kept_dropped WHERE account = ?1", [account])?;
    tx.commit()?;
    Ok(Taken { messages, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(n: u32) -> Kept {
        Kept {
            from: "ann".into(),
            text: format!("m{n}"),
            at_ms: i64::from(n),
        }
    }

    fn texts(taken: &Taken) -> Vec<&str> {
        taken.messages.iter().map(|k| k.text.as_str()).collect()
    }

    #[test]
    fn the_oldest_go_past_the_limit_and_are_counted() {
        let mut boxes = Boxes::new(100);
        for n in 1..=5 {
            boxes.keep("bob", kept(n), 3).expect("kept");
        }
        let taken = boxes.take("bob");
        assert_eq!(texts(&taken), ["m3", "m4", "m5"]);
        assert_eq!(taken.dropped, 2);
        assert_eq!(boxes.take("bob"), Taken::default(), "taken once");
        assert_eq!(boxes.keep("bob", kept(1), 0), Err(KeepError::Off));
    }

    #[test]
    fn the_total_is_bounded_but_a_full_box_still_takes_the_newest() {
        let mut boxes = Boxes::new(4);
        for n in 1..=2 {
            boxes.keep("bob", kept(n), 2).expect("kept");
            boxes.keep("cat", kept(n), 2).expect("kept");
        }
        assert_eq!(boxes.keep("dan", kept(1), 2), Err(KeepError::Full));
        assert_eq!(
            boxes.keep("bob", kept(3), 2),
            Ok(1),
            "bob's oldest makes room"
        );
        boxes.forget("cat");
        assert_eq!(boxes.keep("dan", kept(1), 2), Ok(0));
        assert_eq!(texts(&boxes.take("bob")), ["m2", "m3"]);
    }

    #[test]
    fn the_clusters_copy_is_bounded_in_messages_and_bytes() {
        let (taken, _) = add_shared(Taken::default(), kept(1), 2);
        let (taken, _) = add_shared(taken, kept(2), 2);
        let (taken, json) = add_shared(taken, kept(3), 2);
        assert_eq!((texts(&taken), taken.dropped), (vec!["m2", "m3"], 1));
        let back: Taken = serde_json::from_str(&json).expect("json");
        assert_eq!(back, taken);
        let big = |n| Kept {
            text: "x".repeat(100_000),
            ..kept(n)
        };
        let (mut taken, mut json) = add_shared(Taken::default(), big(1), 100);
        for n in 2..=5 {
            (taken, json) = add_shared(taken, big(n), 100);
        }
        assert!(json.len() <= MAX_SHARED_BYTES, "{}", json.len());
        assert_eq!((taken.messages.len(), taken.dropped), (2, 3));
    }

    #[test]
    fn the_database_keeps_and_hands_over_the_same_way() {
        let mut conn = Connection::open_in_memory().expect("db");
        create(&conn).expect("tables");
        for n in 1..=5 {
            keep_in(&mut conn, "bob", &kept(n), 3).expect("kept");
        }
        assert_eq!(keep_in(&mut conn, "cat", &kept(9), 3).expect("kept"), 0);
        let taken = take_from(&mut conn, "bob").expect("taken");
        assert_eq!(texts(&taken), ["m3", "m4", "m5"]);
        assert_eq!((taken.dropped, taken.messages[0].at_ms), (2, 3));
        assert_eq!(
            take_from(&mut conn, "bob").expect("again"),
            Taken::default()
        );
        assert_eq!(texts(&take_from(&mut conn, "cat").expect("cat")), ["m9"]);
    }
}
