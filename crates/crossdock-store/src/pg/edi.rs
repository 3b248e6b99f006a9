//! EDI partners on PostgreSQL: control number series (a row lock per series, so nodes never
//! hand out a number twice), inbound interchanges seen, groups sent and their 997s.

use crossdock_core::Timestamp;
use sqlx::Row;

use super::{PgStore, pgerr};
use crate::Result;
use crate::model::{
    EdiAckOutcome, EdiControl, EdiGroupQuery, EdiGroupRecord, EdiGroupSent, EdiInbound,
    take_controls,
};

fn record(row: &sqlx::postgres::PgRow) -> std::result::Result<EdiGroupRecord, sqlx::Error> {
    let detail: Option<String> = row.try_get(8)?;
    Ok(EdiGroupRecord {
        group: EdiGroupSent {
            partner: row.try_get(0)?,
            group_control: row.try_get(1)?,
            functional_id: row.try_get(2)?,
            interchange_control: row.try_get(3)?,
            sets: row.try_get(4)?,
            sent_at: Timestamp::from_unix_micros(row.try_get(5)?),
        },
        status: row.try_get(6)?,
        ack_at: row
            .try_get::<Option<i64>, _>(7)?
            .map(Timestamp::from_unix_micros),
        ack_detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

impl PgStore {
    pub(crate) async fn edi_controls(
        &self,
        partner: &str,
        kind: EdiControl,
        count: u32,
    ) -> Result<u32> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        sqlx::query(
            "INSERT INTO edi_control_numbers (partner, kind, next) VALUES ($1, $2, 1) \
             ON CONFLICT DO NOTHING",
        )
        .bind(partner)
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await
        .map_err(pgerr("create control number series"))?;
        let next: i64 = sqlx::query_scalar(
            "SELECT next FROM edi_control_numbers WHERE partner = $1 AND kind = $2 FOR UPDATE",
        )
        .bind(partner)
        .bind(kind.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(pgerr("read control numbers"))?;
        let (first, next) = take_controls(Some(next), count);
        sqlx::query("UPDATE edi_control_numbers SET next = $3 WHERE partner = $1 AND kind = $2")
            .bind(partner)
            .bind(kind.as_str())
            .bind(next)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("take control numbers"))?;
        tx.commit().await.map_err(pgerr("commit"))?;
        Ok(first)
    }

    pub(crate) async fn edi_inbound(
        &self,
        sender: &str,
        control: &str,
        partner: &str,
        inbox_id: Option<i64>,
        now: Timestamp,
    ) -> Result<EdiInbound> {
        let inserted = sqlx::query(
            "INSERT INTO edi_interchanges_in (sender, control, partner, inbox_id, received_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(sender)
        .bind(control)
        .bind(partner)
        .bind(inbox_id)
        .bind(now.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(pgerr("record inbound interchange"))?;
        if inserted.rows_affected() == 1 {
            return Ok(EdiInbound::New);
        }
        let row = sqlx::query(
            "SELECT partner, inbox_id, received_at FROM edi_interchanges_in \
             WHERE sender = $1 AND control = $2",
        )
        .bind(sender)
        .bind(control)
        .fetch_one(&self.pool)
        .await
        .map_err(pgerr("read inbound interchange"))?;
        Ok(EdiInbound::Duplicate {
            partner: row.try_get(0).map_err(pgerr("read inbound interchange"))?,
            inbox_id: row.try_get(1).map_err(pgerr("read inbound interchange"))?,
            received_at: Timestamp::from_unix_micros(
                row.try_get(2).map_err(pgerr("read inbound interchange"))?,
            ),
        })
    }

    pub(crate) async fn edi_groups_sent(&self, groups: Vec<EdiGroupSent>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        for g in &groups {
            sqlx::query(
                "INSERT INTO edi_groups_out (partner, group_control, functional_id, \
                 interchange_control, sets, sent_at, status) VALUES ($1, $2, $3, $4, $5, $6, 'sent') \
                 ON CONFLICT (partner, group_control) DO UPDATE SET functional_id = excluded.functional_id, \
                 interchange_control = excluded.interchange_control, sets = excluded.sets, \
                 sent_at = excluded.sent_at, status = 'sent', ack_at = NULL, ack_detail = NULL",
            )
            .bind(&g.partner)
            .bind(&g.group_control)
            .bind(&g.functional_id)
            .bind(&g.interchange_control)
            .bind(g.sets)
            .bind(g.sent_at.unix_micros())
            .execute(&mut *tx)
            .await
            .map_err(pgerr("record groups sent"))?;
        }
        tx.commit().await.map_err(pgerr("commit"))
    }

    pub(crate) async fn edi_ack_received(
        &self,
        partner: &str,
        group_control: &str,
        status: &str,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Result<EdiAckOutcome> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT status FROM edi_groups_out WHERE partner = $1 AND group_control = $2 FOR UPDATE",
        )
        .bind(partner)
        .bind(group_control)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pgerr("read group sent"))?;
        let Some(previous) = previous else {
            return Ok(EdiAckOutcome::UnknownGroup);
        };
        sqlx::query(
            "UPDATE edi_groups_out SET status = $3, ack_at = $4, ack_detail = $5 \
             WHERE partner = $1 AND group_control = $2",
        )
        .bind(partner)
        .bind(group_control)
        .bind(status)
        .bind(now.unix_micros())
        .bind(detail.to_string())
        .execute(&mut *tx)
        .await
        .map_err(pgerr("record 997"))?;
        tx.commit().await.map_err(pgerr("commit"))?;
        Ok(EdiAckOutcome::Recorded { previous })
    }

    pub(crate) async fn edi_groups(&self, query: EdiGroupQuery) -> Result<Vec<EdiGroupRecord>> {
        let rows = sqlx::query(
            "SELECT partner, group_control, functional_id, interchange_control, sets, sent_at, \
             status, ack_at, ack_detail FROM edi_groups_out \
             WHERE ($1::text IS NULL OR partner = $1) AND ($2::text IS NULL OR status = $2) \
             AND ($3::bigint IS NULL OR sent_at < $3) \
             ORDER BY sent_at, partner, group_control LIMIT $4",
        )
        .bind(&query.partner)
        .bind(&query.status)
        .bind(query.sent_before.map(Timestamp::unix_micros))
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list groups sent"))?;
        rows.iter()
            .map(record)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(pgerr("list groups sent"))
    }
}
