//! The SQLite backend: one file in WAL mode, one writer thread, a small pool of readers.
//!
//! SQLite allows one writer at a time, so crossdock gives it exactly one: a dedicated thread owns
//! the write connection and takes jobs from a bounded queue. Jobs waiting together run inside one
//! transaction, each under its own savepoint, and are answered only after the shared commit is
//! durable (group commit). Reads run on separate connections and never wait for the writer.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use crossdock_core::activity::{ActivityEntry, ActivityKey};
use crossdock_core::{EventData, FailureDecision, NewEvent, StoredEvent, Timestamp};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

mod catalog;
mod checkpoint;
mod edi;
mod inventory;
mod orders;
mod postings;

use crate::migrate::{self, MigrationReport};
use crate::model::*;
use crate::{Durability, Projection, ProjectionWrites, Result, StoreError, StoreOptions};

const STATEMENT_CACHE_CAPACITY: usize = 256;
/// The write connection's page cache, KiB (see `open_connection`).
const WRITER_CACHE_KIB: u32 = 16 * 1024;
/// How much of the database file the write connection maps into memory at most, bytes.
const WRITER_MMAP_BYTES: u64 = 1 << 30;
const BUSY_TIMEOUT_MS: u64 = 10_000;

fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("{context}: {e}"))
}

/// A unit of work for the writer thread.
trait Job: Send {
    /// Runs inside the group's transaction; errors roll back only this job's savepoint.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's commit has succeeded or failed.
    fn finish(self: Box<Self>, commit: Result<()>);
    /// How much of the group this job takes up (events appended, or 1).
    fn weight(&self) -> usize;
    /// A reservation, which may be decided together with the group's other reservations.
    fn reservation(&mut self) -> Option<&mut inventory::ReserveJob> {
        None
    }
    /// Whether the job may share one savepoint with the group's other such jobs: it answers
    /// every outcome of its business (a decline included) as a success and fails only on a
    /// database error, which is rare — and which then undoes the others too; they are answered
    /// that they may be tried again.
    fn shares_savepoint(&self) -> bool {
        false
    }
}

struct FnJob<F, R> {
    work: Option<F>,
    outcome: Option<Result<R>>,
    reply: oneshot::Sender<Result<R>>,
    weight: usize,
    shared: bool,
}

impl<F, R> Job for FnJob<F, R>
where
    F: FnOnce(&Connection) -> Result<R> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        settle(&mut self.outcome, unwound(|| work(conn)))
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        // The caller may have gone away (a cancelled request); its work is committed regardless.
        let _ = self.reply.send(answer(commit, self.outcome));
    }

    fn weight(&self) -> usize {
        self.weight
    }

    fn shares_savepoint(&self) -> bool {
        self.shared
    }
}

/// Runs a job's work; a panic in one job must not take the writer (and every other caller) down
/// with it, so it becomes an error and the job is rolled back.
fn unwound<R>(work: impl FnOnce() -> Result<R>) -> Result<R> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        Err(StoreError::Corrupt(
            "a store operation panicked; it was rolled back".into(),
        ))
    })
}

/// Keeps a job's outcome for its answer; whether it succeeded (a failure rolls the job back).
fn settle<R>(slot: &mut Option<Result<R>>, outcome: Result<R>) -> bool {
    let ok = outcome.is_ok();
    *slot = Some(outcome);
    ok
}

/// A job's answer once its group has committed (or failed to).
fn answer<R>(commit: Result<()>, outcome: Option<Result<R>>) -> Result<R> {
    match (commit, outcome) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(outcome)) => outcome,
        (Ok(()), None) => Err(StoreError::Closed),
    }
}

enum WriterMessage {
    Job(Box<dyn Job>),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct SqliteStore {
    writer: mpsc::Sender<WriterMessage>,
    readers: ReaderPool,
}

struct ReaderPool {
    path: String,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

fn sqlite_path(database: &str) -> &str {
    database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database)
}

/// The statement listing the inbox after an id, of one status when the query names one (read
/// from the status index: every inbound message is kept, so the few rejected ones are not found
/// by reading all the others — and each one's body, which lies before its status).
fn inbox_listing(q: &InboxQuery) -> String {
    format!(
        concat!(
            "SELECT ",
            inbox_columns!(),
            " FROM inbox WHERE {} AND id > ?1 ORDER BY id LIMIT ?3"
        ),
        q.conditions(|n, _| format!("?{n}"))
    )
}

// The outbox's queries on its open actions. Each names one status, so that SQLite reads it
// from that status's partial index (migration 11) and never walks a target's finished actions;
// a test checks their plans.
const EXPIRED_LEASES: &str = "SELECT id, attempts, attempts_base, coalesce_key FROM outbox \
     WHERE target = ?1 AND status = 'in_flight' AND lease_until < ?2";
const IN_FLIGHT_COUNT: &str =
    "SELECT count(*) FROM outbox WHERE target = ?1 AND status = 'in_flight'";
const DUE_ACTIONS: &str = "SELECT id FROM outbox o WHERE target = ?1 AND status = 'pending' AND next_attempt_at <= ?2 \
     AND (coalesce_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox b WHERE b.target = o.target \
     AND b.coalesce_key = o.coalesce_key AND b.status = 'in_flight')) \
     ORDER BY priority DESC, next_attempt_at, id LIMIT ?3";
const NEXT_DUE: &str = "SELECT min(t) FROM (SELECT min(next_attempt_at) AS t FROM outbox WHERE target = ?1 \
     AND status = 'pending' UNION ALL SELECT min(lease_until) FROM outbox WHERE target = ?1 AND status = 'in_flight')";
const OPEN_COUNTS: &str = "SELECT target, status, count(*) FROM (SELECT target, status FROM outbox \
     WHERE status = 'pending' UNION ALL SELECT target, status FROM outbox WHERE status = 'in_flight' \
     UNION ALL SELECT target, status FROM outbox WHERE status = 'dead') GROUP BY target, status ORDER BY target, status";
const DEAD_LETTERS: &str = concat!(
    "SELECT ",
    action_columns!(),
    " FROM outbox WHERE status = 'dead' AND id > ?1 AND (?2 IS NULL OR target = ?2) ORDER BY id LIMIT ?3"
);

fn open_connection(path: &str, durability: Durability, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open SQLite database {path}: {e}")))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(db("set busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // Without the query planner stability guarantee, SQLite marks a statement whose plan could
    // depend on a bound value (an ORDER BY or LIMIT near a parameter, a join on a parameter's
    // column) to be prepared again at every new binding: a cached statement would be parsed and
    // planned anew on each use. Our plans never depend on the values.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(db("keep query plans stable"))?;
    if !read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db("enable WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "SQLite database {path} cannot use WAL mode (got {mode}); is it on a network share?"
            )));
        }
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        // The writer's page cache is kept small and the file is mapped into memory instead.
        // A page split in a B-tree moves pages through a page number far past the end of the
        // file, and at the next commit SQLite then sweeps the whole page cache's hash table
        // (every slot, pages or not): with 128 MiB that sweep took a fifth of the writer's time
        // under many small commits (orders, reservations). Pages the small cache does not hold
        // are read from the mapping, without a system call or a copy.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA temp_store=MEMORY; \
             PRAGMA cache_size=-{WRITER_CACHE_KIB}; PRAGMA mmap_size={WRITER_MMAP_BYTES};"
        ))
        .map_err(db("set pragmas"))?;
    }
    Ok(conn)
}

