//! Checkpoints of the write-ahead log, kept off the writer thread.
//!
//! SQLite's automatic checkpoint runs on the connection that commits: every 1,000 pages the
//! writer stops to copy them into the database file and sync it, and a page written again and
//! again is copied each time. crossdock turns it off on the writer and gives checkpoints a
//! thread of their own, which copies committed pages into the database file in the background (a
//! passive checkpoint never waits for the writer, and the writer never waits for it).
//!
//! A passive checkpoint cannot start the log again from its beginning while the writer keeps
//! appending to it. So once the log is long and the background has copied nearly all of it, the
//! writer copies what is left itself, between two groups; its next transaction then finds the
//! log fully copied and starts writing it from the beginning. The log stays around
//! [`WAL_RESTART_FRAMES`] pages however long the writer stays busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

use crate::Durability;

/// How often the background copies what the writer has committed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(20);

/// Pages in the log (4 KiB each) after which the writer starts it again once it is copied.
const WAL_RESTART_FRAMES: i64 = 8192;

/// What the last background checkpoint saw: pages in the log, and how many of them are copied.
#[derive(Debug, Default)]
struct Progress {
    frames: AtomicI64,
    copied: AtomicI64,
}

/// The background checkpoint thread of one database file.
pub(super) struct Checkpointer {
    progress: Arc<Progress>,
    /// False when the writer checkpoints itself (no background thread).
    active: bool,
    restart_frames: i64,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Runs a checkpoint; returns (pages in the log, pages copied), or `None` when SQLite refused.
fn checkpoint(conn: &Connection) -> Option<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })
    .ok()
    .and_then(|(busy, frames, copied)| (busy == 0).then_some((frames, copied)))
}

/// One background round: copies what it can and says how far the log is copied.
fn copy_and_report(conn: &Connection, progress: &Progress) {
    if let Some((frames, copied)) = checkpoint(conn) {
        progress.copied.store(copied, Ordering::Relaxed);
        progress.frames.store(frames, Ordering::Relaxed);
    }
}

/// Turns off the automatic checkpoint of the writer's connection.
fn manual(writer: &Connection) -> bool {
    match writer.query_row("PRAGMA wal_autocheckpoint=0", [], |_| Ok(())) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot turn off the writer's automatic checkpoint");
            false
        }
    }
}

impl Checkpointer {
    /// Starts checkpointing `path` in the background and turns off the automatic checkpoint of
    /// `writer`. Without a thread (it could not open the file), the writer keeps checkpointing
    /// itself.
    pub(super) fn start(writer: &Connection, path: &str, durability: Durability) -> Checkpointer {
        let progress = Arc::new(Progress::default());
        let conn = match super::open_connection(path, durability, false) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a checkpoint connection; the writer checkpoints itself");
                return Checkpointer::idle(progress);
            }
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("crossdock-sqlite-checkpoint".into())
            .spawn(move || {
                loop {
                    copy_and_report(&conn, &shared);
                    match stopped.recv_timeout(CHECKPOINT_INTERVAL) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            });
        match thread {
            Ok(thread) => Checkpointer {
                active: manual(writer),
                progress,
                restart_frames: WAL_RESTART_FRAMES,
                stop: Some(stop),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the checkpoint thread; the writer checkpoints itself");
                Checkpointer::idle(progress)
            }
        }
    }

    fn idle(progress: Arc<Progress>) -> Checkpointer {
        Checkpointer {
            progress,
            active: false,
            restart_frames: WAL_RESTART_FRAMES,
            stop: None,
            thread: None,
        }
    }

    /// Called by the writer between groups: once the log is long and the background has copied
    /// nearly all of it, copies the rest, so that the next transaction starts the log again.
    pub(super) fn between_groups(&self, writer: &Connection) {
        if !self.active {
            return;
        }
        let frames = self.progress.frames.load(Ordering::Relaxed);
        let copied = self.progress.copied.load(Ordering::Relaxed);
        if frames < self.restart_frames || frames - copied > self.restart_frames / 8 {
            return;
        }
        // Not again until the background has looked at the log anew.
        self.progress.frames.store(0, Ordering::Relaxed);
        let _ = checkpoint(writer);
    }

    /// Stops the background thread (after its checkpoint in progress).
    pub(super) fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len())
    }

    /// A writer that never pauses still gets its log started again: the background copies it,
    /// the writer copies the rest between groups, and the log stays near its restart size
    /// instead of growing with everything written. Nothing written is lost on the way.
    #[test]
    fn the_log_is_started_again_under_continuous_writes() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("wal.db");
        let name = path.display().to_string();
        let writer = super::super::open_connection(&name, Durability::Normal, false).expect("open");
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .expect("create");
        let background =
            super::super::open_connection(&name, Durability::Normal, false).expect("open");
        assert!(manual(&writer));
        let checkpointer = Checkpointer {
            active: true,
            restart_frames: 64,
            progress: Arc::new(Progress::default()),
            stop: None,
            thread: None,
        };
        let body = vec![7u8; 1000];
        let mut largest = 0;
        for group in 0..400 {
            writer.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for row in 0..16 {
                writer
                    .execute("INSERT INTO t (body) VALUES (?1)", [&body])
                    .expect("insert");
                // The background looks every few groups, as its interval would have it, while
                // the writer is busy with the next group (it never finds the writer idle).
                if row == 8 && group % 3 == 0 {
                    copy_and_report(&background, &checkpointer.progress);
                }
            }
            writer.execute_batch("COMMIT").expect("commit");
            checkpointer.between_groups(&writer);
            largest = largest.max(wal_len(&path));
        }
        // 400 groups of about 4 pages each would be 6 MiB of log without a restart.
        assert!(largest < 2 * 1024 * 1024, "the log grew to {largest} bytes");
        drop((writer, background));
        let reopened =
            super::super::open_connection(&name, Durability::Normal, false).expect("open");
        let rows: i64 = reopened
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 400 * 16);
    }
}
