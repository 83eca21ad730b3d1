//! Where room history lives between a room's lives: in memory (the default, gone at exit) or in a
//! SQLite database (`--history-db`), so it survives a restart.
//!
//! Rooms keep their recent lines in memory either way and only hand lines to the store; the store
//! never sits on the delivery path. See [`sqlite`] for how writes stay off the room's back, and
//! [`history`] for the scrollback ring every room keeps.

pub mod epoch;
pub mod history;
pub mod meta;
pub mod mirror;
pub mod offline;
pub mod private;
pub mod seen;
pub mod sqlite;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::history::{History, HistoryLine};

/// Counts of what the store did, for logs and metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Lines written to the database.
    pub written: AtomicU64,
    /// Lines not stored because the write queue was full or the database failed.
    pub dropped: AtomicU64,
}

/// Histories of rooms that closed, kept in memory for when they come back; bounded in rooms.
#[derive(Debug, Default)]
struct Archive {
    rooms: HashMap<String, History>,
    /// Oldest first, to forget the longest-closed room when full.
    order: VecDeque<String>,
    max_rooms: usize,
    /// Past every id a room forgotten here had: a room opened afresh starts there, so that ids
    /// never repeat within an epoch, even for a room whose history was forgotten.
    high_water: u64,
}

struct Inner {
    /// Closed rooms' recent lines, with or without a database: a room that comes back soon finds
    /// them here, including lines still queued for the database, so ids never repeat.
    archive: Mutex<Archive>,
    db: Option<sqlite::SqliteStore>,
    /// Accounts and moderation state in the same database file, when there is one.
    meta: Option<Arc<meta::MetaDb>>,
    /// Room and server state without a database: kept for the server's lifetime, bounded.
    state: Mutex<HashMap<String, String>>,
    /// The cluster's history (`--cluster`), read by rooms while it is live.
    mirror: Mutex<Option<mirror::Mirror>>,
    /// Whether there is a mirror, read without its lock on every chat line.
    mirrored: AtomicBool,
    /// With `--cluster`: where state changes go to reach the cluster's bucket.
    sink: std::sync::OnceLock<StateSink>,
    /// Messages kept for absent accounts, without a database (with one they are its rows).
    kept: Mutex<offline::Boxes>,
    /// Held while an account's read positions are read, changed and written back.
    seen: Mutex<()>,
    /// The epoch of this node's own history ids (see [`epoch`]): new at each start without a
    /// database, kept in the database with one.
    epoch: String,
}

/// Where changed state values go (`--cluster`): the key and the new value, `None` for removed.
pub type StateSink = tokio::sync::mpsc::Sender<(String, Option<String>)>;

/// Most state values (rooms with operators, topics or bans) kept without a database.
const MAX_MEMORY_STATE: usize = 100_000;

/// A cheap-to-clone handle to the history store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    stats: Arc<StoreStats>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.inner.db.is_some() {
            "sqlite"
        } else {
            "memory"
        };
        f.debug_struct("Store").field("kind", &kind).finish()
    }
}

impl Store {
    /// History in memory only, remembering at most `max_rooms` closed rooms.
    pub fn memory(max_rooms: usize) -> Store {
        Store::with(None, None, max_rooms, Arc::default(), epoch::fresh())
    }

    /// History in the SQLite database at `path` (created if absent), keeping `keep` lines a room;
    /// at most `max_rooms` closed rooms are also remembered in memory.
    pub fn sqlite(path: &Path, keep: usize, max_rooms: usize) -> Result<Store, sqlite::OpenError> {
        let stats = Arc::new(StoreStats::default());
        let db = sqlite::SqliteStore::open(path, keep, Arc::clone(&stats))?;
        let meta =
            meta::MetaDb::open(path).map_err(|source| sqlite::OpenError::new(path, source))?;
        let epoch = meta
            .epoch(&epoch::fresh())
            .map_err(|source| sqlite::OpenError::new(path, source))?;
        Ok(Store::with(
            Some(db),
            Some(Arc::new(meta)),
            max_rooms,
            stats,
            epoch,
        ))
    }