impl SqliteStore {
    pub(crate) async fn open(options: &StoreOptions) -> Result<Self> {
        let path = sqlite_path(&options.database).to_owned();
        if path == ":memory:" || path.contains("mode=memory") {
            // Every connection would see a different, empty database.
            return Err(StoreError::Invalid(
                "an in-memory SQLite database cannot be shared by the writer and the readers; give a file path".into(),
            ));
        }
        let durability = options.durability;
        let group_max = options.group_commit_events_max.max(1);
        let (tx, rx) = mpsc::channel(options.write_queue_max.max(1));
        let writer_path = path.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("crossdock-sqlite-writer".into())
            .spawn(
                move || match open_connection(&writer_path, durability, false) {
                    Ok(conn) => {
                        let mut checkpointer =
                            checkpoint::Checkpointer::start(&conn, &writer_path, durability);
                        let _ = ready_tx.send(Ok(()));
                        writer_loop(&conn, rx, group_max, &checkpointer);
                        checkpointer.stop();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                },
            )
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        let readers_max = options.connections_max.max(1) as usize;
        Ok(SqliteStore {
            writer: tx,
            readers: ReaderPool {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(readers_max)),
            },
        })
    }

    /// Runs `work` on the writer thread inside the next group commit.
    async fn write<R, F>(&self, weight: usize, work: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.write_job(weight, false, work).await
    }

    /// Like `write`, for work that answers every outcome of its business as a success, so that
    /// it may share a savepoint with other such work (see `Job::shares_savepoint`).
    async fn write_shared<R, F>(&self, weight: usize, work: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.write_job(weight, true, work).await
    }

    async fn write_job<R, F>(&self, weight: usize, shared: bool, work: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = FnJob {
            work: Some(work),
            outcome: None,
            reply,
            weight,
            shared,
        };
        self.submit(Box::new(job), answer).await
    }

