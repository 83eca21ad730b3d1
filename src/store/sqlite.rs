//! Room history in SQLite (rusqlite with its bundled library, so the machine needs nothing).
//!
//! Writes never block a room: [`SqliteStore::record`] only offers the line to a bounded queue, and
//! one writer thread takes whatever has queued up and inserts it in a single transaction, then
//! prunes each room it touched to its last N lines. A full queue drops the line from history
//! (counted and logged), never from delivery. Reads happen once per room opening, on their own
//! connection (WAL mode lets them run beside the writer), with a short busy timeout so a locked
//! database costs a room its history, never the server its progress.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags};

use super::{lock, StoreStats};
use crate::store::history::HistoryLine;

/// Lines that may wait for the writer before history starts dropping them.
const QUEUE: usize = 16 * 1024;
/// Most lines written in one transaction.
const BATCH: usize = 2048;
/// How long a reader or the writer waits on a lock held by another process.
const READ_BUSY: Duration = Duration::from_millis(200);
const WRITE_BUSY: Duration = Duration::from_secs(2);

/// Why the database could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open history database {path}: {source}")]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: OpenCause,
}

/// What was wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum OpenCause {
    /// SQLite refused it.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A table chatd uses exists with other columns (another program's, or an old layout):
    /// refused at start rather than failing at the first write.
    #[error("table {table} has columns ({found}), not chatd's ({expected})")]
    Shape {
        /// The table.
        table: String,
        /// Its columns.
        found: String,
        /// chatd's.
        expected: String,
    },
}

