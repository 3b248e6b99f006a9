//! The PostgreSQL backend, for several crossdock nodes sharing one database.
//!
//! Appends from one node are group-committed by a single appender task. Appends from all nodes
//! are serialized by a transaction-scoped advisory lock, inside which the next sequence numbers
//! are taken: a transaction becomes visible before it releases the lock, so sequence numbers
//! become visible in order and a reader following `seq > last` never skips a row that commits
//! late. Numbers always increase; one planned for an event that proves to be a duplicate is
//! skipped, so the log may have gaps (SQLite's has none). Outbox claims are serialized per target by another advisory lock, which makes the
//! per-target in-flight limit exact across nodes.

use std::collections::HashSet;
use std::time::Duration;

use crossdock_core::activity::{ActivityEntry, ActivityKey};
use crossdock_core::{EventData, FailureDecision, NewEvent, StoredEvent, Timestamp};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

mod catalog;
mod edi;
mod inventory;
mod orders;
mod postings;

use crate::migrate::{self, MigrationReport};
use crate::model::*;
use crate::{Projection, ProjectionWrites, Result, StoreError, StoreOptions};

/// Advisory lock keys; arbitrary constants that other applications are unlikely to use.
const LOCK_MIGRATE: i64 = 0x0C05_5D0C_0000_0001;
const LOCK_APPEND: i64 = 0x0C05_5D0C_0000_0002;

fn pgerr(context: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("{context}: {e}"))
}

struct AppendRequest {
    events: Vec<NewEvent>,
    now: Timestamp,
    /// Looked up and kept in the same transaction as the events, when the request carried an
    /// idempotency key.
    idempotent: Option<IdempotentAppend>,
    reply: oneshot::Sender<Result<IdempotentOutcome>>,
}

pub(crate) struct PgStore {
    pool: PgPool,
    appender: mpsc::Sender<AppendRequest>,
}