    /// Hands a job to the writer thread and waits for its answer.
    async fn submit<R>(
        &self,
        job: Box<dyn Job>,
        answer: oneshot::Receiver<Result<R>>,
    ) -> Result<R> {
        self.writer
            .send(WriterMessage::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `work` on a read connection on the blocking pool.
    async fn read<R, F>(&self, work: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conn = self.readers.idle.lock().map_or(None, |mut idle| idle.pop());
        let path = self.readers.path.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => match open_connection(&path, Durability::Full, true) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = work(&conn);
            (Some(conn), result)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?;
        if let (Some(conn), Ok(mut idle)) = (conn, self.readers.idle.lock()) {
            idle.push(conn);
        }
        drop(permit);
        result
    }

    pub(crate) async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self
            .writer
            .send(WriterMessage::Shutdown(done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
        if let Ok(mut idle) = self.readers.idle.lock() {
            idle.clear();
        }
    }

    pub(crate) async fn migrate(&self) -> Result<MigrationReport> {
        self.write(1, |conn| {
            conn.execute_batch(migrate::CREATE_TABLE)
                .map_err(db("create migrations table"))?;
            let mut version = schema_version(conn)?;
            let mut applied = Vec::new();
            let start = version;
            for m in migrate::SQLITE.iter().filter(|m| m.version > start) {
                conn.execute_batch(m.sql).map_err(|e| {
                    StoreError::Unavailable(format!("migration {} ({}) failed: {e}", m.version, m.name))
                })?;
                conn.execute(
                    "INSERT INTO crossdock_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now') * 1000000)",
                    params![m.version, m.name],
                )
                .map_err(db("record migration"))?;
                applied.push((m.version, m.name));
                version = m.version;
            }
            migrate::check_version(version, migrate::SQLITE)?;
            Ok(MigrationReport { applied, version })
        })
        .await
    }

    pub(crate) async fn check_ready(&self) -> Result<()> {
        self.read(|conn| {
            let exists: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'crossdock_migrations')",
                    [],
                    |r| r.get(0),
                )
                .map_err(db("read schema"))?;
            let found = if exists { schema_version(conn)? } else { 0 };
            migrate::check_version(found, migrate::SQLITE)
        })
        .await
    }

    // ---- inbox ----

    pub(crate) async fn inbox_put(&self, m: InboxMessage) -> Result<i64> {
        let headers = serde_json::to_string(&m.headers)
            .map_err(|e| StoreError::Invalid(format!("headers: {e}")))?;
        self.write(1, move |conn| {
            conn.prepare_cached(
                "INSERT INTO inbox (source, protocol, headers, body, received_at, status, error, correlation_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    m.source,
                    m.protocol,
                    headers,
                    m.body,
                    m.received_at.unix_micros(),
                    m.status.as_str(),
                    m.error,
                    m.correlation_id
                ])
            })
            .map_err(db("keep inbound message"))?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    pub(crate) async fn inbox_mark(
        &self,
        id: i64,
        status: InboxStatus,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<bool> {
        self.write(1, move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE inbox SET status = ?2, error = ?3, processed_at = ?4, attempts = attempts + 1 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, status.as_str(), error, now.unix_micros()]))
                .map_err(db("update inbox message"))?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn inbox_list(&self, q: InboxQuery) -> Result<Vec<InboxRecord>> {
        self.read(move |conn| {
            let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
            let status = q.status.map(InboxStatus::as_str);
            let mut stmt = conn
                .prepare_cached(&inbox_listing(&q))
                .map_err(db("list inbox"))?;
            let rows = stmt
                .query_map(params![q.after_id, status, limit], inbox_row)
                .map_err(db("list inbox"))?;
            rows.map(|r| r.map_err(db("read inbox row"))?).collect()
        })
        .await
    }

    pub(crate) async fn inbox_get(&self, id: i64) -> Result<Option<InboxRecord>> {
        self.read(move |conn| {
            conn.query_row(
                concat!("SELECT ", inbox_columns!(), " FROM inbox WHERE id = ?1"),
                [id],
                inbox_row,
            )
            .optional()
            .map_err(db("read inbox message"))?
            .transpose()
        })
        .await
    }

    // ---- event log ----

    pub(crate) async fn append(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<AppendOutcome> {
        self.write(events.len(), move |conn| append_rows(conn, &events, now))
            .await
    }

    pub(crate) async fn read_events(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, source, id, kind, subject, time, datacontenttype, dataschema, data, data_base64, \
                     extensions, correlation_id, causation_id, recorded_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(db("read events"))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![after, limit]).map_err(db("read events"))?;
            let mut events = Vec::new();
            while let Some(row) = rows.next().map_err(db("read events"))? {
                events.push(event_row(row).map_err(db("read event row"))??);
            }
            Ok(events)
        })
        .await
    }

    pub(crate) async fn head_seq(&self) -> Result<i64> {
        self.read(|conn| {
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                .map_err(db("read log head"))
        })
        .await
    }

    pub(crate) async fn seq_before(&self, time: Timestamp) -> Result<i64> {
        self.read(move |conn| {
            conn.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE recorded_at < ?1",
                [time.unix_micros()],
                |r| r.get(0),
            )
            .map_err(db("find position by time"))
        })
        .await
    }

    // ---- consumers and projections ----

    pub(crate) async fn consumers(&self) -> Result<Vec<ConsumerPosition>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, position, updated_at FROM consumers ORDER BY name")
                .map_err(db("list consumers"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ConsumerPosition {
                        name: r.get(0)?,
                        position: r.get(1)?,
                        updated_at: Timestamp::from_unix_micros(r.get(2)?),
                    })
                })
                .map_err(db("list consumers"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(db("list consumers"))
        })
        .await
    }

    pub(crate) async fn consumer_position(&self, name: &str, now: Timestamp) -> Result<i64> {
        // A known consumer's position is a read: the writer (and its commit) is needed only the
        // first time. A stale read is caught by the compare-and-set of the commit.
        let known = name.to_owned();
        let found = self
            .read(move |conn| {
                conn.prepare_cached("SELECT position FROM consumers WHERE name = ?1")
                    .and_then(|mut s| s.query_row([known.as_str()], |r| r.get(0)).optional())
                    .map_err(db("read consumer position"))
            })
            .await?;
        if let Some(position) = found {
            return Ok(position);
        }
        let name = name.to_owned();
        self.write(1, move |conn| {
            conn.prepare_cached(
                "INSERT INTO consumers (name, position, updated_at) VALUES (?1, 0, ?2) ON CONFLICT (name) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![name, now.unix_micros()]))
            .map_err(db("register consumer"))?;
            position_of(conn, &name)
        })
        .await
    }

    pub(crate) async fn reset_consumer(
        &self,
        name: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<()> {
        let name = name.to_owned();
        self.write(1, move |conn| set_position(conn, &name, position, now))
            .await
    }

    pub(crate) async fn commit_projection(
        &self,
        name: &str,
        from: i64,
        to: i64,
        writes: ProjectionWrites,
        now: Timestamp,
    ) -> Result<()> {
        let name = name.to_owned();
        self.write(1, move |conn| {
            let actual = position_of(conn, &name)?;
            if actual != from {
                return Err(StoreError::PositionMoved { name, expected: from, actual });
            }
            match writes {
                ProjectionWrites::None => {}
                ProjectionWrites::Inventory(writes) => inventory::write_inventory(conn, &writes, now)?,
                ProjectionWrites::SourceActivity(delta) => {
                    let mut stmt = conn
                        .prepare_cached(
                            "INSERT INTO source_activity (source, kind, first_seq, last_seq, first_recorded_at, last_recorded_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (source, kind) DO UPDATE SET \
                             first_seq = min(first_seq, excluded.first_seq), last_seq = max(last_seq, excluded.last_seq), \
                             first_recorded_at = min(first_recorded_at, excluded.first_recorded_at), \
                             last_recorded_at = max(last_recorded_at, excluded.last_recorded_at)",
                        )
                        .map_err(db("write source activity"))?;
                    for ((source, kind), e) in delta.iter() {
                        stmt.execute(params![
                            source,
                            kind,
                            e.first_seq,
                            e.last_seq,
                            e.first_recorded_at.unix_micros(),
                            e.last_recorded_at.unix_micros()
                        ])
                        .map_err(db("write source activity"))?;
                    }
                }
            }
            set_position(conn, &name, to, now)
        })
        .await
    }

    pub(crate) async fn clear_projection(
        &self,
        projection: Projection,
        now: Timestamp,
    ) -> Result<()> {
        self.write(1, move |conn| {
            conn.execute_batch(clear_sql(projection))
                .map_err(db("clear projection"))?;
            set_position(conn, projection.consumer_name(), 0, now)
        })
        .await
    }

    pub(crate) async fn source_activity(&self) -> Result<Vec<(ActivityKey, ActivityEntry)>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT source, kind, first_seq, last_seq, first_recorded_at, last_recorded_at \
                     FROM source_activity ORDER BY source, kind",
                )
                .map_err(db("read source activity"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        (r.get(0)?, r.get(1)?),
                        ActivityEntry {
                            first_seq: r.get(2)?,
                            last_seq: r.get(3)?,
                            first_recorded_at: Timestamp::from_unix_micros(r.get(4)?),
                            last_recorded_at: Timestamp::from_unix_micros(r.get(5)?),
                        },
                    ))
                })
                .map_err(db("read source activity"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(db("read source activity"))
        })
        .await
    }

    // ---- outbox ----

    pub(crate) async fn enqueue(
        &self,
        actions: Vec<NewAction>,
        now: Timestamp,
    ) -> Result<Vec<EnqueueResult>> {
        self.write(actions.len(), move |conn| enqueue_rows(conn, &actions, now))
            .await
    }

    pub(crate) async fn claim(&self, c: ClaimRequest<'_>) -> Result<Vec<ClaimedAction>> {
        let target = c.target.to_owned();
        let (limit, in_flight_max, lease_ms, policy, now) =
            (c.limit, c.in_flight_max, c.lease_ms, c.policy, c.now);
        self.write(1, move |conn| {
            let now_us = now.unix_micros();
            // Leases that ran out belong to a worker that stopped mid-delivery.
            let expired: Vec<(i64, i64, i64, Option<String>)> = {
                let mut stmt = conn
                    .prepare_cached(EXPIRED_LEASES)
                    .map_err(db("find expired leases"))?;
                let rows = stmt
                    .query_map(params![target, now_us], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .map_err(db("find expired leases"))?;
                rows.collect::<rusqlite::Result<_>>().map_err(db("find expired leases"))?
            };
            for (id, attempts, base, coalesce_key) in expired {
                let decision = crate::lease_expired_decision(&policy, attempts - base, now);
                let error = "the delivery did not finish before its lease expired (the worker stopped or hung)";
                finish_failure(conn, &target, id, attempts, coalesce_key.as_deref(), error, decision, now, "lease_expired")?;
            }
            let in_flight: i64 = conn
                .prepare_cached(IN_FLIGHT_COUNT)
                .and_then(|mut s| s.query_row([&target], |r| r.get(0)))
                .map_err(db("count in-flight actions"))?;
            let room = i64::try_from(in_flight_max).unwrap_or(i64::MAX) - in_flight;
            let take = room.min(i64::try_from(limit).unwrap_or(i64::MAX));
            if take <= 0 {
                return Ok(Vec::new());
            }
            let ids: Vec<i64> = {
                let mut stmt = conn
                    .prepare_cached(DUE_ACTIONS)
                    .map_err(db("find due actions"))?;
                let rows = stmt
                    .query_map(params![target, now_us, take], |r| r.get(0))
                    .map_err(db("find due actions"))?;
                rows.collect::<rusqlite::Result<_>>().map_err(db("find due actions"))?
            };
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                let action = conn
                    .prepare_cached(
                        "UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, lease_until = ?2, updated_at = ?3 \
                         WHERE id = ?1 RETURNING id, target, idempotency_key, coalesce_key, priority, payload, attempts, \
                         attempts - attempts_base, correlation_id, created_at",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![id, now_us.saturating_add(lease_ms.saturating_mul(1000)), now_us], |r| {
                            Ok(ClaimedAction {
                                id: r.get(0)?,
                                target: r.get(1)?,
                                idempotency_key: r.get(2)?,
                                coalesce_key: r.get(3)?,
                                priority: r.get(4)?,
                                payload: r.get(5)?,
                                attempt: r.get(6)?,
                                attempts_in_budget: r.get(7)?,
                                correlation_id: r.get(8)?,
                                created_at: Timestamp::from_unix_micros(r.get(9)?),
                            })
                        })
                    })
                    .map_err(db("claim action"))?;
                conn.prepare_cached(
                    "INSERT INTO outbox_attempts (outbox_id, attempt, started_at, outcome) VALUES (?1, ?2, ?3, 'in_flight')",
                )
                .and_then(|mut s| s.execute(params![action.id, action.attempt, now_us]))
                .map_err(db("record attempt"))?;
                claimed.push(action);
            }
            Ok(claimed)
        })
        .await
    }

    pub(crate) async fn ack(&self, id: i64, attempt: i64, now: Timestamp) -> Result<bool> {
        self.write(1, move |conn| {
            let now_us = now.unix_micros();
            let done: Option<(String, Option<String>)> = conn
                .prepare_cached(
                    "UPDATE outbox SET status = 'delivered', lease_until = NULL, updated_at = ?3, last_error = NULL \
                     WHERE id = ?1 AND status = 'in_flight' AND attempts = ?2 RETURNING target, coalesce_key",
                )
                .and_then(|mut s| s.query_row(params![id, attempt, now_us], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(db("acknowledge delivery"))?;
            let Some((target, coalesce_key)) = done else {
                return Ok(false);
            };
            conn.prepare_cached(
                "UPDATE outbox_attempts SET outcome = 'delivered', finished_at = ?3 WHERE outbox_id = ?1 AND attempt = ?2",
            )
            .and_then(|mut s| s.execute(params![id, attempt, now_us]))
            .map_err(db("record attempt"))?;
            if let Some(key) = coalesce_key {
                // A newer value reached the target, so older dead letters for the key are moot.
                conn.prepare_cached(
                    "UPDATE outbox SET status = 'superseded', superseded_by = ?3, updated_at = ?4 \
                     WHERE target = ?1 AND coalesce_key = ?2 AND status = 'dead' AND id < ?3",
                )
                .and_then(|mut s| s.execute(params![target, key, id, now_us]))
                .map_err(db("resolve older dead letters"))?;
            }
            Ok(true)
        })
        .await
    }

    pub(crate) async fn fail(&self, f: DeliveryFailure) -> Result<bool> {
        self.write(1, move |conn| {
            let current: Option<(String, Option<String>)> = conn
                .prepare_cached(
                    "SELECT target, coalesce_key FROM outbox WHERE id = ?1 AND status = 'in_flight' AND attempts = ?2",
                )
                .and_then(|mut s| s.query_row(params![f.id, f.attempt], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(db("read action"))?;
            let Some((target, coalesce_key)) = current else {
                return Ok(false);
            };
            finish_failure(conn, &target, f.id, f.attempt, coalesce_key.as_deref(), &f.error, f.decision, f.now, "failed")?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn next_due(&self, target: &str) -> Result<Option<Timestamp>> {
        let target = target.to_owned();
        self.read(move |conn| {
            let due: Option<i64> = conn
                .prepare_cached(NEXT_DUE)
                .and_then(|mut s| s.query_row([&target], |r| r.get(0)))
                .map_err(db("find next due action"))?;
            Ok(due.map(Timestamp::from_unix_micros))
        })
        .await
    }

    pub(crate) async fn outbox_counts(&self) -> Result<Vec<OutboxCount>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(OPEN_COUNTS)
                .map_err(db("count actions"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db("count actions"))?;
            let mut counts = Vec::new();
            for row in rows {
                let (target, status, count) = row.map_err(db("count actions"))?;
                let status = ActionStatus::parse(&status).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown action status {status}"))
                })?;
                counts.push(OutboxCount {
                    target,
                    status,
                    count,
                });
            }
            Ok(counts)
        })
        .await
    }

    pub(crate) async fn action(&self, id: i64) -> Result<Option<ActionRecord>> {
        self.read(move |conn| {
            conn.query_row(
                concat!("SELECT ", action_columns!(), " FROM outbox WHERE id = ?1"),
                [id],
                action_row,
            )
            .optional()
            .map_err(db("read action"))?
            .transpose()
        })
        .await
    }

    pub(crate) async fn action_by_key(
        &self,
        target: &str,
        key: &str,
    ) -> Result<Option<ActionRecord>> {
        let (target, key) = (target.to_owned(), key.to_owned());
        self.read(move |conn| {
            conn.query_row(
                concat!(
                    "SELECT ",
                    action_columns!(),
                    " FROM outbox WHERE target = ?1 AND idempotency_key = ?2"
                ),
                [target, key],
                action_row,
            )
            .optional()
            .map_err(db("read action"))?
            .transpose()
        })
        .await
    }

    pub(crate) async fn attempts(&self, id: i64) -> Result<Vec<AttemptRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT attempt, started_at, finished_at, outcome, error FROM outbox_attempts \
                     WHERE outbox_id = ?1 ORDER BY attempt",
                )
                .map_err(db("read attempts"))?;
            let rows = stmt
                .query_map([id], |r| {
                    Ok(AttemptRecord {
                        attempt: r.get(0)?,
                        started_at: Timestamp::from_unix_micros(r.get(1)?),
                        finished_at: r.get::<_, Option<i64>>(2)?.map(Timestamp::from_unix_micros),
                        outcome: r.get(3)?,
                        error: r.get(4)?,
                    })
                })
                .map_err(db("read attempts"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(db("read attempts"))
        })
        .await
    }

    pub(crate) async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<u64> {
        self.write(1, move |conn| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            conn.execute(
                "DELETE FROM outbox_attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE status IN \
                 ('delivered', 'superseded', 'dropped') AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
                params![before.unix_micros(), limit],
            )
            .map_err(db("purge attempts"))?;
            let n = conn
                .execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status IN \
                     ('delivered', 'superseded', 'dropped') AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
                    params![before.unix_micros(), limit],
                )
                .map_err(db("purge actions"))?;
            Ok(n as u64)
        })
        .await
    }

    // ---- dead letters ----

    pub(crate) async fn dead_letters(&self, q: DeadLetterQuery) -> Result<Vec<ActionRecord>> {
        self.read(move |conn| {
            let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
            let mut stmt = conn
                .prepare_cached(DEAD_LETTERS)
                .map_err(db("list dead letters"))?;
            let rows = stmt
                .query_map(params![q.after_id, q.target, limit], action_row)
                .map_err(db("list dead letters"))?;
            rows.map(|r| r.map_err(db("read dead letter"))?).collect()
        })
        .await
    }

    pub(crate) async fn replay_dead_letter(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<ReplayOutcome> {
        self.write(1, move |conn| {
            let row: Option<(String, String, Option<String>)> = conn
                .query_row(
                    "SELECT status, target, coalesce_key FROM outbox WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db("read dead letter"))?;
            let Some((status, target, coalesce_key)) = row else {
                return Ok(ReplayOutcome::NotFound);
            };
            if status != ActionStatus::Dead.as_str() {
                return Ok(ReplayOutcome::NotDead);
            }
            if let Some(key) = coalesce_key {
                let newer: Option<i64> = conn
                    .query_row(
                        "SELECT max(id) FROM outbox WHERE target = ?1 AND coalesce_key = ?2 AND id > ?3 \
                         AND status IN ('pending', 'in_flight', 'delivered')",
                        params![target, key, id],
                        |r| r.get(0),
                    )
                    .map_err(db("find newer action"))?;
                if let Some(by) = newer {
                    conn.execute(
                        "UPDATE outbox SET status = 'superseded', superseded_by = ?2, updated_at = ?3 WHERE id = ?1",
                        params![id, by, now.unix_micros()],
                    )
                    .map_err(db("supersede dead letter"))?;
                    return Ok(ReplayOutcome::Superseded { by });
                }
            }
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts_base = attempts, next_attempt_at = ?2, updated_at = ?2, \
                 lease_until = NULL WHERE id = ?1",
                params![id, now.unix_micros()],
            )
            .map_err(db("replay dead letter"))?;
            Ok(ReplayOutcome::Replayed)
        })
        .await
    }

    pub(crate) async fn drop_dead_letter(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<DropOutcome> {
        let reason = reason.to_owned();
        self.write(1, move |conn| drop_dead_row(conn, id, &reason, now))
            .await
    }
}

impl SqliteStore {
    // ---- API keys ----

    pub(crate) async fn key_create(&self, k: NewApiKey) -> Result<KeyCreateOutcome> {
        self.write(1, move |conn| {
            let taken: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = ?1 AND revoked_at IS NULL)",
                    [&k.name],
                    |r| r.get(0),
                )
                .map_err(db("check key name"))?;
            if taken {
                return Ok(KeyCreateOutcome::NameTaken);
            }
            conn.execute(
                "INSERT INTO api_keys (id, name, secret_sha256, scopes, channel, rate_per_second, burst, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    k.id,
                    k.name,
                    k.secret_sha256,
                    k.scopes,
                    k.channel,
                    k.rate_per_second,
                    k.burst,
                    k.created_at.unix_micros()
                ],
            )
            .map_err(db("create key"))?;
            Ok(KeyCreateOutcome::Created)
        })
        .await
    }

    pub(crate) async fn key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row([&id], key_row).optional())
            .map_err(db("read key"))
        })
        .await
    }

    pub(crate) async fn keys_list(&self) -> Result<Vec<ApiKeyRecord>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys ORDER BY created_at, id"
                ))
                .map_err(db("list keys"))?;
            let rows = stmt.query_map([], key_row).map_err(db("list keys"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(db("list keys"))
        })
        .await
    }

    pub(crate) async fn key_revoke(&self, name: &str, now: Timestamp) -> Result<Option<String>> {
        let name = name.to_owned();
        self.write(1, move |conn| {
            conn.query_row(
                "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL RETURNING id",
                params![name, now.unix_micros()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("revoke key"))
        })
        .await
    }

    // ---- idempotency ----

    pub(crate) async fn idempotency_lookup(&self, l: IdempotencyLookup<'_>) -> Result<Recorded> {
        let (api_key, key, fingerprint) = (
            l.api_key.to_owned(),
            l.key.to_owned(),
            l.fingerprint.to_vec(),
        );
        let expired_before = l.expired_before;
        self.read(move |conn| recorded(conn, &api_key, &key, &fingerprint, expired_before))
            .await
    }

    pub(crate) async fn idempotency_keep(
        &self,
        l: IdempotencyLookup<'_>,
        response: StoredResponse,
        now: Timestamp,
    ) -> Result<()> {
        let (api_key, key, fingerprint) = (
            l.api_key.to_owned(),
            l.key.to_owned(),
            l.fingerprint.to_vec(),
        );
        self.write(1, move |conn| {
            keep_response(conn, &api_key, &key, &fingerprint, &response, now)
        })
        .await
    }

    pub(crate) async fn append_idempotent(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
        r: IdempotentAppend,
    ) -> Result<IdempotentOutcome> {
        self.write(events.len().max(1), move |conn| {
            match recorded(conn, &r.api_key, &r.key, &r.fingerprint, r.expired_before)? {
                Recorded::Nothing => {}
                seen => return Ok(IdempotentOutcome::Recorded(seen)),
            }
            let outcome = append_rows(conn, &events, now)?;
            let response = (r.render)(&outcome);
            keep_response(conn, &r.api_key, &r.key, &r.fingerprint, &response, now)?;
            Ok(IdempotentOutcome::Appended(outcome))
        })
        .await
    }

    pub(crate) async fn purge_idempotency(&self, before: Timestamp, limit: usize) -> Result<u64> {
        self.write(1, move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM idempotency WHERE (api_key, key) IN \
                     (SELECT api_key, key FROM idempotency WHERE created_at < ?1 LIMIT ?2)",
                    params![
                        before.unix_micros(),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                )
                .map_err(db("purge idempotency records"))?;
            Ok(n as u64)
        })
        .await
    }

    // ---- audit ----

    pub(crate) async fn audit_append(&self, e: AuditEntry) -> Result<i64> {
        self.write(1, move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit_log (at, actor, action, target, outcome, correlation_id, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    e.at.unix_micros(),
                    e.actor,
                    e.action,
                    e.target,
                    e.outcome,
                    e.correlation_id,
                    e.detail
                ])
            })
            .map_err(db("record audit entry"))?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    pub(crate) async fn audit_list(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_log WHERE id > ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR action = ?3) \
                     AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5) ORDER BY id LIMIT ?6"
                ))
                .map_err(db("list audit entries"))?;
            let rows = stmt
                .query_map(
                    params![
                        q.after_id,
                        q.actor,
                        q.action,
                        q.since.map(Timestamp::unix_micros),
                        q.until.map(Timestamp::unix_micros),
                        i64::try_from(q.limit).unwrap_or(i64::MAX)
                    ],
                    |r| {
                        Ok(AuditRecord {
                            id: r.get(0)?,
                            entry: AuditEntry {
                                at: Timestamp::from_unix_micros(r.get(1)?),
                                actor: r.get(2)?,
                                action: r.get(3)?,
                                target: r.get(4)?,
                                outcome: r.get(5)?,
                                correlation_id: r.get(6)?,
                                detail: r.get(7)?,
                            },
                        })
                    },
                )
                .map_err(db("list audit entries"))?;
            rows.collect::<rusqlite::Result<_>>().map_err(db("list audit entries"))
        })
        .await
    }
}

fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key: NewApiKey {
            id: r.get(0)?,
            name: r.get(1)?,
            secret_sha256: r.get(2)?,
            scopes: r.get(3)?,
            channel: r.get(4)?,
            rate_per_second: r.get(5)?,
            burst: r.get(6)?,
            created_at: Timestamp::from_unix_micros(r.get(7)?),
        },
        revoked_at: r.get::<_, Option<i64>>(8)?.map(Timestamp::from_unix_micros),
    })
}

/// Appends events, skipping those already in the log, inside the caller's transaction.
fn append_rows(conn: &Connection, events: &[NewEvent], now: Timestamp) -> Result<AppendOutcome> {
    let mut stmt = conn
        .prepare_cached(INSERT_EVENT)
        .map_err(db("prepare append"))?;
    let mut results = Vec::with_capacity(events.len());
    for e in events {
        let changed = insert_event(&mut stmt, e, now).map_err(db("append event"))?;
        results.push(if changed == 1 {
            AppendResult::Appended(conn.last_insert_rowid())
        } else {
            AppendResult::Duplicate
        });
    }
    Ok(AppendOutcome { results })
}

/// What is kept for an idempotency key, within its window.
fn recorded(
    conn: &Connection,
    api_key: &str,
    key: &str,
    fingerprint: &[u8],
    expired_before: Timestamp,
) -> Result<Recorded> {
    let row = conn
        .prepare_cached(
            "SELECT fingerprint, status, content_type, body FROM idempotency \
             WHERE api_key = ?1 AND key = ?2 AND created_at >= ?3 AND completed_at IS NOT NULL",
        )
        .and_then(|mut s| {
            s.query_row(params![api_key, key, expired_before.unix_micros()], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, u16>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            })
            .optional()
        })
        .map_err(db("read idempotency record"))?;
    Ok(match row {
        None => Recorded::Nothing,
        Some((kept, _, _, _)) if kept != fingerprint => Recorded::Mismatch,
        Some((_, status, content_type, body)) => Recorded::Replay(StoredResponse {
            status,
            content_type,
            body: body.unwrap_or_default(),
        }),
    })
}