    fn with(
        db: Option<sqlite::SqliteStore>,
        meta: Option<Arc<meta::MetaDb>>,
        max_rooms: usize,
        stats: Arc<StoreStats>,
        epoch: String,
    ) -> Store {
        Store {
            inner: Arc::new(Inner {
                archive: Mutex::new(Archive {
                    max_rooms,
                    ..Archive::default()
                }),
                db,
                meta,
                state: Mutex::default(),
                mirror: Mutex::default(),
                mirrored: AtomicBool::new(false),
                sink: std::sync::OnceLock::new(),
                kept: Mutex::new(offline::Boxes::new(offline::MAX_MEMORY_TOTAL)),
                seen: Mutex::new(()),
                epoch,
            }),
            stats,
        }
    }

    /// What the store has done so far.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// The history a room starts with: its last `keep` lines and the id its next line gets.
    pub fn load(&self, room: &str, keep: usize) -> History {
        let high_water = {
            let mut archive = lock(&self.inner.archive);
            if let Some(history) = archive.rooms.remove(room) {
                archive.order.retain(|r| r != room);
                return History::restored(keep, history.last(keep), history.next_id());
            }
            archive.high_water
        };
        let Some(db) = &self.inner.db else {
            return History::new(keep, high_water);
        };
        match db.load(room, keep) {
            Ok((lines, next_id)) => History::restored(keep, lines, next_id.max(high_water)),
            Err(e) => {
                // A broken database must not keep the room from opening.
                tracing::error!(room, error = %e, "cannot read room history; starting empty");
                History::new(keep, high_water)
            }
        }
    }

    /// Keeps a message for `account`, which has no session, at most `max` for it (the oldest
    /// dropped); returns how many of its messages were dropped so far. With a database this
    /// writes to it: call it off the member's task (the blocking pool).
    pub fn keep_message(
        &self,
        account: &str,
        kept: offline::Kept,
        max: usize,
    ) -> Result<u64, offline::KeepError> {
        if max == 0 {
            return Err(offline::KeepError::Off);
        }
        if self.inner.sink.get().is_some() {
            // With `--cluster` they are a value of the cluster's bucket, so a login on any node
            // finds them; the lock keeps two senders here from writing over each other.
            let _one_at_a_time = lock(&self.inner.kept);
            let state_key = offline::state_key(account);
            let held = self
                .get_state(&state_key)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default();
            let (taken, json) = offline::add_shared(held, kept, max);
            self.set_state(&state_key, Some(&json));
            return Ok(taken.dropped);
        }
        match &self.inner.meta {
            Some(db) => db
                .with_conn(|conn| offline::keep_in(conn, account, &kept, max))
                .map_err(|e| {
                    tracing::error!(account, error = %e, "cannot keep a message");
                    offline::KeepError::Failed
                }),
            None => lock(&self.inner.kept).keep(account, kept, max),
        }
    }

    /// Takes the messages kept for `account` (it logged in); they are handed over once. With a
    /// database this reads and writes it: call it off the member's task.
    pub fn take_messages(&self, account: &str) -> offline::Taken {
        if self.inner.sink.get().is_some() {
            let _one_at_a_time = lock(&self.inner.kept);
            let state_key = offline::state_key(account);
            let Some(json) = self.get_state(&state_key) else {
                return offline::Taken::default();
            };
            self.set_state(&state_key, None);
            return serde_json::from_str(&json).unwrap_or_else(|e| {
                tracing::error!(account, error = %e, "unreadable kept messages; dropped");
                offline::Taken::default()
            });
        }
        match &self.inner.meta {
            Some(db) => db
                .with_conn(|conn| offline::take_from(conn, account))
                .unwrap_or_else(|e| {
                    tracing::error!(account, error = %e, "cannot read kept messages");
                    offline::Taken::default()
                }),
            None => lock(&self.inner.kept).take(account),
        }
    }

    /// Where each client of `account` stopped reading each room (see [`seen`]). With a database
    /// this reads it: call it off the member's task where it may wait.
    pub fn seen(&self, account: &str) -> seen::Positions {
        seen::Positions::from_json(self.get_state(&seen::state_key(account)).as_deref())
    }