impl PgStore {
    pub(crate) async fn connect(options: &StoreOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.connections_max.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(&options.database)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        let (tx, rx) = mpsc::channel(options.write_queue_max.max(1));
        tokio::spawn(appender_loop(
            pool.clone(),
            rx,
            options.group_commit_events_max.max(1),
        ));
        Ok(PgStore { pool, appender: tx })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn migrate(&self) -> Result<MigrationReport> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin migration"))?;
        // Nodes starting together must not apply the same migration twice.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_MIGRATE)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("lock migrations"))?;
        sqlx::raw_sql(migrate::CREATE_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("create migrations table"))?;
        let mut version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM crossdock_migrations")
                .fetch_one(&mut *tx)
                .await
                .map_err(pgerr("read schema version"))?;
        let mut applied = Vec::new();
        let start = version;
        for m in migrate::POSTGRES.iter().filter(|m| m.version > start) {
            sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
                StoreError::Unavailable(format!("migration {} ({}) failed: {e}", m.version, m.name))
            })?;
            sqlx::query(
                "INSERT INTO crossdock_migrations (version, name, applied_at) \
                 VALUES ($1, $2, (extract(epoch from now()) * 1000000)::bigint)",
            )
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("record migration"))?;
            applied.push((m.version, m.name));
            version = m.version;
        }
        migrate::check_version(version, migrate::POSTGRES)?;
        tx.commit().await.map_err(pgerr("commit migration"))?;
        Ok(MigrationReport { applied, version })
    }

    pub(crate) async fn check_ready(&self) -> Result<()> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('crossdock_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(pgerr("read schema"))?;
        let found: i64 = if exists {
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM crossdock_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(pgerr("read schema version"))?
        } else {
            0
        };
        migrate::check_version(found, migrate::POSTGRES)
    }

    // ---- inbox ----

    pub(crate) async fn inbox_put(&self, m: InboxMessage) -> Result<i64> {
        let headers = serde_json::to_string(&m.headers)
            .map_err(|e| StoreError::Invalid(format!("headers: {e}")))?;
        sqlx::query_scalar(
            "INSERT INTO inbox (source, protocol, headers, body, received_at, status, error, correlation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(m.source)
        .bind(m.protocol)
        .bind(headers)
        .bind(m.body)
        .bind(m.received_at.unix_micros())
        .bind(m.status.as_str())
        .bind(m.error)
        .bind(m.correlation_id)
        .fetch_one(&self.pool)
        .await
        .map_err(pgerr("keep inbound message"))
    }

    pub(crate) async fn inbox_mark(
        &self,
        id: i64,
        status: InboxStatus,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE inbox SET status = $2, error = $3, processed_at = $4, attempts = attempts + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(error)
        .bind(now.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(pgerr("update inbox message"))?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn inbox_list(&self, q: InboxQuery) -> Result<Vec<InboxRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            concat!(
                "SELECT ",
                inbox_columns!(),
                " FROM inbox WHERE {} AND id > $1 ORDER BY id LIMIT $3"
            ),
            q.conditions(|n, ty| format!("${n}::{ty}"))
        )))
        .bind(q.after_id)
        .bind(q.status.map(InboxStatus::as_str))
        .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list inbox"))?;
        rows.iter().map(inbox_row).collect()
    }

    pub(crate) async fn inbox_get(&self, id: i64) -> Result<Option<InboxRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            inbox_columns!(),
            " FROM inbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("read inbox message"))?;
        row.as_ref().map(inbox_row).transpose()
    }

    // ---- event log ----

    pub(crate) async fn append(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<AppendOutcome> {
        match self.send_append(events, now, None).await? {
            IdempotentOutcome::Appended(outcome) => Ok(outcome),
            IdempotentOutcome::Recorded(_) => Err(StoreError::Corrupt(
                "a plain append was answered from an idempotency record".into(),
            )),
        }
    }

    pub(crate) async fn append_idempotent(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
        request: IdempotentAppend,
    ) -> Result<IdempotentOutcome> {
        self.send_append(events, now, Some(request)).await
    }

    async fn send_append(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
        idempotent: Option<IdempotentAppend>,
    ) -> Result<IdempotentOutcome> {
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            events,
            now,
            idempotent,
            reply,
        };
        self.appender
            .send(request)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn read_events(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT seq, source, id, kind, subject, time, datacontenttype, dataschema, data, data_base64, \
             extensions, correlation_id, causation_id, recorded_at FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read events"))?;
        rows.iter().map(event_row).collect()
    }

    pub(crate) async fn head_seq(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(pgerr("read log head"))
    }

    pub(crate) async fn seq_before(&self, time: Timestamp) -> Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE recorded_at < $1")
            .bind(time.unix_micros())
            .fetch_one(&self.pool)
            .await
            .map_err(pgerr("find position by time"))
    }

    // ---- consumers and projections ----

    pub(crate) async fn consumers(&self) -> Result<Vec<ConsumerPosition>> {
        let rows = sqlx::query("SELECT name, position, updated_at FROM consumers ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(pgerr("list consumers"))?;
        rows.iter()
            .map(|r| {
                Ok(ConsumerPosition {
                    name: r.try_get(0)?,
                    position: r.try_get(1)?,
                    updated_at: Timestamp::from_unix_micros(r.try_get(2)?),
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(pgerr("list consumers"))
    }

    pub(crate) async fn consumer_position(&self, name: &str, now: Timestamp) -> Result<i64> {
        sqlx::query(
            "INSERT INTO consumers (name, position, updated_at) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(pgerr("register consumer"))?;
        sqlx::query_scalar("SELECT position FROM consumers WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(pgerr("read consumer position"))
    }

    pub(crate) async fn reset_consumer(
        &self,
        name: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        set_position(&mut tx, name, position, now).await?;
        tx.commit().await.map_err(pgerr("commit consumer reset"))
    }

    pub(crate) async fn commit_projection(
        &self,
        name: &str,
        from: i64,
        to: i64,
        writes: ProjectionWrites,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        sqlx::query(
            "INSERT INTO consumers (name, position, updated_at) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now.unix_micros())
        .execute(&mut *tx)
        .await
        .map_err(pgerr("register consumer"))?;
        let actual: i64 =
            sqlx::query_scalar("SELECT position FROM consumers WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(pgerr("read consumer position"))?;
        if actual != from {
            return Err(StoreError::PositionMoved {
                name: name.to_owned(),
                expected: from,
                actual,
            });
        }
        match writes {
            ProjectionWrites::None => {}
            ProjectionWrites::Inventory(w) => inventory::write_inventory(&mut tx, &w, now).await?,
            ProjectionWrites::SourceActivity(delta) => {
                let n = delta.len();
                let (mut sources, mut kinds) = (Vec::with_capacity(n), Vec::with_capacity(n));
                let (mut first, mut last) = (Vec::with_capacity(n), Vec::with_capacity(n));
                let (mut first_at, mut last_at) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for ((source, kind), e) in delta.iter() {
                    sources.push(source);
                    kinds.push(kind);
                    first.push(e.first_seq);
                    last.push(e.last_seq);
                    first_at.push(e.first_recorded_at.unix_micros());
                    last_at.push(e.last_recorded_at.unix_micros());
                }
                sqlx::query(
                    "INSERT INTO source_activity (source, kind, first_seq, last_seq, first_recorded_at, last_recorded_at) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) \
                     ON CONFLICT (source, kind) DO UPDATE SET \
                     first_seq = LEAST(source_activity.first_seq, EXCLUDED.first_seq), \
                     last_seq = GREATEST(source_activity.last_seq, EXCLUDED.last_seq), \
                     first_recorded_at = LEAST(source_activity.first_recorded_at, EXCLUDED.first_recorded_at), \
                     last_recorded_at = GREATEST(source_activity.last_recorded_at, EXCLUDED.last_recorded_at)",
                )
                .bind(sources)
                .bind(kinds)
                .bind(first)
                .bind(last)
                .bind(first_at)
                .bind(last_at)
                .execute(&mut *tx)
                .await
                .map_err(pgerr("write source activity"))?;
            }
        }
        set_position(&mut tx, name, to, now).await?;
        tx.commit().await.map_err(pgerr("commit projection"))
    }

    pub(crate) async fn clear_projection(
        &self,
        projection: Projection,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let sql = match projection {
            Projection::SourceActivity => "DELETE FROM source_activity",
            Projection::Inventory => {
                "DELETE FROM inventory_positions; DELETE FROM inventory_deltas; DELETE FROM inventory_divergences"
            }
        };
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("clear projection"))?;
        set_position(&mut tx, projection.consumer_name(), 0, now).await?;
        tx.commit().await.map_err(pgerr("commit projection reset"))
    }

    pub(crate) async fn source_activity(&self) -> Result<Vec<(ActivityKey, ActivityEntry)>> {
        let rows = sqlx::query(
            "SELECT source, kind, first_seq, last_seq, first_recorded_at, last_recorded_at \
             FROM source_activity ORDER BY source, kind",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read source activity"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.try_get(0)?, r.try_get(1)?),
                    ActivityEntry {
                        first_seq: r.try_get(2)?,
                        last_seq: r.try_get(3)?,
                        first_recorded_at: Timestamp::from_unix_micros(r.try_get(4)?),
                        last_recorded_at: Timestamp::from_unix_micros(r.try_get(5)?),
                    },
                ))
            })
            .collect::<sqlx::Result<_>>()
            .map_err(pgerr("read source activity"))
    }

    // ---- outbox ----

    pub(crate) async fn enqueue(
        &self,
        actions: Vec<NewAction>,
        now: Timestamp,
    ) -> Result<Vec<EnqueueResult>> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let results = enqueue_rows(&mut tx, &actions, now).await?;
        tx.commit().await.map_err(pgerr("commit enqueue"))?;
        Ok(results)
    }

    pub(crate) async fn claim(&self, c: ClaimRequest<'_>) -> Result<Vec<ClaimedAction>> {
        let now_us = c.now.unix_micros();
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('crossdock.outbox.claim:' || $1, 0))",
        )
        .bind(c.target)
        .execute(&mut *tx)
        .await
        .map_err(pgerr("lock target"))?;
        let expired: Vec<(i64, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT id, attempts, attempts_base, coalesce_key FROM outbox \
             WHERE target = $1 AND status = 'in_flight' AND lease_until < $2 FOR UPDATE",
        )
        .bind(c.target)
        .bind(now_us)
        .fetch_all(&mut *tx)
        .await
        .map_err(pgerr("find expired leases"))?;
        for (id, attempts, base, coalesce_key) in expired {
            let decision = crate::lease_expired_decision(&c.policy, attempts - base, c.now);
            let error =
                "the delivery did not finish before its lease expired (the worker stopped or hung)";
            let failure = DeliveryFailure {
                id,
                attempt: attempts,
                error: error.to_owned(),
                decision,
                now: c.now,
            };
            finish_failure(
                &mut tx,
                c.target,
                coalesce_key.as_deref(),
                &failure,
                "lease_expired",
            )
            .await?;
        }
        let in_flight: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE target = $1 AND status = 'in_flight'",
        )
        .bind(c.target)
        .fetch_one(&mut *tx)
        .await
        .map_err(pgerr("count in-flight actions"))?;
        let room = i64::try_from(c.in_flight_max).unwrap_or(i64::MAX) - in_flight;
        let take = room.min(i64::try_from(c.limit).unwrap_or(i64::MAX));
        if take <= 0 {
            tx.commit().await.map_err(pgerr("commit claim"))?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "WITH due AS (SELECT id FROM outbox o WHERE target = $1 AND status = 'pending' AND next_attempt_at <= $2 \
             AND (coalesce_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox b WHERE b.target = o.target \
             AND b.coalesce_key = o.coalesce_key AND b.status = 'in_flight')) \
             ORDER BY priority DESC, next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, lease_until = $4, updated_at = $2 \
             FROM due WHERE outbox.id = due.id RETURNING outbox.id, target, idempotency_key, coalesce_key, \
             priority, payload, attempts, attempts - attempts_base, correlation_id, outbox.created_at",
        )
        .bind(c.target)
        .bind(now_us)
        .bind(take)
        .bind(now_us.saturating_add(c.lease_ms.saturating_mul(1000)))
        .fetch_all(&mut *tx)
        .await
        .map_err(pgerr("claim actions"))?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(ClaimedAction {
                    id: r.try_get(0)?,
                    target: r.try_get(1)?,
                    idempotency_key: r.try_get(2)?,
                    coalesce_key: r.try_get(3)?,
                    priority: r.try_get(4)?,
                    payload: r.try_get(5)?,
                    attempt: r.try_get(6)?,
                    attempts_in_budget: r.try_get(7)?,
                    correlation_id: r.try_get(8)?,
                    created_at: Timestamp::from_unix_micros(r.try_get(9)?),
                })
            })
            .collect::<sqlx::Result<Vec<_>>>()
            .map_err(pgerr("claim actions"))?;
        claimed.sort_by_key(|a| (-a.priority, a.id));
        let ids: Vec<i64> = claimed.iter().map(|a| a.id).collect();
        let attempts: Vec<i64> = claimed.iter().map(|a| a.attempt).collect();
        sqlx::query(
            "INSERT INTO outbox_attempts (outbox_id, attempt, started_at, outcome) \
             SELECT id, attempt, $3, 'in_flight' FROM UNNEST($1::bigint[], $2::bigint[]) AS t(id, attempt)",
        )
        .bind(ids)
        .bind(attempts)
        .bind(now_us)
        .execute(&mut *tx)
        .await
        .map_err(pgerr("record attempts"))?;
        tx.commit().await.map_err(pgerr("commit claim"))?;
        Ok(claimed)
    }

    pub(crate) async fn ack(&self, id: i64, attempt: i64, now: Timestamp) -> Result<bool> {
        let now_us = now.unix_micros();
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let done: Option<(String, Option<String>)> = sqlx::query_as(
            "UPDATE outbox SET status = 'delivered', lease_until = NULL, updated_at = $3, last_error = NULL \
             WHERE id = $1 AND status = 'in_flight' AND attempts = $2 RETURNING target, coalesce_key",
        )
        .bind(id)
        .bind(attempt)
        .bind(now_us)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pgerr("acknowledge delivery"))?;
        let Some((target, coalesce_key)) = done else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE outbox_attempts SET outcome = 'delivered', finished_at = $3 WHERE outbox_id = $1 AND attempt = $2",
        )
        .bind(id)
        .bind(attempt)
        .bind(now_us)
        .execute(&mut *tx)
        .await
        .map_err(pgerr("record attempt"))?;
        if let Some(key) = coalesce_key {
            // A newer value reached the target, so older dead letters for the key are moot.
            sqlx::query(
                "UPDATE outbox SET status = 'superseded', superseded_by = $3, updated_at = $4 \
                 WHERE target = $1 AND coalesce_key = $2 AND status = 'dead' AND id < $3",
            )
            .bind(&target)
            .bind(&key)
            .bind(id)
            .bind(now_us)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("resolve older dead letters"))?;
        }
        tx.commit().await.map_err(pgerr("commit acknowledgement"))?;
        Ok(true)
    }

    pub(crate) async fn fail(&self, f: DeliveryFailure) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let current: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT target, coalesce_key FROM outbox WHERE id = $1 AND status = 'in_flight' AND attempts = $2",
        )
        .bind(f.id)
        .bind(f.attempt)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pgerr("read action"))?;
        let Some((target, coalesce_key)) = current else {
            return Ok(false);
        };
        if let Some(key) = &coalesce_key {
            lock_coalesce_key(&mut tx, &target, key).await?;
        }
        // Re-check under the lock: the lease may have been taken over meanwhile.
        let still: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM outbox WHERE id = $1 AND status = 'in_flight' AND attempts = $2 FOR UPDATE",
        )
        .bind(f.id)
        .bind(f.attempt)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pgerr("read action"))?;
        if still.is_none() {
            return Ok(false);
        }
        finish_failure(&mut tx, &target, coalesce_key.as_deref(), &f, "failed").await?;
        tx.commit().await.map_err(pgerr("commit failure"))?;
        Ok(true)
    }

    pub(crate) async fn next_due(&self, target: &str) -> Result<Option<Timestamp>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT LEAST((SELECT min(next_attempt_at) FROM outbox WHERE target = $1 AND status = 'pending'), \
             (SELECT min(lease_until) FROM outbox WHERE target = $1 AND status = 'in_flight'))",
        )
        .bind(target)
        .fetch_one(&self.pool)
        .await
        .map_err(pgerr("find next due action"))?;
        Ok(due.map(Timestamp::from_unix_micros))
    }

    pub(crate) async fn outbox_counts(&self) -> Result<Vec<OutboxCount>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT target, status, count(*) FROM outbox WHERE status IN ('pending', 'in_flight', 'dead') \
             GROUP BY target, status ORDER BY target, status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("count actions"))?;
        rows.into_iter()
            .map(|(target, status, count)| {
                let status = ActionStatus::parse(&status).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown action status {status}"))
                })?;
                Ok(OutboxCount {
                    target,
                    status,
                    count,
                })
            })
            .collect()
    }

    pub(crate) async fn action(&self, id: i64) -> Result<Option<ActionRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            action_columns!(),
            " FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("read action"))?;
        row.as_ref().map(action_row).transpose()
    }

    pub(crate) async fn action_by_key(
        &self,
        target: &str,
        key: &str,
    ) -> Result<Option<ActionRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            action_columns!(),
            " FROM outbox WHERE target = $1 AND idempotency_key = $2"
        ))
        .bind(target)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("read action"))?;
        row.as_ref().map(action_row).transpose()
    }

    pub(crate) async fn attempts(&self, id: i64) -> Result<Vec<AttemptRecord>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT attempt, started_at, finished_at, outcome, error FROM outbox_attempts \
             WHERE outbox_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read attempts"))?;
        Ok(rows
            .into_iter()
            .map(
                |(attempt, started, finished, outcome, error)| AttemptRecord {
                    attempt,
                    started_at: Timestamp::from_unix_micros(started),
                    finished_at: finished.map(Timestamp::from_unix_micros),
                    outcome,
                    error,
                },
            )
            .collect())
    }

    pub(crate) async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM outbox WHERE status IN ('delivered', 'superseded', 'dropped') AND updated_at < $1 \
             ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(before.unix_micros())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(pgerr("find finished actions"))?;
        sqlx::query("DELETE FROM outbox_attempts WHERE outbox_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("purge attempts"))?;
        let done = sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("purge actions"))?;
        tx.commit().await.map_err(pgerr("commit purge"))?;
        Ok(done.rows_affected())
    }

    // ---- dead letters ----

    pub(crate) async fn dead_letters(&self, q: DeadLetterQuery) -> Result<Vec<ActionRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            action_columns!(),
            " FROM outbox WHERE status = 'dead' AND id > $1 AND ($2::text IS NULL OR target = $2) ORDER BY id LIMIT $3"
        ))
        .bind(q.after_id)
        .bind(q.target)
        .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list dead letters"))?;
        rows.iter().map(action_row).collect()
    }

    pub(crate) async fn replay_dead_letter(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<ReplayOutcome> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let row: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT status, target, coalesce_key FROM outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pgerr("read dead letter"))?;
        let Some((_, target, coalesce_key)) = row else {
            return Ok(ReplayOutcome::NotFound);
        };
        if let Some(key) = &coalesce_key {
            lock_coalesce_key(&mut tx, &target, key).await?;
        }
        let status: String =
            sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(pgerr("read dead letter"))?;
        if status != ActionStatus::Dead.as_str() {
            return Ok(ReplayOutcome::NotDead);
        }
        if let Some(key) = coalesce_key {
            let newer: Option<i64> = sqlx::query_scalar(
                "SELECT max(id) FROM outbox WHERE target = $1 AND coalesce_key = $2 AND id > $3 \
                 AND status IN ('pending', 'in_flight', 'delivered')",
            )
            .bind(&target)
            .bind(&key)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(pgerr("find newer action"))?;
            if let Some(by) = newer {
                sqlx::query(
                    "UPDATE outbox SET status = 'superseded', superseded_by = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(by)
                .bind(now.unix_micros())
                .execute(&mut *tx)
                .await
                .map_err(pgerr("supersede dead letter"))?;
                tx.commit().await.map_err(pgerr("commit replay"))?;
                return Ok(ReplayOutcome::Superseded { by });
            }
        }
        sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts_base = attempts, next_attempt_at = $2, updated_at = $2, \
             lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now.unix_micros())
        .execute(&mut *tx)
        .await
        .map_err(pgerr("replay dead letter"))?;
        tx.commit().await.map_err(pgerr("commit replay"))?;
        Ok(ReplayOutcome::Replayed)
    }

    pub(crate) async fn drop_dead_letter(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<DropOutcome> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let outcome = drop_dead_in(&mut tx, id, reason, now).await?;
        tx.commit().await.map_err(pgerr("commit drop"))?;
        Ok(outcome)
    }
}