/// Keeps a completed response under its idempotency key (replacing an expired record).
fn keep_response(
    conn: &Connection,
    api_key: &str,
    key: &str,
    fingerprint: &[u8],
    response: &StoredResponse,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency (api_key, key, fingerprint, created_at, completed_at, status, content_type, body) \
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7) ON CONFLICT (api_key, key) DO UPDATE SET \
         fingerprint = excluded.fingerprint, created_at = excluded.created_at, completed_at = excluded.completed_at, \
         status = excluded.status, content_type = excluded.content_type, body = excluded.body",
    )
    .and_then(|mut s| {
        s.execute(params![
            api_key,
            key,
            fingerprint,
            now.unix_micros(),
            response.status,
            response.content_type,
            response.body
        ])
    })
    .map_err(db("keep idempotent response"))?;
    Ok(())
}

/// Appends one event unless its `(source, id)` is already in the log.
pub(crate) const INSERT_EVENT: &str = "INSERT INTO events (source, id, kind, subject, time, datacontenttype, \
     dataschema, data, data_base64, extensions, correlation_id, causation_id, recorded_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (source, id) DO NOTHING";

/// Runs [`INSERT_EVENT`] for one event; returns the number of rows inserted (0 or 1).
pub(crate) fn insert_event(
    stmt: &mut rusqlite::CachedStatement<'_>,
    e: &NewEvent,
    recorded_at: Timestamp,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        e.source(),
        e.id(),
        e.kind(),
        e.subject(),
        e.time().map(Timestamp::unix_micros),
        e.datacontenttype(),
        e.dataschema(),
        e.data().map(EventData::as_text),
        e.data().is_some_and(EventData::is_base64),
        e.extensions(),
        e.correlation_id(),
        e.causation_id(),
        recorded_at.unix_micros(),
    ])
}

/// What clearing a projection deletes. The inventory keeps what channels last acknowledged;
/// the rebuild recomputes what they should show.
fn clear_sql(projection: Projection) -> &'static str {
    match projection {
        Projection::SourceActivity => "DELETE FROM source_activity;",
        Projection::Inventory => {
            "DELETE FROM inventory_positions; DELETE FROM inventory_deltas; DELETE FROM inventory_divergences;"
        }
    }
}