    /// Moves `client`'s positions of `account` forward to `reached` (never back), writing them
    /// (with `--cluster`, to the cluster's bucket too) only when one changed. With a database
    /// this writes to it: call it off the member's task.
    pub fn advance_seen(&self, account: &str, client: &str, reached: &[seen::Reached]) {
        self.advance_seen_in(account, client, reached, true);
    }

    /// [`Store::advance_seen`] on this node only (a position that came from the cluster).
    pub fn advance_seen_here(&self, account: &str, client: &str, reached: &seen::Reached) {
        self.advance_seen_in(account, client, std::slice::from_ref(reached), false);
    }

    fn advance_seen_in(&self, account: &str, client: &str, reached: &[seen::Reached], share: bool) {
        let _one_at_a_time = lock(&self.inner.seen);
        let mut positions = self.seen(account);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut changed = false;
        for r in reached {
            changed |= positions.advance(client, r, now);
        }
        if !changed {
            return;
        }
        let json = positions.to_json();
        match share {
            true => self.set_state(&seen::state_key(account), Some(&json)),
            false => self.put_state(&seen::state_key(account), Some(&json)),
        }
    }

    /// The epoch of the ids rooms give now: the cluster's history's while it is live, this
    /// node's own otherwise (see [`epoch`]).
    pub fn epoch(&self) -> String {
        self.live_mirror(|m| m.epoch().map(str::to_string))
            .flatten()
            .unwrap_or_else(|| self.inner.epoch.clone())
    }

    /// The epoch of this node's own history ids (those live chat lines carry), fixed for the
    /// server's lifetime.
    pub fn local_epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// Records a chat line said in `room`. Never waits: a full database queue drops the line from
    /// history (counted and logged), never from delivery.
    pub fn record(&self, room: &str, line: &HistoryLine) {
        if let Some(db) = &self.inner.db {
            db.record(room, line);
        }
    }

    /// Takes the history of a room that closed, for when it comes back.
    pub fn archive(&self, room: &str, history: History) {
        {
            let mut archive = lock(&self.inner.archive);
            if archive.max_rooms == 0 || history.is_empty() {
                archive.high_water = archive.high_water.max(history.next_id());
                return;
            }
            while archive.rooms.len() >= archive.max_rooms {
                let Some(oldest) = archive.order.pop_front() else {
                    break;
                };
                if let Some(forgotten) = archive.rooms.remove(&oldest) {
                    archive.high_water = archive.high_water.max(forgotten.next_id());
                }
            }
            archive.order.push_back(room.to_string());
            archive.rooms.insert(room.to_string(), history);
        }
    }

    /// The accounts database, when there is one (without it accounts live in memory).
    pub fn accounts_db(&self) -> Option<Arc<meta::MetaDb>> {
        self.inner.meta.clone()
    }

    /// A stored state value (a room's operators, topic and bans; the server's bans).
    pub fn get_state(&self, key: &str) -> Option<String> {
        match &self.inner.meta {
            Some(db) => db.get(key).unwrap_or_else(|e| {
                tracing::error!(key, error = %e, "cannot read moderation state");
                None
            }),
            None => lock(&self.inner.state).get(key).cloned(),
        }
    }

    /// Every stored state value whose key starts with `prefix`.
    pub fn states_starting_with(&self, prefix: &str) -> Vec<(String, String)> {
        match &self.inner.meta {
            Some(db) => db.starting_with(prefix).unwrap_or_else(|e| {
                tracing::error!(prefix, error = %e, "cannot read moderation state");
                Vec::new()
            }),
            None => lock(&self.inner.state)
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        }
    }

    /// Stores a state value, read back by [`Store::get_state`] at once; `None` removes it. With
    /// `--cluster` it also goes to the cluster's bucket (never waiting: a full queue is logged).
    pub fn set_state(&self, key: &str, value: Option<&str>) {
        self.put_state(key, value);
        self.share_state(key, value);
    }

