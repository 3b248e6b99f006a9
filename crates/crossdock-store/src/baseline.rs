//! Baselines for `crossdock bench`: the same rows written with plain SQL and nothing else (no
//! group commit, no dedup pre-check, no append lock), so crossdock's figures can be reported as
//! ratios measured in the same run. Also scratch PostgreSQL schemas for tests and benches.

use std::time::{Duration, Instant};

use crossdock_core::{EventData, NewEvent, Timestamp};

use crate::sqlite::{INSERT_EVENT, insert_event};
use crate::{Result, StoreError};

/// Events per second: plain inserts, the same inserts again (all duplicates), a plain scan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Baseline {
    pub ingest: f64,
    pub duplicates: f64,
    pub scan: f64,
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn sq(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("baseline: {e}"))
}

fn pg(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("baseline: {e}"))
}

const RECORDED_AT: Timestamp = Timestamp::from_unix_micros(1_800_000_000_000_000);

/// The same rows into the same schema with the same statement, one transaction per batch, on the
/// caller's thread (no writer thread, no group commit, no savepoints), WAL mode,
/// `synchronous=FULL` (or `NORMAL` when `full_sync` is false).
pub fn raw_sqlite(
    path: &std::path::Path,
    events: &[NewEvent],
    batch: usize,
    full_sync: bool,
) -> Result<Baseline> {
    let conn = rusqlite::Connection::open(path).map_err(sq)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .map_err(sq)?;
    let sync = if full_sync { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!("PRAGMA synchronous={sync};"))
        .map_err(sq)?;
    // The very schema crossdock uses, so the comparison is of the machinery, not of the tables.
    for m in crate::migrate::SQLITE {
        conn.execute_batch(m.sql).map_err(sq)?;
    }
    let insert_all = |conn: &rusqlite::Connection| -> rusqlite::Result<Duration> {
        let started = Instant::now();
        for chunk in events.chunks(batch.max(1)) {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            {
                let mut stmt = conn.prepare_cached(INSERT_EVENT)?;
                for e in chunk {
                    insert_event(&mut stmt, e, RECORDED_AT)?;
                }
            }
            conn.execute_batch("COMMIT")?;
        }
        Ok(started.elapsed())
    };
    let ingest = rate(events.len(), insert_all(&conn).map_err(sq)?);
    let duplicates = rate(events.len(), insert_all(&conn).map_err(sq)?);
    let started = Instant::now();
    let mut stmt = conn
        .prepare(
            "SELECT seq, source, id, kind, subject, data, recorded_at FROM events ORDER BY seq",
        )
        .map_err(sq)?;
    let mut rows = stmt.query([]).map_err(sq)?;
    let mut scanned = 0usize;
    while let Some(row) = rows.next().map_err(sq)? {
        let read = || -> rusqlite::Result<()> {
            let _: (i64, String, String, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            let _: (Option<String>, Option<String>, i64) = (row.get(4)?, row.get(5)?, row.get(6)?);
            Ok(())
        };
        read().map_err(sq)?;
        scanned += 1;
    }
    let scan = rate(scanned, started.elapsed());
    Ok(Baseline {
        ingest,
        duplicates,
        scan,
    })
}

/// Rows per statement in the PostgreSQL baseline: about 10 KiB of ~250-byte events.
const BASELINE_STATEMENT_ROWS: usize = 40;

/// The same rows with plain multi-row inserts into PostgreSQL, one transaction per batch, no
/// append lock and no sequence bookkeeping.
pub async fn raw_postgres(url: &str, events: &[NewEvent], batch: usize) -> Result<Baseline> {
    let pool = sqlx::PgPool::connect(url).await.map_err(pg)?;
    sqlx::raw_sql(
        "CREATE TABLE raw_events (seq BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, id TEXT NOT NULL, \
         kind TEXT NOT NULL, subject TEXT, data TEXT, recorded_at BIGINT NOT NULL, UNIQUE (source, id))",
    )
    .execute(&pool)
    .await
    .map_err(pg)?;
    let insert_all = || async {
        let started = Instant::now();
        for chunk in events.chunks(batch.max(1)) {
            let mut tx = pool.begin().await?;
            // Statements small enough to leave in one write, as crossdock's own appends do
            // (see `pg::STATEMENT_BYTES_MAX`), so the baseline is not slowed by the driver.
            for part in chunk.chunks(BASELINE_STATEMENT_ROWS) {
                let sources: Vec<&str> = part.iter().map(NewEvent::source).collect();
                let ids: Vec<&str> = part.iter().map(NewEvent::id).collect();
                let kinds: Vec<&str> = part.iter().map(NewEvent::kind).collect();
                let subjects: Vec<Option<&str>> = part.iter().map(NewEvent::subject).collect();
                let data: Vec<Option<&str>> = part
                    .iter()
                    .map(|e| e.data().map(EventData::as_text))
                    .collect();
                sqlx::query(
                    "INSERT INTO raw_events (source, id, kind, subject, data, recorded_at) \
                     SELECT s, i, k, sub, d, 0 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                     AS t(s, i, k, sub, d) ON CONFLICT (source, id) DO NOTHING",
                )
                .bind(sources)
                .bind(ids)
                .bind(kinds)
                .bind(subjects)
                .bind(data)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        Ok::<_, sqlx::Error>(started.elapsed())
    };
    let ingest = rate(events.len(), insert_all().await.map_err(pg)?);
    let duplicates = rate(events.len(), insert_all().await.map_err(pg)?);
    let started = Instant::now();
    let mut scanned = 0;
    let mut after = 0i64;
    loop {
        let rows: Vec<ScanRow> = sqlx::query_as(
            "SELECT seq, source, id, kind, subject, data FROM raw_events WHERE seq > $1 ORDER BY seq LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&pool)
        .await
        .map_err(pg)?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        scanned += rows.len();
    }
    let scan = rate(scanned, started.elapsed());
    pool.close().await;
    Ok(Baseline {
        ingest,
        duplicates,
        scan,
    })
}

/// The columns the PostgreSQL scan baseline reads.
type ScanRow = (i64, String, String, String, Option<String>, Option<String>);

/// A PostgreSQL schema created for one test or bench run and dropped afterwards. Its `url`
/// selects the schema through the connection's `search_path`.
#[derive(Debug)]
pub struct ScratchSchema {
    admin: String,
    pub name: String,
    pub url: String,
}

impl ScratchSchema {
    /// Creates a fresh schema named `<prefix>_<unique suffix>`.
    pub async fn create(admin: &str, prefix: &str) -> Result<ScratchSchema> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{prefix}_{}_{unique}_{nanos}", std::process::id());
        let pool = sqlx::PgPool::connect(admin)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .map_err(pg)?;
        pool.close().await;
        let sep = if admin.contains('?') { '&' } else { '?' };
        Ok(ScratchSchema {
            url: format!("{admin}{sep}options=-c%20search_path%3D{name}"),
            admin: admin.to_owned(),
            name,
        })
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                self.name
            )))
            .execute(&pool)
            .await;
            pool.close().await;
        }
    }
}