impl PgStore {
    // ---- API keys ----

    pub(crate) async fn key_create(&self, k: NewApiKey) -> Result<KeyCreateOutcome> {
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, name, secret_sha256, scopes, channel, rate_per_second, burst, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.secret_sha256)
        .bind(&k.scopes)
        .bind(&k.channel)
        .bind(k.rate_per_second.map(i64::from))
        .bind(k.burst.map(i64::from))
        .bind(k.created_at.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(pgerr("create key"))?;
        Ok(if inserted.rows_affected() == 1 {
            KeyCreateOutcome::Created
        } else {
            KeyCreateOutcome::NameTaken
        })
    }

    pub(crate) async fn key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("read key"))?;
        row.as_ref().map(key_row).transpose()
    }

    pub(crate) async fn keys_list(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list keys"))?;
        rows.iter().map(key_row).collect()
    }

    pub(crate) async fn key_revoke(&self, name: &str, now: Timestamp) -> Result<Option<String>> {
        sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING id",
        )
        .bind(name)
        .bind(now.unix_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("revoke key"))
    }

    // ---- idempotency ----

    pub(crate) async fn idempotency_lookup(&self, l: IdempotencyLookup<'_>) -> Result<Recorded> {
        let row: Option<KeptRow> = sqlx::query_as(
            "SELECT fingerprint, created_at, status, content_type, body FROM idempotency \
             WHERE api_key = $1 AND key = $2 AND completed_at IS NOT NULL",
        )
        .bind(l.api_key)
        .bind(l.key)
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("read idempotency record"))?;
        Ok(recorded(row, l.fingerprint, l.expired_before))
    }

    pub(crate) async fn idempotency_keep(
        &self,
        l: IdempotencyLookup<'_>,
        response: StoredResponse,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO idempotency (api_key, key, fingerprint, created_at, completed_at, status, content_type, body) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7) ON CONFLICT (api_key, key) DO UPDATE SET \
             fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at, completed_at = EXCLUDED.completed_at, \
             status = EXCLUDED.status, content_type = EXCLUDED.content_type, body = EXCLUDED.body",
        )
        .bind(l.api_key)
        .bind(l.key)
        .bind(l.fingerprint)
        .bind(now.unix_micros())
        .bind(i64::from(response.status))
        .bind(response.content_type)
        .bind(response.body)
        .execute(&self.pool)
        .await
        .map_err(pgerr("keep idempotent response"))?;
        Ok(())
    }

    pub(crate) async fn purge_idempotency(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM idempotency WHERE ctid IN (SELECT ctid FROM idempotency WHERE created_at < $1 LIMIT $2)",
        )
        .bind(before.unix_micros())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(pgerr("purge idempotency records"))?;
        Ok(done.rows_affected())
    }

    // ---- audit ----

    pub(crate) async fn audit_append(&self, e: AuditEntry) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, action, target, outcome, correlation_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(e.at.unix_micros())
        .bind(e.actor)
        .bind(e.action)
        .bind(e.target)
        .bind(e.outcome)
        .bind(e.correlation_id)
        .bind(e.detail)
        .fetch_one(&self.pool)
        .await
        .map_err(pgerr("record audit entry"))
    }

    pub(crate) async fn audit_list(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE id > $1 AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR action = $3) \
             AND ($4::bigint IS NULL OR at >= $4) AND ($5::bigint IS NULL OR at < $5) ORDER BY id LIMIT $6"
        ))
        .bind(q.after_id)
        .bind(q.actor)
        .bind(q.action)
        .bind(q.since.map(Timestamp::unix_micros))
        .bind(q.until.map(Timestamp::unix_micros))
        .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list audit entries"))?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get(0)?,
                    entry: AuditEntry {
                        at: Timestamp::from_unix_micros(r.try_get(1)?),
                        actor: r.try_get(2)?,
                        action: r.try_get(3)?,
                        target: r.try_get(4)?,
                        outcome: r.try_get(5)?,
                        correlation_id: r.try_get(6)?,
                        detail: r.try_get(7)?,
                    },
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(pgerr("list audit entries"))
    }
}