/// Queues actions inside the caller's transaction (see `Store::enqueue`).
fn enqueue_rows(
    conn: &Connection,
    actions: &[NewAction],
    now: Timestamp,
) -> Result<Vec<EnqueueResult>> {
    let mut results = Vec::with_capacity(actions.len());
    for a in actions {
        let exists: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE target = ?1 AND idempotency_key = ?2)",
            )
            .and_then(|mut s| s.query_row(params![a.target, a.idempotency_key], |r| r.get(0)))
            .map_err(db("check action"))?;
        if exists {
            results.push(EnqueueResult::Duplicate);
            continue;
        }
        let replaced: Option<i64> = match &a.coalesce_key {
            None => None,
            Some(key) => conn
                .prepare_cached(
                    "SELECT id FROM outbox WHERE target = ?1 AND coalesce_key = ?2 AND status = 'pending'",
                )
                .and_then(|mut s| s.query_row(params![a.target, key], |r| r.get(0)).optional())
                .map_err(db("find coalesced action"))?,
        };
        if let Some(old) = replaced {
            conn.prepare_cached(
                "UPDATE outbox SET status = 'superseded', updated_at = ?2 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![old, now.unix_micros()]))
            .map_err(db("supersede action"))?;
        }
        conn.prepare_cached(
            "INSERT INTO outbox (target, idempotency_key, coalesce_key, priority, payload, status, \
             next_attempt_at, created_at, updated_at, correlation_id, causation_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?7, ?8, ?9)",
        )
        .and_then(|mut s| {
            s.execute(params![
                a.target,
                a.idempotency_key,
                a.coalesce_key,
                a.priority,
                a.payload,
                a.not_before.unix_micros(),
                now.unix_micros(),
                a.correlation_id,
                a.causation_id
            ])
        })
        .map_err(db("queue action"))?;
        let id = conn.last_insert_rowid();
        if let Some(old) = replaced {
            conn.prepare_cached("UPDATE outbox SET superseded_by = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![old, id]))
                .map_err(db("supersede action"))?;
        }
        results.push(EnqueueResult::Queued { id, replaced });
    }
    Ok(results)
}

/// Records a failed or abandoned attempt and applies the retry decision.
#[allow(clippy::too_many_arguments)]
fn finish_failure(
    conn: &Connection,
    target: &str,
    id: i64,
    attempt: i64,
    coalesce_key: Option<&str>,
    error: &str,
    decision: FailureDecision,
    now: Timestamp,
    outcome: &str,
) -> Result<()> {
    let now_us = now.unix_micros();
    conn.prepare_cached(
        "UPDATE outbox_attempts SET outcome = ?3, error = ?4, finished_at = ?5 WHERE outbox_id = ?1 AND attempt = ?2",
    )
    .and_then(|mut s| s.execute(params![id, attempt, outcome, error, now_us]))
    .map_err(db("record attempt"))?;
    match decision {
        FailureDecision::RetryAt(at) => {
            // Only one action per coalescing key may be pending; a newer one makes this stale.
            let newer: Option<i64> = match coalesce_key {
                None => None,
                Some(key) => conn
                    .prepare_cached(
                        "SELECT id FROM outbox WHERE target = ?1 AND coalesce_key = ?2 AND status = 'pending'",
                    )
                    .and_then(|mut s| s.query_row(params![target, key], |r| r.get(0)).optional())
                    .map_err(db("find newer action"))?,
            };
            if let Some(by) = newer {
                conn.prepare_cached(
                    "UPDATE outbox SET status = 'superseded', superseded_by = ?2, lease_until = NULL, last_error = ?3, \
                     updated_at = ?4 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, by, error, now_us]))
                .map_err(db("supersede action"))?;
            } else {
                conn.prepare_cached(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = ?2, lease_until = NULL, last_error = ?3, \
                     updated_at = ?4 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, at.unix_micros(), error, now_us]))
                .map_err(db("schedule retry"))?;
            }
        }
        FailureDecision::DeadLetter => {
            conn.prepare_cached(
                "UPDATE outbox SET status = 'dead', lease_until = NULL, last_error = ?2, updated_at = ?3 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, error, now_us]))
            .map_err(db("dead-letter action"))?;
        }
    }
    Ok(())
}

fn schema_version(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM crossdock_migrations",
        [],
        |r| r.get(0),
    )
    .map_err(db("read schema version"))
}

fn position_of(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT position FROM consumers WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(db("read consumer position"))
        .map(|p| p.unwrap_or(0))
}

fn set_position(conn: &Connection, name: &str, position: i64, now: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO consumers (name, position, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| s.execute(params![name, position, now.unix_micros()]))
    .map_err(db("move consumer position"))?;
    Ok(())
}

fn inbox_row(r: &Row<'_>) -> rusqlite::Result<Result<InboxRecord>> {
    let headers: String = r.get(3)?;
    let status: String = r.get(6)?;
    let Some(status) = InboxStatus::parse(&status) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "unknown inbox status {status}"
        ))));
    };
    let headers = match serde_json::from_str(&headers) {
        Ok(h) => h,
        Err(e) => return Ok(Err(StoreError::Corrupt(format!("inbox headers: {e}")))),
    };
    Ok(Ok(InboxRecord {
        id: r.get(0)?,
        message: InboxMessage {
            source: r.get(1)?,
            protocol: r.get(2)?,
            headers,
            body: r.get(4)?,
            received_at: Timestamp::from_unix_micros(r.get(5)?),
            status,
            error: r.get(7)?,
            correlation_id: r.get(10)?,
        },
        attempts: r.get(8)?,
        processed_at: r.get::<_, Option<i64>>(9)?.map(Timestamp::from_unix_micros),
    }))
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredEvent>> {
    let seq: i64 = r.get(0)?;
    let data = match r.get::<_, Option<String>>(8)? {
        None => None,
        Some(text) => match EventData::from_stored(text, r.get(9)?) {
            Some(d) => Some(d),
            None => {
                return Ok(Err(StoreError::Corrupt(format!(
                    "event {seq} has unreadable data"
                ))));
            }
        },
    };
    Ok(Ok(StoredEvent {
        seq,
        recorded_at: Timestamp::from_unix_micros(r.get(13)?),
        event: NewEvent::from_stored(
            r.get(2)?,
            r.get(1)?,
            r.get(3)?,
            r.get(4)?,
            r.get::<_, Option<i64>>(5)?.map(Timestamp::from_unix_micros),
            r.get(6)?,
            r.get(7)?,
            data,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
        ),
    }))
}

fn action_row(r: &Row<'_>) -> rusqlite::Result<Result<ActionRecord>> {
    let status: String = r.get(6)?;
    let Some(status) = ActionStatus::parse(&status) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "unknown action status {status}"
        ))));
    };
    Ok(Ok(ActionRecord {
        id: r.get(0)?,
        target: r.get(1)?,
        idempotency_key: r.get(2)?,
        coalesce_key: r.get(3)?,
        priority: r.get(4)?,
        payload: r.get(5)?,
        status,
        attempts: r.get(7)?,
        attempts_in_budget: r.get(8)?,
        next_attempt_at: Timestamp::from_unix_micros(r.get(9)?),
        created_at: Timestamp::from_unix_micros(r.get(10)?),
        updated_at: Timestamp::from_unix_micros(r.get(11)?),
        last_error: r.get(12)?,
        correlation_id: r.get(13)?,
        causation_id: r.get(14)?,
        superseded_by: r.get(15)?,
        drop_reason: r.get(16)?,
    }))
}

