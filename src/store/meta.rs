//! Accounts and moderation state in the same SQLite file as history (`--db`).
//!
//! Unlike history, these need read-your-writes: a `/register` must be visible to the `/login`
//! that follows, a `/ban` to the `/join` after it. So they do not go through the history writer's
//! queue: one connection behind a mutex serves every read and write synchronously, in the order
//! they are made. Account work only ever reaches it from the blocking pool (beside the password
//! hashing, see [`crate::auth`]); room and server state is small and written rarely (one row per
//! moderation command, a few milliseconds under WAL), so it is written in place.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::lock;

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
}

impl MetaDb {
    /// Opens the tables in the database at `path`, creating them if needed.
    pub fn open(path: &Path) -> rusqlite::Result<MetaDb> {
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
        Ok(MetaDb {
            conn: Mutex::new(conn),
        })
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

    /// A state value (a room's operators, topic and bans; the server's bans).
    pub fn get(&self, key: &str) -> rusqlite::Result<Option<String>> {
        lock(&self.conn)
            .query_row("SELECT value FROM state WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
    }

    /// Every state value whose key starts with `prefix` (every room's, say).
    pub fn starting_with(&self, prefix: &str) -> rusqlite::Result<Vec<(String, String)>> {
        let conn = lock(&self.conn);
        let mut query =
            conn.prepare("SELECT key, value FROM state WHERE substr(key, 1, length(?1)) = ?1")?;
        let rows = query.query_map([prefix], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    }

    /// Sets a state value; `None` deletes it.
    pub fn set(&self, key: &str, value: Option<&str>) -> rusqlite::Result<()> {
        let conn = lock(&self.conn);
        match value {
            Some(value) => conn.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?,
            None => conn.execute("DELETE FROM state WHERE key = ?1", [key])?,
        };
        Ok(())
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
        db.set("room:x", Some("{}")).expect("set");
        assert_eq!(
            db.accounts(10).expect("read"),
            vec![("alice".into(), alice)]
        );
        drop(db);
        let db = MetaDb::open(&path).expect("reopen");
        assert_eq!(db.get("room:x").expect("get").as_deref(), Some("{}"));
        db.delete_account("alice").expect("delete");
        db.set("room:x", None).expect("unset");
        assert!(db.accounts(10).expect("read").is_empty());
        assert_eq!(db.get("room:x").expect("get"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
