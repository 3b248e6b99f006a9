//! EDI partners on SQLite: control number series, inbound interchanges seen, groups sent and
//! their 997s. Writes run on the writer thread, so a series never hands out a number twice.

use crossdock_core::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db};
use crate::Result;
use crate::model::{
    EdiAckOutcome, EdiControl, EdiGroupQuery, EdiGroupRecord, EdiGroupSent, EdiInbound,
    take_controls,
};

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<EdiGroupRecord> {
    let detail: Option<String> = row.get(8)?;
    Ok(EdiGroupRecord {
        group: EdiGroupSent {
            partner: row.get(0)?,
            group_control: row.get(1)?,
            functional_id: row.get(2)?,
            interchange_control: row.get(3)?,
            sets: row.get(4)?,
            sent_at: Timestamp::from_unix_micros(row.get(5)?),
        },
        status: row.get(6)?,
        ack_at: row
            .get::<_, Option<i64>>(7)?
            .map(Timestamp::from_unix_micros),
        ack_detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

impl SqliteStore {
    pub(crate) async fn edi_controls(
        &self,
        partner: &str,
        kind: EdiControl,
        count: u32,
    ) -> Result<u32> {
        let partner = partner.to_owned();
        self.write(1, move |conn| {
            let next: Option<i64> = conn
                .query_row(
                    "SELECT next FROM edi_control_numbers WHERE partner = ?1 AND kind = ?2",
                    params![partner, kind.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("read control numbers"))?;
            let (first, next) = take_controls(next, count);
            conn.execute(
                "INSERT INTO edi_control_numbers (partner, kind, next) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (partner, kind) DO UPDATE SET next = excluded.next",
                params![partner, kind.as_str(), next],
            )
            .map_err(db("take control numbers"))?;
            Ok(first)
        })
        .await
    }

    pub(crate) async fn edi_inbound(
        &self,
        sender: &str,
        control: &str,
        partner: &str,
        inbox_id: Option<i64>,
        now: Timestamp,
    ) -> Result<EdiInbound> {
        let (sender, control, partner) =
            (sender.to_owned(), control.to_owned(), partner.to_owned());
        self.write(1, move |conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO edi_interchanges_in (sender, control, partner, inbox_id, received_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![sender, control, partner, inbox_id, now.unix_micros()],
                )
                .map_err(db("record inbound interchange"))?;
            if inserted == 1 {
                return Ok(EdiInbound::New);
            }
            conn.query_row(
                "SELECT partner, inbox_id, received_at FROM edi_interchanges_in \
                 WHERE sender = ?1 AND control = ?2",
                params![sender, control],
                |r| {
                    Ok(EdiInbound::Duplicate {
                        partner: r.get(0)?,
                        inbox_id: r.get(1)?,
                        received_at: Timestamp::from_unix_micros(r.get(2)?),
                    })
                },
            )
            .map_err(db("read inbound interchange"))
        })
        .await
    }

    pub(crate) async fn edi_groups_sent(&self, groups: Vec<EdiGroupSent>) -> Result<()> {
        let weight = groups.len().max(1);
        self.write(weight, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO edi_groups_out (partner, group_control, functional_id, \
                     interchange_control, sets, sent_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'sent') \
                     ON CONFLICT (partner, group_control) DO UPDATE SET functional_id = excluded.functional_id, \
                     interchange_control = excluded.interchange_control, sets = excluded.sets, \
                     sent_at = excluded.sent_at, status = 'sent', ack_at = NULL, ack_detail = NULL",
                )
                .map_err(db("record groups sent"))?;
            for g in &groups {
                stmt.execute(params![
                    g.partner,
                    g.group_control,
                    g.functional_id,
                    g.interchange_control,
                    g.sets,
                    g.sent_at.unix_micros()
                ])
                .map_err(db("record groups sent"))?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn edi_ack_received(
        &self,
        partner: &str,
        group_control: &str,
        status: &str,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Result<EdiAckOutcome> {
        let (partner, group_control, status) = (
            partner.to_owned(),
            group_control.to_owned(),
            status.to_owned(),
        );
        let detail = detail.to_string();
        self.write(1, move |conn| {
            let previous: Option<String> = conn
                .query_row(
                    "SELECT status FROM edi_groups_out WHERE partner = ?1 AND group_control = ?2",
                    params![partner, group_control],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("read group sent"))?;
            let Some(previous) = previous else {
                return Ok(EdiAckOutcome::UnknownGroup);
            };
            conn.execute(
                "UPDATE edi_groups_out SET status = ?3, ack_at = ?4, ack_detail = ?5 \
                 WHERE partner = ?1 AND group_control = ?2",
                params![partner, group_control, status, now.unix_micros(), detail],
            )
            .map_err(db("record 997"))?;
            Ok(EdiAckOutcome::Recorded { previous })
        })
        .await
    }

    pub(crate) async fn edi_groups(&self, query: EdiGroupQuery) -> Result<Vec<EdiGroupRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT partner, group_control, functional_id, interchange_control, sets, sent_at, \
                     status, ack_at, ack_detail FROM edi_groups_out \
                     WHERE (?1 IS NULL OR partner = ?1) AND (?2 IS NULL OR status = ?2) \
                     AND (?3 IS NULL OR sent_at < ?3) \
                     ORDER BY sent_at, partner, group_control LIMIT ?4",
                )
                .map_err(db("list groups sent"))?;
            let rows = stmt
                .query_map(
                    params![
                        query.partner,
                        query.status,
                        query.sent_before.map(Timestamp::unix_micros),
                        i64::try_from(query.limit).unwrap_or(i64::MAX)
                    ],
                    record,
                )
                .map_err(db("list groups sent"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("list groups sent"))
        })
        .await
    }
}
