//! Accounts and moderation state in the same SQLite file as history (`--db`).
//!
//! Unlike history, these need read-your-writes: a `/register` must be visible to the `/login`
//! that follows, a `/ban` to the `/join` after it. So they do not go through the history writer's
//! queue: one connection behind a mutex serves every read and write synchronously, in the order
//! they are made. Account work only ever reaches it from the blocking pool (beside the password
//! hashing, see [`crate::auth`]). Room and server state is changed from members' tasks, often
//! under a room's lock, so it is written behind: a change is kept in memory (where reads find it
//! at once) and a thread of its own writes it, newest value per key, so a database locked by
//! another program (a backup, `sqlite3` in a shell) never stalls a member or a room.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::lock;

/// The state key the history epoch is kept under (never shared with a cluster: each node's
/// database numbers its own history).
const EPOCH_KEY: &str = "history:epoch";

/// How long a statement waits on a lock held by the history writer or another process.
const BUSY: Duration = Duration::from_secs(1);

/// One stored account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAccount {
    /// The name as registered (its normal form).
    pub name: String,
    /// The Argon2id hash in PHC string form (algorithm, parameters, salt and hash).
    pub phc: String,
}

/// The accounts table and a key-value table for room and server state.
pub struct MetaDb {
    conn: Mutex<Connection>,
    behind: Arc<Behind>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// State changes not yet written: the newest value per key (`None`: delete), at most one per
/// room with state, so bounded by the rooms.
#[derive(Default)]
struct Behind {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    values: HashMap<String, Option<String>>,
    closed: bool,
}

/// Writes pending state until closed and drained; a write that fails (a locked database) is
/// retried with the next change or after a pause, never dropped while the server runs.
fn write_behind(mut conn: Connection, behind: &Behind) {
    loop {
        let batch: Vec<(String, Option<String>)> = {
            let mut pending = lock(&behind.pending);
            while pending.values.is_empty() && !pending.closed {
                pending = behind.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            if pending.values.is_empty() {
                return;
            }
            pending
                .values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let closing = lock(&behind.pending).closed;
        match write_state(&mut conn, &batch) {
            Ok(()) => {
                let mut pending = lock(&behind.pending);
                for (key, value) in batch {
                    // Changed again meanwhile: the newer value waits for the next round.
                    if pending.values.get(&key) == Some(&value) {
                        pending.values.remove(&key);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, keys = batch.len(), "cannot store moderation state yet");
                if closing {
                    tracing::error!(keys = batch.len(), "moderation state not stored at exit");
                    return;
                }
                std::thread::sleep(RETRY);
            }
        }
    }
}

impl Drop for MetaDb {
    /// Writes what is pending before the database goes (bounded: a failed write at exit is given
    /// up, not retried).
    fn drop(&mut self) {
        lock(&self.behind.pending).closed = true;
        self.behind.wake.notify_one();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

/// How long the state writer waits before trying a failed write again.
const RETRY: Duration = Duration::from_millis(500);

fn write_state(conn: &mut Connection, batch: &[(String, Option<String>)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (key, value) in batch {
        match value {
            Some(value) => tx.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?,
            None => tx.execute("DELETE FROM state WHERE key = ?1", [key])?,
        };
    }
    tx.commit()
}

impl MetaDb {
    /// Opens the tables in the database at `path`, creating them if needed; tables of another
    /// shape are refused.
    pub fn open(path: &Path) -> Result<MetaDb, super::sqlite::OpenCause> {
        let conn = super::sqlite::open(path, BUSY)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS accounts (
                 key   TEXT PRIMARY KEY,
                 name  TEXT NOT NULL,
                 phc   TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS state (
                 key   TEXT PRIMARY KEY,
                 value TEXT NOT NULL
             );",
        )?;
        super::sqlite::check_columns(&conn, "accounts", &["key", "name", "phc"])?;
        super::sqlite::check_columns(&conn, "state", &["key", "value"])?;
        super::offline::create(&conn)?;
        // The writer has a connection of its own: while it waits on a lock another program holds,
        // reads (a room opening, a login) go on through this one.
        let writer_conn = super::sqlite::open(path, BUSY)?;
        let behind = Arc::new(Behind::default());
        let writer = {
            let behind = Arc::clone(&behind);
            std::thread::Builder::new()
                .name("chatd-state".into())
                .spawn(move || write_behind(writer_conn, &behind))
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
        };
        Ok(MetaDb {
            conn: Mutex::new(conn),
            behind,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The epoch of the history ids in this database: the one stored in it, or `fresh` (stored
    /// now) for a database that has none yet, a new or replaced one (see [`super::epoch`]).
    pub fn epoch(&self, fresh: &str) -> rusqlite::Result<String> {
        let conn = lock(&self.conn);
        conn.execute(
            "INSERT OR IGNORE INTO state (key, value) VALUES (?1, ?2)",
            params![EPOCH_KEY, fresh],
        )?;
        conn.query_row(
            "SELECT value FROM state WHERE key = ?1",
            [EPOCH_KEY],
            |row| row.get(0),
        )
    }

    /// Runs `f` on the connection every read and write shares, in order with them.
    pub(super) fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut lock(&self.conn))
    }

    /// Every account, by key, at most `max` of them.
    pub fn accounts(&self, max: usize) -> rusqlite::Result<Vec<(String, StoredAccount)>> {
        let conn = lock(&self.conn);
        let mut query = conn.prepare("SELECT key, name, phc FROM accounts LIMIT ?1")?;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = query.query_map([limit], |row| {
            Ok((
                row.get(0)?,
                StoredAccount {
                    name: row.get(1)?,
                    phc: row.get(2)?,
                },
            ))
        })?;
        rows.collect()
    }

    /// Writes (inserts or replaces) an account.
    pub fn put_account(&self, key: &str, account: &StoredAccount) -> rusqlite::Result<()> {
        lock(&self.conn).execute(
            "INSERT OR REPLACE INTO accounts (key, name, phc) VALUES (?1, ?2, ?3)",
            params![key, account.name, account.phc],
        )?;
        Ok(())
    }

    /// Deletes an account.
    pub fn delete_account(&self, key: &str) -> rusqlite::Result<()> {
        lock(&self.conn).execute("DELETE FROM accounts WHERE key = ?1", [key])?;
        Ok(())
    }

    /// A state value (a room's operators, topic and bans; the server's bans), as last set.
    pub fn get(&self, key: &str) -> rusqlite::Result<Option<String>> {
        if let Some(value) = lock(&self.behind.pending).values.get(key) {
            return Ok(value.clone());
        }
        lock(&self.conn)
            .query_row("SELECT value FROM state WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
    }

    /// Every state value whose key starts with `prefix` (every room's, say), as last set.
    pub fn starting_with(&self, prefix: &str) -> rusqlite::Result<Vec<(String, String)>> {
        let conn = lock(&self.conn);
        let mut query =
            conn.prepare("SELECT key, value FROM state WHERE substr(key, 1, length(?1)) = ?1")?;
        let rows = query.query_map([prefix], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let mut found: HashMap<String, String> = rows.collect::<rusqlite::Result<_>>()?;
        drop(query);
        drop(conn);
        for (key, value) in &lock(&self.behind.pending).values {
            if !key.starts_with(prefix) {
                continue;
            }
            match value {
                Some(value) => found.insert(key.clone(), value.clone()),
                None => found.remove(key),
            };
        }
        Ok(found.into_iter().collect())
    }

    /// Sets a state value (`None` deletes it): read back at once, written behind.
    pub fn set(&self, key: &str, value: Option<&str>) {
        lock(&self.behind.pending)
            .values
            .insert(key.to_string(), value.map(str::to_string));
        self.behind.wake.notify_one();
    }

    /// Writes what is pending and stops the state writer, waiting at most `grace`.
    pub async fn close(&self, grace: Duration) {
        lock(&self.behind.pending).closed = true;
        self.behind.wake.notify_one();
        let Some(writer) = lock(&self.writer).take() else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || writer.join());
        if tokio::time::timeout(grace, joined).await.is_err() {
            tracing::warn!("state writer still busy at exit; the last changes may be lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_state_are_read_back_at_once_and_after_a_reopen() {
        let dir = std::env::temp_dir().join(format!("chatd-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("m.db");
        let db = MetaDb::open(&path).expect("open");
        let alice = StoredAccount {
            name: "Alice".into(),
            phc: "$argon2id$x".into(),
        };
        db.put_account("alice", &alice).expect("put");
        db.set("room:x", Some("{}"));
        assert_eq!(
            db.accounts(10).expect("read"),
            vec![("alice".into(), alice)]
        );
        drop(db);
        let db = MetaDb::open(&path).expect("reopen");
        assert_eq!(db.get("room:x").expect("get").as_deref(), Some("{}"));
        db.delete_account("alice").expect("delete");
        db.set("room:x", None);
        assert!(db.accounts(10).expect("read").is_empty());
        assert_eq!(db.get("room:x").expect("get"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn state_changes_never_wait_for_a_database_another_program_holds() {
        let dir = std::env::temp_dir().join(format!("chatd-meta-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("m.db");
        let db = MetaDb::open(&path).expect("open");
        let other = Connection::open(&path).expect("other program");
        other.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        let started = std::time::Instant::now();
        for n in 0..20 {
            db.set("room:x", Some(&format!("{{\"n\":{n}}}")));
        }
        // Read back at once, from memory, though nothing could be written.
        assert_eq!(
            db.get("room:x").expect("get").as_deref(),
            Some("{\"n\":19}")
        );
        // Twenty writes in place would each have waited the lock out (1 s each).
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        other.execute_batch("COMMIT").expect("unlock");
        // Once the lock is gone the newest value reaches the file (bounded wait).
        let stored = || {
            other
                .query_row("SELECT value FROM state WHERE key = 'room:x'", [], |r| {
                    r.get::<_, String>(0)
                })
                .ok()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stored().as_deref() != Some("{\"n\":19}") {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