impl OpenError {
    /// The error for the database at `path`.
    pub fn new(path: &Path, source: impl Into<OpenCause>) -> OpenError {
        OpenError {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// Checks that `table` has exactly the `expected` columns, in order.
pub(super) fn check_columns(
    conn: &Connection,
    table: &str,
    expected: &[&str],
) -> Result<(), OpenCause> {
    let mut query = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let found = query
        .query_map([table], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    if found
        .iter()
        .map(String::as_str)
        .eq(expected.iter().copied())
    {
        return Ok(());
    }
    Err(OpenCause::Shape {
        table: table.to_string(),
        found: found.join(", "),
        expected: expected.join(", "),
    })
}

struct Pending {
    room: String,
    line: HistoryLine,
}

/// The database handle: a queue to the writer thread and a connection for reads.
pub struct SqliteStore {
    queue: Mutex<Option<SyncSender<Pending>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    stats: Arc<StoreStats>,
}

/// Opens (creating if absent) the database at `path`, waiting at most `busy` for another
/// connection's lock.
pub(super) fn open(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    // WAL: readers never wait for the writer, and a crash loses at most the last transaction.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS history (
             room  TEXT    NOT NULL,
             id    INTEGER NOT NULL,
             at_ms INTEGER NOT NULL,
             line  BLOB    NOT NULL,
             PRIMARY KEY (room, id)
         ) WITHOUT ROWID;",
    )?;
    // Reading the table proves the file is a usable database now, not at the first write.
    conn.query_row("SELECT count(*) FROM history LIMIT 1", [], |_| Ok(()))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer; rooms are pruned
    /// to `keep` lines.
    pub fn open(
        path: &Path,
        keep: usize,
        stats: Arc<StoreStats>,
    ) -> Result<SqliteStore, OpenError> {
        let failed = |source| OpenError::new(path, source);
        let writer_conn = open(path, WRITE_BUSY).map_err(failed)?;
        prepare(&writer_conn).map_err(failed)?;
        check_columns(&writer_conn, "history", &["room", "id", "at_ms", "line"])
            .map_err(|cause| OpenError::new(path, cause))?;
        let reader = open(path, READ_BUSY).map_err(failed)?;
        let (tx, rx) = sync_channel(QUEUE);
        let thread_stats = Arc::clone(&stats);
        let writer = std::thread::Builder::new()
            .name("chatd-history".into())
            .spawn(move || write_loop(writer_conn, rx, keep, &thread_stats))
            .map_err(|e| failed(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok(SqliteStore {
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(reader),
            stats,
        })
    }

    /// A room's last `keep` lines (oldest first) and the id its next line gets.
    pub fn load(&self, room: &str, keep: usize) -> rusqlite::Result<(Vec<HistoryLine>, u64)> {
        let conn = lock(&self.reader);
        let last: i64 = conn.query_row(
            "SELECT coalesce(max(id), 0) FROM history WHERE room = ?1",
            [room],
            |row| row.get(0),
        )?;
        let mut lines = Vec::new();
        if keep > 0 {
            let mut query = conn.prepare_cached(
                "SELECT id, at_ms, line FROM history WHERE room = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let limit = i64::try_from(keep).unwrap_or(i64::MAX);
            let rows = query.query_map(params![room, limit], |row| {
                let id: i64 = row.get(0)?;
                let text: Vec<u8> = row.get(2)?;
                Ok(HistoryLine {
                    id: u64::try_from(id).unwrap_or(0),
                    at_ms: row.get(1)?,
                    text: Bytes::from(text),
                })
            })?;
            for line in rows {
                lines.push(line?);
            }
            lines.reverse();
        }
        Ok((lines, u64::try_from(last).unwrap_or(0) + 1))
    }

    /// Offers a line to the writer without waiting.
    pub fn record(&self, room: &str, line: &HistoryLine) {
        let queue = lock(&self.queue);
        let Some(tx) = queue.as_ref() else {
            return;
        };
        let pending = Pending {
            room: room.to_string(),
            line: line.clone(),
        };
        if let Err(e) = tx.try_send(pending) {
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The first drop and then one in a thousand: a stuck disk must not flood the log too.
            if dropped == 1 || dropped.is_multiple_of(1000) {
                let why = match e {
                    TrySendError::Full(_) => "write queue full",
                    TrySendError::Disconnected(_) => "writer stopped",
                };
                tracing::warn!(dropped, why, "history line not stored");
            }
        }
    }

    /// Closes the queue and waits (at most `grace`) for the writer to store what is left.
    pub async fn close(&self, grace: Duration) {
        lock(&self.queue).take();
        let Some(writer) = lock(&self.writer).take() else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || writer.join());
        match tokio::time::timeout(grace, joined).await {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => tracing::error!("history writer failed"),
            Err(_) => tracing::warn!("history writer still busy at exit; it may lose a batch"),
        }
    }
}

fn write_loop(mut conn: Connection, rx: Receiver<Pending>, keep: usize, stats: &StoreStats) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match write_batch(&mut conn, &batch, keep) {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let dropped = batch.len() as u64;
                stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                tracing::error!(error = %e, dropped, "cannot write history");
            }
        }
        batch.clear();
    }
}

fn write_batch(conn: &mut Connection, batch: &[Pending], keep: usize) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let mut rooms = HashSet::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO history (room, id, at_ms, line) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for p in batch {
            let id = i64::try_from(p.line.id).unwrap_or(i64::MAX);
            insert.execute(params![p.room, id, p.line.at_ms, &p.line.text[..]])?;
            rooms.insert(p.room.as_str());
        }
        let mut prune = tx.prepare_cached(
            "DELETE FROM history WHERE room = ?1 AND id <= \
             (SELECT max(id) FROM history WHERE room = ?1) - ?2",
        )?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        for room in rooms {
            prune.execute(params![room, keep])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: u64) -> HistoryLine {
        HistoryLine {
            id,
            at_ms: id as i64,
            text: Bytes::from(format!("<a> {id}")),
        }
    }

    #[tokio::test]
    async fn lines_survive_a_reopen_pruned_to_the_last_n() {
        let dir = tempdir();
        let path = dir.join("h.db");
        let stats = Arc::new(StoreStats::default());
        let db = SqliteStore::open(&path, 3, Arc::clone(&stats)).expect("open");
        for id in 1..=5 {
            db.record("lobby", &line(id));
        }
        db.record("other", &line(1));
        db.close(Duration::from_secs(5)).await;
        assert_eq!(stats.written.load(Ordering::Relaxed), 6);
        let db = SqliteStore::open(&path, 3, stats).expect("reopen");
        let (lines, next) = db.load("lobby", 10).expect("load");
        let ids: Vec<u64> = lines.iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        assert_eq!(next, 6);
        assert_eq!(&lines[0].text[..], b"<a> 3");
        assert_eq!(db.load("nowhere", 10).expect("load").1, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_open_error() {
        let dir = tempdir();
        let path = dir.join("junk.db");
        std::fs::write(&path, vec![0x5a; 8192]).expect("write junk");
        let err = SqliteStore::open(&path, 3, Arc::default())
            .err()
            .expect("junk must not open");
        assert!(err.to_string().contains("junk.db"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chatd-sqlite-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        u64::from_le_bytes(b)
    }
}