/// The SKU a single-unit order of the reservation baselines takes: `hot` orders all take the
/// first; the others spread over the rest.
fn reservation_sku(names: &[String], order: usize, hot: bool) -> &str {
    if hot || names.len() < 2 {
        &names[0]
    } else {
        &names[1 + order % (names.len() - 1)]
    }
}

/// Positions at `location` for every name: `orders` units each, half of that for the first (hot)
/// one, so that the hot run must refuse half its orders.
fn reservation_stock(names: &[String], orders: usize) -> Vec<(String, i64)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.clone(),
                if i == 0 {
                    orders as i64 / 2
                } else {
                    orders as i64
                },
            )
        })
        .collect()
}

/// Raw SQLite reservations: per single-unit order, a conditional update of the reserved total
/// (only while on hand − allocated − reserved stays ≥ 0) and, when it held, the reservation row;
/// `per_commit` orders per transaction (what crossdock's group commit gathers from as many
/// callers). Returns orders per second spread over many SKUs, then on the hot one.
pub fn raw_sqlite_reservations(
    path: &std::path::Path,
    names: &[String],
    location: &str,
    orders: usize,
    per_commit: usize,
    full_sync: bool,
) -> Result<(f64, f64)> {
    let conn = rusqlite::Connection::open(path).map_err(sq)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .map_err(sq)?;
    let sync = if full_sync { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!("PRAGMA synchronous={sync};"))
        .map_err(sq)?;
    for m in crate::migrate::SQLITE {
        conn.execute_batch(m.sql).map_err(sq)?;
    }
    conn.execute_batch("BEGIN").map_err(sq)?;
    for (name, on_hand) in reservation_stock(names, orders) {
        conn.execute(
            "INSERT INTO inventory_positions (sku, location, on_hand, updated_at) VALUES (?1, ?2, ?3, 0)",
            rusqlite::params![name, location, on_hand],
        )
        .map_err(sq)?;
        conn.execute(
            "INSERT INTO inventory_reserved (sku, location, reserved) VALUES (?1, ?2, 0)",
            rusqlite::params![name, location],
        )
        .map_err(sq)?;
    }
    conn.execute_batch("COMMIT").map_err(sq)?;
    let run = |hot: bool| -> rusqlite::Result<(Duration, usize)> {
        let started = Instant::now();
        let mut held = 0;
        let ids: Vec<usize> = (0..orders).collect();
        for chunk in ids.chunks(per_commit.max(1)) {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            for order in chunk {
                let sku = reservation_sku(names, *order, hot);
                let changed = conn
                    .prepare_cached(
                        "UPDATE inventory_reserved SET reserved = reserved + 1 WHERE sku = ?1 AND location = ?2 \
                         AND reserved + 1 <= (SELECT on_hand - COALESCE(alloc_value, 0) FROM inventory_positions \
                         WHERE sku = ?1 AND location = ?2)",
                    )?
                    .execute(rusqlite::params![sku, location])?;
                if changed == 1 {
                    held += 1;
                    conn.prepare_cached(
                        "INSERT INTO inventory_reservations (order_id, sku, location, quantity, created_at) \
                         VALUES (?1, ?2, ?3, 1, 0)",
                    )?
                    .execute(rusqlite::params![format!("{}-{order}", if hot { "h" } else { "m" }), sku, location])?;
                }
            }
            conn.execute_batch("COMMIT")?;
        }
        Ok((started.elapsed(), held))
    };
    let (spread, _) = run(false).map_err(sq)?;
    let (hot, held) = run(true).map_err(sq)?;
    if held != orders / 2 {
        return Err(StoreError::Invalid(format!(
            "the raw baseline held {held} of {} on the hot SKU",
            orders / 2
        )));
    }
    Ok((rate(orders, spread), rate(orders, hot)))
}

