//! Financial posting on SQLite: lines recorded once by key; a run gathers the lines in no batch
//! yet into one batch per channel, currency and day and queues each batch's action, all in one
//! transaction on the writer thread — so a line is never in two batches and a run after a
//! failure finds nothing it already took.

use crossdock_core::Timestamp;
use crossdock_core::money::Amount;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db, enqueue_rows};
use crate::Result;
use crate::model::{
    EnqueueResult, PostingActionBuilder, PostingBatch, PostingLine, PostingQuery, STATUS_COUNTS,
    StatusCount, posting_batch_key,
};

const COLUMNS: &str = "key, channel, currency, day, lines, units, amount, status, journal, \
                       action_id, created_at, updated_at";

fn batch(r: &rusqlite::Row<'_>) -> rusqlite::Result<PostingBatch> {
    Ok(PostingBatch {
        key: r.get(0)?,
        channel: r.get(1)?,
        currency: r.get(2)?,
        day: r.get(3)?,
        lines: r.get(4)?,
        units: r.get(5)?,
        amount: Amount::from_ten_thousandths(r.get(6)?),
        status: r.get(7)?,
        journal: r.get(8)?,
        action_id: r.get(9)?,
        created_at: Timestamp::from_unix_micros(r.get(10)?),
        updated_at: Timestamp::from_unix_micros(r.get(11)?),
    })
}

impl SqliteStore {
    pub(crate) async fn posting_lines_add(
        &self,
        lines: Vec<PostingLine>,
        now: Timestamp,
    ) -> Result<usize> {
        self.write(lines.len().max(1), move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO posting_lines (key, channel, currency, day, source, units, amount, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (key) DO NOTHING",
                )
                .map_err(db("record posting line"))?;
            let mut added = 0;
            for l in &lines {
                added += insert
                    .execute(params![
                        l.key,
                        l.channel,
                        l.currency,
                        l.day,
                        l.source,
                        l.units,
                        l.amount.ten_thousandths(),
                        now.unix_micros()
                    ])
                    .map_err(db("record posting line"))?;
            }
            Ok(added)
        })
        .await
    }

    pub(crate) async fn postings_run(
        &self,
        build: PostingActionBuilder,
        now: Timestamp,
    ) -> Result<Vec<PostingBatch>> {
        self.write(1, move |conn| {
            let groups: Vec<(String, String, String)> = conn
                .prepare_cached(
                    "SELECT channel, currency, day FROM posting_lines WHERE batch IS NULL \
                     GROUP BY channel, currency, day ORDER BY day, channel, currency",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .map_err(db("find lines to post"))?;
            let mut made = Vec::with_capacity(groups.len());
            for (channel, currency, day) in groups {
                let before: i64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM posting_batches WHERE channel = ?1 AND currency = ?2 \
                         AND day = ?3",
                        params![channel, currency, day],
                        |r| r.get(0),
                    )
                    .map_err(db("count batches"))?;
                let key = posting_batch_key(&day, &channel, &currency, before + 1);
                conn.execute(
                    "UPDATE posting_lines SET batch = ?4 WHERE batch IS NULL AND channel = ?1 \
                     AND currency = ?2 AND day = ?3",
                    params![channel, currency, day, key],
                )
                .map_err(db("gather lines"))?;
                let (lines, units, amount): (i64, i64, i64) = conn
                    .query_row(
                        "SELECT COUNT(*), COALESCE(SUM(units), 0), COALESCE(SUM(amount), 0) \
                         FROM posting_lines WHERE batch = ?1",
                        [&key],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .map_err(db("total batch"))?;
                let mut b = PostingBatch {
                    key,
                    channel,
                    currency,
                    day,
                    lines,
                    units,
                    amount: Amount::from_ten_thousandths(amount),
                    status: "queued".into(),
                    journal: None,
                    action_id: None,
                    created_at: now,
                    updated_at: now,
                };
                if let Some(EnqueueResult::Queued { id, .. }) =
                    enqueue_rows(conn, &[build(&b)], now)?.first()
                {
                    b.action_id = Some(*id);
                }
                conn.execute(
                    &format!(
                        "INSERT INTO posting_batches ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                         ?7, ?8, NULL, ?9, ?10, ?10)"
                    ),
                    params![
                        b.key,
                        b.channel,
                        b.currency,
                        b.day,
                        b.lines,
                        b.units,
                        b.amount.ten_thousandths(),
                        b.status,
                        b.action_id,
                        now.unix_micros()
                    ],
                )
                .map_err(db("record batch"))?;
                made.push(b);
            }
            Ok(made)
        })
        .await
    }

    pub(crate) async fn posting_confirm(
        &self,
        key: &str,
        journal: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let (key, journal) = (key.to_owned(), journal.to_owned());
        self.write(1, move |conn| {
            let changed = conn
                .execute(
                    "UPDATE posting_batches SET status = 'posted', journal = ?2, updated_at = ?3 \
                     WHERE key = ?1 AND status <> 'posted'",
                    params![key, journal, now.unix_micros()],
                )
                .map_err(db("confirm batch"))?;
            Ok(changed == 1)
        })
        .await
    }

    pub(crate) async fn posting_batch(&self, key: &str) -> Result<Option<PostingBatch>> {
        let key = key.to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM posting_batches WHERE key = ?1"),
                [key],
                batch,
            )
            .optional()
            .map_err(db("read batch"))
        })
        .await
    }

    pub(crate) async fn postings(&self, q: PostingQuery) -> Result<Vec<PostingBatch>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM posting_batches WHERE (?1 IS NULL OR status = ?1) \
                     AND (?2 IS NULL OR channel = ?2) ORDER BY created_at DESC, key DESC LIMIT ?3"
                ))
                .map_err(db("list batches"))?;
            let rows = stmt
                .query_map(
                    params![
                        q.status,
                        q.channel,
                        i64::try_from(q.limit).unwrap_or(i64::MAX)
                    ],
                    batch,
                )
                .map_err(db("list batches"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("list batches"))
        })
        .await
    }

    pub(crate) async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(STATUS_COUNTS)
                .map_err(db("count statuses"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(StatusCount {
                        kind: r.get(0)?,
                        status: r.get(1)?,
                        count: r.get(2)?,
                    })
                })
                .map_err(db("count statuses"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("count statuses"))
        })
        .await
    }

    pub(crate) async fn posting_lines(&self, batch: &str) -> Result<Vec<PostingLine>> {
        let batch = batch.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, channel, currency, day, source, units, amount FROM posting_lines \
                     WHERE batch = ?1 ORDER BY key",
                )
                .map_err(db("list batch lines"))?;
            let rows = stmt
                .query_map([batch], |r| {
                    Ok(PostingLine {
                        key: r.get(0)?,
                        channel: r.get(1)?,
                        currency: r.get(2)?,
                        day: r.get(3)?,
                        source: r.get(4)?,
                        units: r.get(5)?,
                        amount: Amount::from_ten_thousandths(r.get(6)?),
                    })
                })
                .map_err(db("list batch lines"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("list batch lines"))
        })
        .await
    }
}