/// The writer thread: gathers waiting jobs into one transaction, commits, then answers them.
fn writer_loop(
    conn: &Connection,
    mut rx: mpsc::Receiver<WriterMessage>,
    group_max: usize,
    checkpointer: &checkpoint::Checkpointer,
) {
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    // Reservations in the last group: more than one means callers reserve concurrently.
    let mut reservers = 0;
    while shutdown.is_none() {
        let Some(first) = next_message(&mut rx) else {
            break;
        };
        let mut jobs: Vec<Box<dyn Job>> = Vec::new();
        let mut weight = 0;
        match first {
            WriterMessage::Job(job) => {
                weight += job.weight();
                jobs.push(job);
            }
            WriterMessage::Shutdown(done) => shutdown = Some(done),
        }
        // Take whatever else is already waiting, up to the group bound. While reservations come
        // from several callers at once, wait a moment for the ones answered by the last commit:
        // otherwise the callers settle into two half groups that take turns, each paying for a
        // commit.
        let linger_until = (reservers > 1).then(|| std::time::Instant::now() + RESERVATION_GATHER);
        while weight < group_max && shutdown.is_none() {
            let next = match (rx.try_recv(), linger_until) {
                (Err(mpsc::error::TryRecvError::Empty), Some(until)) => {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    match poll_for(&mut rx, left.min(RESERVATION_LINGER)) {
                        Ok(Some(message)) => Ok(message),
                        _ => break,
                    }
                }
                (next, _) => next,
            };
            match next {
                Ok(WriterMessage::Job(job)) => {
                    weight += job.weight();
                    jobs.push(job);
                }
                Ok(WriterMessage::Shutdown(done)) => shutdown = Some(done),
                Err(_) => break,
            }
        }
        if !jobs.is_empty() {
            reservers = jobs.iter_mut().filter_map(|job| job.reservation()).count();
            run_group(conn, jobs);
            checkpointer.between_groups(conn);
        }
    }
    // Jobs that arrived after the shutdown request are answered with an error, never dropped
    // silently.
    rx.close();
    while let Ok(message) = rx.try_recv() {
        if let WriterMessage::Job(job) = message {
            job.finish(Err(StoreError::Closed));
        }
    }
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

/// How long the writer keeps looking for the next job before it sleeps. A caller that appends
/// batch after batch sends its next one within this time; catching it awake saves a thread
/// wake-up per commit, which costs more than this on a busy virtual machine.
const WRITER_LINGER: std::time::Duration = std::time::Duration::from_micros(300);

/// How long a group of reservations waits for one more (see `writer_loop`): about what a
/// caller takes to send its next reservation once answered.
const RESERVATION_LINGER: std::time::Duration = std::time::Duration::from_micros(40);

/// The longest a group of reservations is gathered for, however steadily they arrive.
const RESERVATION_GATHER: std::time::Duration = std::time::Duration::from_micros(400);

/// The next message if one arrives within `within`, without sleeping; `Err` when every sender
/// is gone.
fn poll_for(
    rx: &mut mpsc::Receiver<WriterMessage>,
    within: std::time::Duration,
) -> std::result::Result<Option<WriterMessage>, mpsc::error::TryRecvError> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        match rx.try_recv() {
            Ok(message) => return Ok(Some(message)),
            Err(mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
            Err(closed) => return Err(closed),
        }
    }
    Ok(None)
}

fn next_message(rx: &mut mpsc::Receiver<WriterMessage>) -> Option<WriterMessage> {
    match poll_for(rx, WRITER_LINGER) {
        Ok(Some(message)) => Some(message),
        Ok(None) => rx.blocking_recv(),
        Err(_) => None,
    }
}

/// Runs a statement from the statement cache: savepoints are opened and closed for every job.
fn cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_group(conn: &Connection, mut jobs: Vec<Box<dyn Job>>) {
    if let Err(e) = cached(conn, "BEGIN IMMEDIATE") {
        let err = StoreError::Unavailable(format!("cannot begin a write transaction: {e}"));
        for job in jobs {
            job.finish(Err(err.clone()));
        }
        return;
    }
    if jobs.len() == 1 {
        // Alone in its transaction, a job needs no savepoint: a failure rolls everything back.
        let mut job = jobs.remove(0);
        let outcome = if job.run(conn) {
            cached(conn, "COMMIT")
                .map_err(|e| StoreError::Unavailable(format!("commit failed: {e}")))
        } else {
            conn.execute_batch("ROLLBACK")
                .map_err(|e| StoreError::Unavailable(format!("rollback failed: {e}")))
        };
        if outcome.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        job.finish(outcome);
        return;
    }
    // Reservations waiting together are decided together, under one savepoint, before the rest:
    // each position's stock is read and written once for all of them. Jobs that fail only on a
    // database error (order takes) share one savepoint next.
    let mut batch: Vec<Box<dyn Job>> = Vec::new();
    let mut shared: Vec<Box<dyn Job>> = Vec::new();
    let mut rest: Vec<Box<dyn Job>> = Vec::new();
    for mut job in jobs {
        if job.reservation().is_some() {
            batch.push(job);
        } else if job.shares_savepoint() {
            shared.push(job);
        } else {
            rest.push(job);
        }
    }
    let mut refused: Vec<Option<StoreError>> =
        Vec::with_capacity(batch.len() + shared.len() + rest.len());
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    // A lone reservation, or a lone shared job, runs like any other job.
    if batch.len() > 1 {
        let error = reserve_batch(conn, &mut batch);
        refused.extend(batch.iter().map(|_| error.clone()));
        jobs.append(&mut batch);
    }
    if shared.len() > 1 {
        refused.extend(share_savepoint(conn, &mut shared));
        jobs.append(&mut shared);
    }
    let decided = jobs.len();
    jobs.append(&mut batch);
    jobs.append(&mut shared);
    jobs.append(&mut rest);
    // A job whose savepoint cannot be opened is not run: it could not be rolled back alone.
    for job in jobs.iter_mut().skip(decided) {
        refused.push(in_savepoint(conn, || (job.run(conn), ())).err());
    }
    let commit = cached(conn, "COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        StoreError::Unavailable(format!("commit failed: {e}"))
    });
    for (job, refused) in jobs.into_iter().zip(refused) {
        job.finish(match refused {
            Some(e) => Err(e),
            None => commit.clone(),
        });
    }
}

/// Runs `work` in a savepoint: kept when `work` says it succeeded, rolled back when not. A
/// savepoint that cannot be opened (then `work` does not run) or closed is an error.
fn in_savepoint<T>(conn: &Connection, work: impl FnOnce() -> (bool, T)) -> Result<T> {
    cached(conn, "SAVEPOINT job")
        .map_err(|e| StoreError::Unavailable(format!("cannot open a savepoint: {e}")))?;
    let (ok, value) = work();
    let end = if ok {
        cached(conn, "RELEASE job")
    } else {
        cached(conn, "ROLLBACK TO job").and_then(|()| cached(conn, "RELEASE job"))
    };
    end.map_err(|e| StoreError::Unavailable(format!("cannot close a savepoint: {e}")))?;
    Ok(value)
}

/// Runs jobs under one savepoint. When one fails, the savepoint is rolled back: that job
/// answers with its own error, and the others, undone with it, with one saying so.
fn share_savepoint(conn: &Connection, jobs: &mut [Box<dyn Job>]) -> Vec<Option<StoreError>> {
    let failed = in_savepoint(conn, || {
        let failed = jobs.iter_mut().position(|job| !job.run(conn));
        (failed.is_none(), failed)
    });
    (0..jobs.len())
        .map(|i| match &failed {
            Err(e) => Some(e.clone()),
            Ok(Some(f)) if *f != i => Some(StoreError::Unavailable(
                "nothing was written: a write grouped with this one failed; try again".into(),
            )),
            Ok(_) => None,
        })
        .collect()
}

/// Decides a group's reservations together under one savepoint; an error that leaves them
/// undecided is returned for every one of them.
fn reserve_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Option<StoreError> {
    let mut jobs: Vec<&mut inventory::ReserveJob> = batch
        .iter_mut()
        .filter_map(|job| job.reservation())
        .collect();
    in_savepoint(conn, || (inventory::reserve_together(conn, &mut jobs), ())).err()
}