fn key_row(r: &PgRow) -> Result<ApiKeyRecord> {
    let read = || -> sqlx::Result<ApiKeyRecord> {
        let small = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
        Ok(ApiKeyRecord {
            key: NewApiKey {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                secret_sha256: r.try_get(2)?,
                scopes: r.try_get(3)?,
                channel: r.try_get(4)?,
                rate_per_second: small(r.try_get(5)?),
                burst: small(r.try_get(6)?),
                created_at: Timestamp::from_unix_micros(r.try_get(7)?),
            },
            revoked_at: r
                .try_get::<Option<i64>, _>(8)?
                .map(Timestamp::from_unix_micros),
        })
    };
    read().map_err(pgerr("read key row"))
}

/// `outbox_attempts` columns: attempt, started, finished, outcome, error.
type AttemptRow = (i64, i64, Option<i64>, String, Option<String>);

/// Queues actions inside the caller's transaction (see `Store::enqueue`).
async fn enqueue_rows(
    tx: &mut Transaction<'static, Postgres>,
    actions: &[NewAction],
    now: Timestamp,
) -> Result<Vec<EnqueueResult>> {
    let mut results = Vec::with_capacity(actions.len());
    for a in actions {
        if let Some(key) = &a.coalesce_key {
            lock_coalesce_key(tx, &a.target, key).await?;
        }
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE target = $1 AND idempotency_key = $2)",
        )
        .bind(&a.target)
        .bind(&a.idempotency_key)
        .fetch_one(&mut **tx)
        .await
        .map_err(pgerr("check action"))?;
        if exists {
            results.push(EnqueueResult::Duplicate);
            continue;
        }
        let replaced: Option<i64> = match &a.coalesce_key {
            None => None,
            Some(key) => sqlx::query_scalar(
                "UPDATE outbox SET status = 'superseded', updated_at = $3 \
                 WHERE target = $1 AND coalesce_key = $2 AND status = 'pending' RETURNING id",
            )
            .bind(&a.target)
            .bind(key)
            .bind(now.unix_micros())
            .fetch_optional(&mut **tx)
            .await
            .map_err(pgerr("supersede action"))?,
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (target, idempotency_key, coalesce_key, priority, payload, status, \
             next_attempt_at, created_at, updated_at, correlation_id, causation_id) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $7, $8, $9) RETURNING id",
        )
        .bind(&a.target)
        .bind(&a.idempotency_key)
        .bind(&a.coalesce_key)
        .bind(a.priority)
        .bind(&a.payload)
        .bind(a.not_before.unix_micros())
        .bind(now.unix_micros())
        .bind(&a.correlation_id)
        .bind(&a.causation_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(pgerr("queue action"))?;
        if let Some(old) = replaced {
            sqlx::query("UPDATE outbox SET superseded_by = $2 WHERE id = $1")
                .bind(old)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(pgerr("supersede action"))?;
        }
        results.push(EnqueueResult::Queued { id, replaced });
    }
    Ok(results)
}