    /// Sends a changed value to the cluster, when there is one.
    pub fn share_state(&self, key: &str, value: Option<&str>) {
        if let Some(sink) = self.inner.sink.get() {
            let change = (key.to_string(), value.map(str::to_string));
            if sink.try_send(change).is_err() {
                tracing::error!(
                    key,
                    "cluster state queue full; change kept on this node only"
                );
            }
        }
    }

    /// From now on changed state goes to `sink` too (`--cluster`).
    pub fn set_sink(&self, sink: StateSink) {
        let _ = self.inner.sink.set(sink);
    }

    /// Stores a state value on this node only (one that came from the cluster's bucket).
    pub fn put_state(&self, key: &str, value: Option<&str>) {
        match &self.inner.meta {
            Some(db) => db.set(key, value),
            None => {
                let mut state = lock(&self.inner.state);
                match value {
                    Some(value) if state.len() < MAX_MEMORY_STATE || state.contains_key(key) => {
                        state.insert(key.to_string(), value.to_string());
                    }
                    Some(_) => tracing::warn!(key, "too many rooms with state; not kept"),
                    None => {
                        state.remove(key);
                    }
                }
            }
        }
    }

    /// From now on rooms read the cluster's history (fed by [`Store::mirror`]) while it is live,
    /// keeping `keep` lines a room in at most `max_rooms` rooms.
    pub fn enable_mirror(&self, keep: usize, max_rooms: usize) {
        *lock(&self.inner.mirror) = Some(mirror::Mirror::new(keep, max_rooms));
        self.inner.mirrored.store(true, Ordering::Relaxed);
    }

    /// Whether rooms' ids are the cluster's: then live lines carry none (the stream gives a
    /// line its id only after it was delivered); `/history` shows them.
    pub fn mirrored(&self) -> bool {
        self.inner.mirrored.load(Ordering::Relaxed)
    }

    /// Reads or changes the cluster's history, when there is one.
    pub fn mirror<T>(&self, f: impl FnOnce(&mut mirror::Mirror) -> T) -> Option<T> {
        lock(&self.inner.mirror).as_mut().map(f)
    }

    /// The cluster's history when it is live; `None` without `--cluster` or while it is not.
    pub fn live_mirror<T>(&self, f: impl FnOnce(&mirror::Mirror) -> T) -> Option<T> {
        lock(&self.inner.mirror)
            .as_ref()
            .filter(|m| m.live())
            .map(f)
    }

    /// True with `--cluster` while the cluster's history cannot be read: rooms fall back on this
    /// node's own history, and members are told.
    pub fn mirror_down(&self) -> bool {
        lock(&self.inner.mirror).as_ref().is_some_and(|m| !m.live())
    }

    /// Writes out what is queued and stops the writer; waits at most `grace`.
    pub async fn close(&self, grace: std::time::Duration) {
        if let Some(db) = &self.inner.db {
            db.close(grace).await;
        }
        if let Some(meta) = &self.inner.meta {
            meta.close(grace).await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The written/dropped counters, read at once.
pub fn counts(stats: &StoreStats) -> (u64, u64) {
    (
        stats.written.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_room_the_archive_forgot_does_not_number_from_1_again() {
        let store = Store::memory(1);
        let mut first = store.load("a", 10);
        for _ in 0..3 {
            first.push(0, Bytes::from_static(b"<x> hi"));
        }
        store.archive("a", first);
        let mut other = store.load("b", 10);
        other.push(0, Bytes::from_static(b"<x> hi"));
        // Room b's history pushes a's out of the one-room archive.
        store.archive("b", other);
        let again = store.load("a", 10);
        assert!(
            again.next_id() >= 4,
            "ids of a would repeat: {}",
            again.next_id()
        );
        assert!(again.is_empty());
    }

    #[test]
    fn without_a_database_each_store_is_an_epoch_of_its_own() {
        let (a, b) = (Store::memory(1), Store::memory(1));
        assert_ne!(a.epoch(), b.epoch());
        assert_eq!(a.epoch(), a.local_epoch());
    }
}