/// Raw PostgreSQL reservations: the same conditional update and insert, one transaction per
/// order, from `callers` concurrent connections.
pub async fn raw_postgres_reservations(
    url: &str,
    names: &[String],
    location: &str,
    orders: usize,
    callers: usize,
) -> Result<(f64, f64)> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(callers).unwrap_or(64))
        .connect(url)
        .await
        .map_err(pg)?;
    sqlx::raw_sql(
        "CREATE TABLE raw_positions (sku TEXT NOT NULL, location TEXT NOT NULL, on_hand BIGINT NOT NULL, \
         reserved BIGINT NOT NULL, PRIMARY KEY (sku, location)); \
         CREATE TABLE raw_reservations (order_id TEXT NOT NULL, sku TEXT NOT NULL, location TEXT NOT NULL, \
         quantity BIGINT NOT NULL, PRIMARY KEY (order_id, sku, location))",
    )
    .execute(&pool)
    .await
    .map_err(pg)?;
    let stock = reservation_stock(names, orders);
    let skus: Vec<&str> = stock.iter().map(|(n, _)| n.as_str()).collect();
    let on_hand: Vec<i64> = stock.iter().map(|(_, q)| *q).collect();
    sqlx::query(
        "INSERT INTO raw_positions (sku, location, on_hand, reserved) SELECT s, $2, q, 0 FROM UNNEST($1::text[], $3::bigint[]) AS t(s, q)",
    )
    .bind(&skus)
    .bind(location)
    .bind(&on_hand)
    .execute(&pool)
    .await
    .map_err(pg)?;
    let names = std::sync::Arc::new(names.to_vec());
    let mut figures = Vec::new();
    for hot in [false, true] {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..callers {
            let (pool, names, location) = (pool.clone(), names.clone(), location.to_owned());
            tasks.spawn(async move {
                let mut held = 0usize;
                for order in (caller..orders).step_by(callers) {
                    let sku = reservation_sku(&names, order, hot);
                    let mut tx = pool.begin().await?;
                    let changed = sqlx::query(
                        "UPDATE raw_positions SET reserved = reserved + 1 WHERE sku = $1 AND location = $2 \
                         AND on_hand - reserved >= 1",
                    )
                    .bind(sku)
                    .bind(&location)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if changed == 1 {
                        held += 1;
                        sqlx::query("INSERT INTO raw_reservations VALUES ($1, $2, $3, 1)")
                            .bind(format!("{}-{order}", if hot { "h" } else { "m" }))
                            .bind(sku)
                            .bind(&location)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(held)
            });
        }
        let mut held = 0;
        while let Some(done) = tasks.join_next().await {
            held += done
                .map_err(|e| StoreError::Invalid(e.to_string()))?
                .map_err(pg)?;
        }
        if hot && held != orders / 2 {
            return Err(StoreError::Invalid(format!(
                "the raw baseline held {held} of {} on the hot SKU",
                orders / 2
            )));
        }
        figures.push(rate(orders, started.elapsed()));
    }
    pool.close().await;
    Ok((figures[0], figures[1]))
}