/// Serializes every change to the actions of one coalescing key, across nodes.
async fn lock_coalesce_key(
    tx: &mut Transaction<'static, Postgres>,
    target: &str,
    key: &str,
) -> Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('crossdock.outbox.coalesce:' || $1 || chr(1) || $2, 0))",
    )
    .bind(target)
    .bind(key)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("lock coalescing key"))?;
    Ok(())
}

async fn finish_failure(
    tx: &mut Transaction<'static, Postgres>,
    target: &str,
    coalesce_key: Option<&str>,
    f: &DeliveryFailure,
    outcome: &str,
) -> Result<()> {
    let now_us = f.now.unix_micros();
    sqlx::query(
        "UPDATE outbox_attempts SET outcome = $3, error = $4, finished_at = $5 WHERE outbox_id = $1 AND attempt = $2",
    )
    .bind(f.id)
    .bind(f.attempt)
    .bind(outcome)
    .bind(&f.error)
    .bind(now_us)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("record attempt"))?;
    match f.decision {
        FailureDecision::RetryAt(at) => {
            // Only one action per coalescing key may be pending; a newer one makes this stale.
            let newer: Option<i64> = match coalesce_key {
                None => None,
                Some(key) => sqlx::query_scalar(
                    "SELECT id FROM outbox WHERE target = $1 AND coalesce_key = $2 AND status = 'pending'",
                )
                .bind(target)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(pgerr("find newer action"))?,
            };
            if let Some(by) = newer {
                sqlx::query(
                    "UPDATE outbox SET status = 'superseded', superseded_by = $2, lease_until = NULL, \
                     last_error = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(f.id)
                .bind(by)
                .bind(&f.error)
                .bind(now_us)
                .execute(&mut **tx)
                .await
                .map_err(pgerr("supersede action"))?;
            } else {
                sqlx::query(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = $2, lease_until = NULL, \
                     last_error = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(f.id)
                .bind(at.unix_micros())
                .bind(&f.error)
                .bind(now_us)
                .execute(&mut **tx)
                .await
                .map_err(pgerr("schedule retry"))?;
            }
        }
        FailureDecision::DeadLetter => {
            sqlx::query(
                "UPDATE outbox SET status = 'dead', lease_until = NULL, last_error = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(f.id)
            .bind(&f.error)
            .bind(now_us)
            .execute(&mut **tx)
            .await
            .map_err(pgerr("dead-letter action"))?;
        }
    }
    Ok(())
}

async fn set_position(
    tx: &mut Transaction<'static, Postgres>,
    name: &str,
    position: i64,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO consumers (name, position, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at",
    )
    .bind(name)
    .bind(position)
    .bind(now.unix_micros())
    .execute(&mut **tx)
    .await
    .map_err(pgerr("move consumer position"))?;
    Ok(())
}

/// The appender task: takes waiting appends together and commits them in one transaction.
async fn appender_loop(pool: PgPool, mut rx: mpsc::Receiver<AppendRequest>, group_max: usize) {
    while let Some(first) = rx.recv().await {
        let mut weight = first.events.len();
        let mut group = vec![first];
        while weight < group_max {
            match rx.try_recv() {
                Ok(next) => {
                    weight += next.events.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        match append_group(&pool, &mut group).await {
            Ok(outcomes) => {
                for (request, outcome) in group.into_iter().zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for request in group {
                    let _ = request.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

async fn append_group(
    pool: &PgPool,
    group: &mut [AppendRequest],
) -> Result<Vec<IdempotentOutcome>> {
    let mut tx = pool.begin().await.map_err(pgerr("begin append"))?;
    let head = lock_log(&mut tx).await?;

    // Requests answered before under their idempotency key append nothing. Appends are serialized
    // across nodes by the lock above, so this look-up cannot race another node's answer.
    let answered = answered_before(&mut tx, group).await?;

    // Every event not repeated within the group gets the next number; the insert then skips
    // those already in the log. Its unique index decides, whatever the table's statistics say,
    // and a skipped event leaves a gap in the numbers.
    let total: usize = group.iter().map(|r| r.events.len()).sum();
    let mut in_group: HashSet<(&str, &str)> = HashSet::with_capacity(total);
    let mut cols = EventColumns::with_capacity(total);
    let mut planned: Vec<Vec<Option<i64>>> = Vec::with_capacity(group.len());
    let mut next = head;
    for (request, answered) in group.iter().zip(&answered) {
        let mut seqs = Vec::with_capacity(request.events.len());
        if answered.is_some() {
            planned.push(seqs);
            continue;
        }
        for e in &request.events {
            if in_group.insert((e.source(), e.id())) {
                next += 1;
                cols.push(next, e, request.now);
                seqs.push(Some(next));
            } else {
                seqs.push(None);
            }
        }
        planned.push(seqs);
    }
    let inserted = insert_events(&mut tx, &cols).await?;
    let outcomes: Vec<AppendOutcome> = planned
        .into_iter()
        .map(|seqs| AppendOutcome {
            results: seqs
                .into_iter()
                .map(|seq| match seq {
                    Some(seq) if inserted.contains(&seq) => AppendResult::Appended(seq),
                    _ => AppendResult::Duplicate,
                })
                .collect(),
        })
        .collect();
    keep_responses(&mut tx, group, &outcomes, &answered).await?;
    tx.commit().await.map_err(pgerr("commit append"))?;
    Ok(outcomes
        .into_iter()
        .zip(answered)
        .map(|(outcome, answered)| match answered {
            Some(recorded) => IdempotentOutcome::Recorded(recorded),
            None => IdempotentOutcome::Appended(outcome),
        })
        .collect())
}

/// Takes the event log's lock for the rest of the transaction and returns the head it found.
async fn lock_log(tx: &mut Transaction<'static, Postgres>) -> Result<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_APPEND)
        .execute(&mut **tx)
        .await
        .map_err(pgerr("lock the event log"))?;
    // A statement of its own, after the lock: its snapshot sees the previous holder's commit.
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
        .fetch_one(&mut **tx)
        .await
        .map_err(pgerr("read log head"))
}

/// Inserts numbered events, skipping those already in the log; returns the numbers inserted.
async fn insert_events(
    tx: &mut Transaction<'static, Postgres>,
    cols: &EventColumns<'_>,
) -> Result<HashSet<i64>> {
    let mut inserted: HashSet<i64> = HashSet::with_capacity(cols.seq.len());
    for range in cols.chunks(STATEMENT_BYTES_MAX) {
        let seqs: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO events (seq, source, id, kind, subject, time, datacontenttype, dataschema, data, \
             data_base64, extensions, correlation_id, causation_id, recorded_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
             $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::text[], $13::text[], $14::bigint[]) \
             ON CONFLICT (source, id) DO NOTHING RETURNING seq",
        )
        .bind(&cols.seq[range.clone()])
        .bind(&cols.source[range.clone()])
        .bind(&cols.id[range.clone()])
        .bind(&cols.kind[range.clone()])
        .bind(&cols.subject[range.clone()])
        .bind(&cols.time[range.clone()])
        .bind(&cols.datacontenttype[range.clone()])
        .bind(&cols.dataschema[range.clone()])
        .bind(&cols.data[range.clone()])
        .bind(&cols.data_base64[range.clone()])
        .bind(&cols.extensions[range.clone()])
        .bind(&cols.correlation_id[range.clone()])
        .bind(&cols.causation_id[range.clone()])
        .bind(&cols.recorded_at[range])
        .fetch_all(&mut **tx)
        .await
        .map_err(pgerr("append events"))?;
        inserted.extend(seqs);
    }
    Ok(inserted)
}

/// Appends events inside the caller's transaction (which then holds the log's lock until it
/// ends): for writes that must be recorded in the log atomically with their own effect.
pub(super) async fn append_in(
    tx: &mut Transaction<'static, Postgres>,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<AppendOutcome> {
    let head = lock_log(tx).await?;
    let mut cols = EventColumns::with_capacity(events.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(events.len());
    let mut planned = Vec::with_capacity(events.len());
    let mut next = head;
    for e in events {
        if seen.insert((e.source(), e.id())) {
            next += 1;
            cols.push(next, e, now);
            planned.push(Some(next));
        } else {
            planned.push(None);
        }
    }
    let inserted = insert_events(tx, &cols).await?;
    Ok(AppendOutcome {
        results: planned
            .into_iter()
            .map(|seq| match seq {
                Some(seq) if inserted.contains(&seq) => AppendResult::Appended(seq),
                _ => AppendResult::Duplicate,
            })
            .collect(),
    })
}

/// A kept idempotency record: fingerprint, created at, status, content type, body.
type KeptRow = (Vec<u8>, i64, Option<i64>, Option<String>, Option<Vec<u8>>);
/// The same, after its API key and idempotency key.
type KeyedKeptRow = (
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<String>,
    Option<Vec<u8>>,
);

fn recorded(row: Option<KeptRow>, fingerprint: &[u8], expired_before: Timestamp) -> Recorded {
    match row {
        Some((kept, created_at, Some(status), content_type, body))
            if created_at >= expired_before.unix_micros() =>
        {
            if kept == fingerprint {
                Recorded::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    content_type,
                    body: body.unwrap_or_default(),
                })
            } else {
                Recorded::Mismatch
            }
        }
        _ => Recorded::Nothing,
    }
}

/// For each request of the group, what its idempotency key already answered, if anything.
async fn answered_before(
    tx: &mut Transaction<'static, Postgres>,
    group: &[AppendRequest],
) -> Result<Vec<Option<Recorded>>> {
    let keyed: Vec<&IdempotentAppend> =
        group.iter().filter_map(|r| r.idempotent.as_ref()).collect();
    if keyed.is_empty() {
        return Ok(vec![None; group.len()]);
    }
    let api_keys: Vec<&str> = keyed.iter().map(|k| k.api_key.as_str()).collect();
    let keys: Vec<&str> = keyed.iter().map(|k| k.key.as_str()).collect();
    let rows: Vec<KeyedKeptRow> = sqlx::query_as(
        "SELECT i.api_key, i.key, i.fingerprint, i.created_at, i.status, i.content_type, i.body FROM idempotency i \
         JOIN UNNEST($1::text[], $2::text[]) AS t(api_key, key) ON i.api_key = t.api_key AND i.key = t.key \
         WHERE i.completed_at IS NOT NULL",
    )
    .bind(api_keys)
    .bind(keys)
    .fetch_all(&mut **tx)
    .await
    .map_err(pgerr("read idempotency records"))?;
    Ok(group
        .iter()
        .map(|r| {
            let k = r.idempotent.as_ref()?;
            let row = rows
                .iter()
                .find(|row| row.0 == k.api_key && row.1 == k.key)
                .map(|row| (row.2.clone(), row.3, row.4, row.5.clone(), row.6.clone()));
            match recorded(row, &k.fingerprint, k.expired_before) {
                Recorded::Nothing => None,
                seen => Some(seen),
            }
        })
        .collect())
}

/// Keeps, in the append's transaction, the responses of requests that carried idempotency keys.
async fn keep_responses(
    tx: &mut Transaction<'static, Postgres>,
    group: &mut [AppendRequest],
    outcomes: &[AppendOutcome],
    answered: &[Option<Recorded>],
) -> Result<()> {
    let mut rows = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for ((request, outcome), answered) in group.iter_mut().zip(outcomes).zip(answered) {
        if answered.is_some() {
            continue;
        }
        let Some(idempotent) = request.idempotent.take() else {
            continue;
        };
        let response = (idempotent.render)(outcome);
        rows.0.push(idempotent.api_key);
        rows.1.push(idempotent.key);
        rows.2.push(idempotent.fingerprint);
        rows.3.push(request.now.unix_micros());
        rows.4.push(i64::from(response.status));
        rows.5.push(response.content_type);
        rows.6.push(response.body);
    }
    if rows.0.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO idempotency (api_key, key, fingerprint, created_at, completed_at, status, content_type, body) \
         SELECT a, k, f, t, t, s, c, b FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[], \
         $6::text[], $7::bytea[]) AS r(a, k, f, t, s, c, b) ON CONFLICT (api_key, key) DO UPDATE SET \
         fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at, completed_at = EXCLUDED.completed_at, \
         status = EXCLUDED.status, content_type = EXCLUDED.content_type, body = EXCLUDED.body",
    )
    .bind(rows.0)
    .bind(rows.1)
    .bind(rows.2)
    .bind(rows.3)
    .bind(rows.4)
    .bind(rows.5)
    .bind(rows.6)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("keep idempotent responses"))?;
    Ok(())
}

/// The largest insert statement, in bytes of parameters, sent in one piece.
///
/// sqlx 0.9.0 leaves Nagle's algorithm on (transact-rs/sqlx#4335): a message larger than the
/// socket's initial send buffer (16 KiB on Linux) goes out in two writes, and the second waits
/// for the server's delayed acknowledgement, about 40 ms. Statements below the buffer size go in
/// one write and never wait. Remove this split when sqlx sets `TCP_NODELAY` again.
const STATEMENT_BYTES_MAX: usize = 12 * 1024;
/// Per-row bytes of array framing and fixed-width values, estimated.
const ROW_OVERHEAD_BYTES: usize = 14 * 4 + 3 * 8 + 1;

/// Events laid out column by column for one `UNNEST` insert.
struct EventColumns<'a> {
    seq: Vec<i64>,
    source: Vec<&'a str>,
    id: Vec<&'a str>,
    kind: Vec<&'a str>,
    subject: Vec<Option<&'a str>>,
    time: Vec<Option<i64>>,
    datacontenttype: Vec<Option<&'a str>>,
    dataschema: Vec<Option<&'a str>>,
    data: Vec<Option<&'a str>>,
    data_base64: Vec<bool>,
    extensions: Vec<Option<&'a str>>,
    correlation_id: Vec<Option<&'a str>>,
    causation_id: Vec<Option<&'a str>>,
    recorded_at: Vec<i64>,
}

impl<'a> EventColumns<'a> {
    /// Splits the rows into runs whose encoded size stays under `bytes_max` (a row larger than
    /// that runs alone).
    fn chunks(&self, bytes_max: usize) -> Vec<std::ops::Range<usize>> {
        let mut ranges = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for i in 0..self.seq.len() {
            let len = |v: Option<&str>| v.map_or(0, str::len);
            let row = ROW_OVERHEAD_BYTES
                + self.source[i].len()
                + self.id[i].len()
                + self.kind[i].len()
                + len(self.subject[i])
                + len(self.datacontenttype[i])
                + len(self.dataschema[i])
                + len(self.data[i])
                + len(self.extensions[i])
                + len(self.correlation_id[i])
                + len(self.causation_id[i]);
            if i > start && bytes + row > bytes_max {
                ranges.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += row;
        }
        if start < self.seq.len() {
            ranges.push(start..self.seq.len());
        }
        ranges
    }

    fn with_capacity(n: usize) -> Self {
        EventColumns {
            seq: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            subject: Vec::with_capacity(n),
            time: Vec::with_capacity(n),
            datacontenttype: Vec::with_capacity(n),
            dataschema: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            data_base64: Vec::with_capacity(n),
            extensions: Vec::with_capacity(n),
            correlation_id: Vec::with_capacity(n),
            causation_id: Vec::with_capacity(n),
            recorded_at: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, seq: i64, e: &'a NewEvent, now: Timestamp) {
        self.seq.push(seq);
        self.source.push(e.source());
        self.id.push(e.id());
        self.kind.push(e.kind());
        self.subject.push(e.subject());
        self.time.push(e.time().map(Timestamp::unix_micros));
        self.datacontenttype.push(e.datacontenttype());
        self.dataschema.push(e.dataschema());
        self.data.push(e.data().map(EventData::as_text));
        self.data_base64
            .push(e.data().is_some_and(EventData::is_base64));
        self.extensions.push(e.extensions());
        self.correlation_id.push(e.correlation_id());
        self.causation_id.push(e.causation_id());
        self.recorded_at.push(now.unix_micros());
    }
}

fn inbox_row(r: &PgRow) -> Result<InboxRecord> {
    let read = || -> sqlx::Result<(InboxRecord, String, String)> {
        let headers: String = r.try_get(3)?;
        let status: String = r.try_get(6)?;
        let record = InboxRecord {
            id: r.try_get(0)?,
            message: InboxMessage {
                source: r.try_get(1)?,
                protocol: r.try_get(2)?,
                headers: Vec::new(),
                body: r.try_get(4)?,
                received_at: Timestamp::from_unix_micros(r.try_get(5)?),
                status: InboxStatus::Received,
                error: r.try_get(7)?,
                correlation_id: r.try_get(10)?,
            },
            attempts: r.try_get(8)?,
            processed_at: r
                .try_get::<Option<i64>, _>(9)?
                .map(Timestamp::from_unix_micros),
        };
        Ok((record, headers, status))
    };
    let (mut record, headers, status) = read().map_err(pgerr("read inbox row"))?;
    record.message.status = InboxStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown inbox status {status}")))?;
    record.message.headers = serde_json::from_str(&headers)
        .map_err(|e| StoreError::Corrupt(format!("inbox headers: {e}")))?;
    Ok(record)
}

fn event_row(r: &PgRow) -> Result<StoredEvent> {
    let read = || -> sqlx::Result<(StoredEvent, Option<String>, bool)> {
        let event = StoredEvent {
            seq: r.try_get(0)?,
            recorded_at: Timestamp::from_unix_micros(r.try_get(13)?),
            event: NewEvent::from_stored(
                r.try_get(2)?,
                r.try_get(1)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get::<Option<i64>, _>(5)?
                    .map(Timestamp::from_unix_micros),
                r.try_get(6)?,
                r.try_get(7)?,
                None,
                r.try_get(10)?,
                r.try_get(11)?,
                r.try_get(12)?,
            ),
        };
        Ok((event, r.try_get(8)?, r.try_get(9)?))
    };
    let (mut stored, data, base64) = read().map_err(pgerr("read event row"))?;
    if let Some(text) = data {
        let data = EventData::from_stored(text, base64).ok_or_else(|| {
            StoreError::Corrupt(format!("event {} has unreadable data", stored.seq))
        })?;
        stored.event = stored.event.with_data(data);
    }
    Ok(stored)
}

fn action_row(r: &PgRow) -> Result<ActionRecord> {
    let read = || -> sqlx::Result<(ActionRecord, String)> {
        let record = ActionRecord {
            id: r.try_get(0)?,
            target: r.try_get(1)?,
            idempotency_key: r.try_get(2)?,
            coalesce_key: r.try_get(3)?,
            priority: r.try_get(4)?,
            payload: r.try_get(5)?,
            status: ActionStatus::Pending,
            attempts: r.try_get(7)?,
            attempts_in_budget: r.try_get(8)?,
            next_attempt_at: Timestamp::from_unix_micros(r.try_get(9)?),
            created_at: Timestamp::from_unix_micros(r.try_get(10)?),
            updated_at: Timestamp::from_unix_micros(r.try_get(11)?),
            last_error: r.try_get(12)?,
            correlation_id: r.try_get(13)?,
            causation_id: r.try_get(14)?,
            superseded_by: r.try_get(15)?,
            drop_reason: r.try_get(16)?,
        };
        Ok((record, r.try_get(6)?))
    };
    let (mut record, status) = read().map_err(pgerr("read action row"))?;
    record.status = ActionStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown action status {status}")))?;
    Ok(record)
}

/// Drops a dead letter inside a transaction (the row stays locked until it ends).
pub(super) async fn drop_dead_in(
    tx: &mut Transaction<'static, Postgres>,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> Result<DropOutcome> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(pgerr("read dead letter"))?;
    match status.as_deref() {
        None => return Ok(DropOutcome::NotFound),
        Some(s) if s != ActionStatus::Dead.as_str() => return Ok(DropOutcome::NotDead),
        Some(_) => {}
    }
    sqlx::query(
        "UPDATE outbox SET status = 'dropped', drop_reason = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now.unix_micros())
    .execute(&mut **tx)
    .await
    .map_err(pgerr("drop dead letter"))?;
    Ok(DropOutcome::Dropped)
}