/// Drops a dead letter inside the writer's transaction.
pub(super) fn drop_dead_row(
    conn: &Connection,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> Result<DropOutcome> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM outbox WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(db("read dead letter"))?;
    match status.as_deref() {
        None => return Ok(DropOutcome::NotFound),
        Some(s) if s != ActionStatus::Dead.as_str() => return Ok(DropOutcome::NotDead),
        Some(_) => {}
    }
    conn.prepare_cached(
        "UPDATE outbox SET status = 'dropped', drop_reason = ?2, updated_at = ?3 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, reason, now.unix_micros()]))
    .map_err(db("drop dead letter"))?;
    Ok(DropOutcome::Dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached statement is prepared once: binding new values never makes SQLite parse and plan
    /// it again (which it does for plans that could depend on the values unless told not to).
    #[test]
    fn cached_statements_are_not_prepared_again_on_each_binding() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("qpsg.db");
        let conn =
            open_connection(&path.display().to_string(), Durability::Normal, false).expect("open");
        for m in migrate::SQLITE {
            conn.execute_batch(m.sql).expect("migrate");
        }
        // Opened again, as a running store opens its file: the schema is read from the disk.
        drop(conn);
        let conn = open_connection(&path.display().to_string(), Durability::Normal, false)
            .expect("open again");
        // Each of these was prepared again at every binding before the guarantee was set.
        for sql in [
            "SELECT sku, location, quantity FROM inventory_reservations WHERE order_id = ?1 ORDER BY sku, location",
            "SELECT p.on_hand FROM inventory_positions p LEFT JOIN inventory_reserved r \
             ON r.sku = p.sku AND r.location = p.location WHERE p.sku = ?1 AND p.location = ?1",
            "SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?1",
        ] {
            for i in 0..5_i64 {
                let mut stmt = conn.prepare_cached(sql).expect("prepare");
                let value: rusqlite::types::Value = if sql.contains("LIMIT") {
                    i.into()
                } else {
                    format!("sku-{i}").into()
                };
                let rows = stmt.query_map([value], |_| Ok(())).expect("query");
                assert_eq!(rows.count(), 0);
            }
            let stmt = conn.prepare_cached(sql).expect("prepare");
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "prepared again on binding: {sql}"
            );
        }
    }

    /// The steps of a statement's query plan, as SQLite describes them.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan");
        // Parameters left unbound: the plan does not depend on their values.
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().expect("plan") {
            steps.push(row.get(3).expect("plan step"));
        }
        steps
    }

    /// The queries on a target's open actions read them from their status's partial index:
    /// never the target's finished actions (kept until purged) by its name alone, nor rows by a
    /// range of ids, each of which would read the row — and its payload's overflow pages — to
    /// learn its status.
    #[test]
    fn open_action_queries_never_walk_finished_actions() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let conn = migrated(&dir);
        for (name, sql) in [
            ("expired leases", EXPIRED_LEASES),
            ("in-flight count", IN_FLIGHT_COUNT),
            ("due actions", DUE_ACTIONS),
            ("next due time", NEXT_DUE),
            ("open counts", OPEN_COUNTS),
            ("dead letters", DEAD_LETTERS),
            ("a channel's open actions", inventory::OPEN_ACTIONS),
            ("a channel's due listings", inventory::DUE_LISTINGS),
        ] {
            let steps = plan(&conn, sql);
            let reads: Vec<&String> = steps
                .iter()
                .filter(|step| {
                    let mut words = step.split_whitespace();
                    matches!(words.next(), Some("SEARCH" | "SCAN"))
                        && matches!(words.next(), Some("outbox" | "o" | "b"))
                })
                .collect();
            assert!(
                !reads.is_empty(),
                "{name}: no read of the outbox in {steps:?}"
            );
            for step in reads {
                let by_status = [
                    "outbox_pending",
                    "outbox_in_flight",
                    "outbox_dead",
                    "outbox_coalesce",
                ]
                .iter()
                .any(|index| {
                    step.contains(&format!("INDEX {index} "))
                        || step.ends_with(&format!("INDEX {index}"))
                });
                assert!(by_status, "{name}: {step} (plan {steps:?})");
            }
        }
    }

    /// The inbox listed by status reads that status's messages from its index.
    #[test]
    fn inbox_listing_by_status_reads_its_index() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let conn = migrated(&dir);
        let q = InboxQuery {
            status: Some(InboxStatus::Rejected),
            ..InboxQuery::default()
        };
        let steps = plan(&conn, &inbox_listing(&q));
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING INDEX inbox_status (status=? AND id>?)")),
            "{steps:?}"
        );
    }

    /// The deadline sweep (every second) reads only the sagas that are due, from their due
    /// index, and a listing by status reads that status's sagas: neither reads every order.
    #[test]
    fn saga_listings_read_their_index() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let conn = migrated(&dir);
        let now = Some(Timestamp::from_unix_micros(1));
        for table in ["orders", "returns"] {
            for (q, index) in [
                (
                    OrderQuery {
                        due_before: now,
                        ..OrderQuery::default()
                    },
                    "due",
                ),
                (
                    OrderQuery {
                        status: Some("exception".into()),
                        ..OrderQuery::default()
                    },
                    "status",
                ),
            ] {
                let steps = plan(&conn, &orders::saga_listing(table, &q));
                let wanted = format!("SEARCH {table} USING INDEX {table}_{index} (");
                assert!(
                    steps.iter().any(|s| s.starts_with(&wanted)),
                    "{table} by {index}: {steps:?}"
                );
            }
        }
    }

    /// Opens a migrated write connection in a temporary folder.
    fn migrated(dir: &tempfile::TempDir) -> Connection {
        let path = dir.path().join("store.db").display().to_string();
        let conn = open_connection(&path, Durability::Normal, false).expect("open");
        for m in migrate::SQLITE {
            conn.execute_batch(m.sql).expect("migrate");
        }
        conn
    }

    /// A job that records `name` as a consumer, or fails after writing it.
    fn named(
        name: &'static str,
        fail: bool,
        shared: bool,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<()>>) {
        let (reply, answer) = oneshot::channel();
        let job = FnJob {
            work: Some(move |conn: &Connection| {
                conn.execute(
                    "INSERT INTO consumers (name, position, updated_at) VALUES (?1, 0, 0)",
                    [name],
                )
                .map_err(db("write"))?;
                if fail {
                    return Err(StoreError::Unavailable(format!("{name} failed")));
                }
                Ok(())
            }),
            outcome: None,
            reply,
            weight: 1,
            shared,
        };
        (Box::new(job), answer)
    }

    fn written(conn: &Connection, name: &str) -> bool {
        conn.prepare("SELECT 1 FROM consumers WHERE name = ?1")
            .and_then(|mut s| s.exists([name]))
            .expect("read")
    }

    /// Jobs that share a savepoint are committed together; when one fails, it answers with its
    /// own error, the others with one saying nothing was written, and none of them is kept —
    /// while a job of the same group outside the savepoint is committed.
    #[test]
    fn jobs_sharing_a_savepoint_are_undone_together_when_one_fails() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let conn = migrated(&dir);
        let (a, a_answer) = named("a", false, true);
        let (b, b_answer) = named("b", false, true);
        run_group(&conn, vec![a, b]);
        for answer in [a_answer, b_answer] {
            answer
                .blocking_recv()
                .expect("answered")
                .expect("committed");
        }
        assert!(written(&conn, "a") && written(&conn, "b"));

        let (c, c_answer) = named("c", false, true);
        let (d, d_answer) = named("d", true, true);
        let (e, e_answer) = named("e", false, true);
        let (lone, lone_answer) = named("f", false, false);
        run_group(&conn, vec![c, lone, d, e]);
        let own = d_answer
            .blocking_recv()
            .expect("answered")
            .expect_err("d failed");
        assert!(own.to_string().contains("d failed"), "{own}");
        for answer in [c_answer, e_answer] {
            let undone = answer
                .blocking_recv()
                .expect("answered")
                .expect_err("undone");
            assert!(
                undone.to_string().contains("nothing was written"),
                "{undone}"
            );
        }
        lone_answer
            .blocking_recv()
            .expect("answered")
            .expect("committed");
        for name in ["c", "d", "e"] {
            assert!(!written(&conn, name), "{name} was kept");
        }
        assert!(written(&conn, "f"));
    }
}
