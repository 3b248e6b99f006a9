//! 855 Purchase Order Acknowledgment: the seller's answer to an 850, line by line.

use serde::Serialize;

use crate::list::List;
use crate::text::Text;

use super::TransactionSet;
use super::common::{
    DateRef, Decimal, ItemId, Party, Reference, SetReader, o, od, with_ids, write_dates,
    write_parties, write_references,
};
use crate::writer::{SegmentWriter, WriteError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoAck {
    /// BAK01: `00` original, …
    pub purpose: Text,
    /// BAK02: `AC` acknowledge with detail and change, `AD` with detail, no change, `AK` no
    /// detail, `RD` rejected with detail, `RJ` rejected, …
    pub ack_type: Text,
    /// BAK03: the purchase order number, as the 850's BEG03.
    pub po_number: Text,
    /// BAK04: the purchase order date.
    pub po_date: Text,
    pub references: Vec<Reference>,
    pub dates: Vec<DateRef>,
    pub parties: Vec<Party>,
    pub lines: Vec<PoAckLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoAckLine {
    pub line: Option<Text>,
    pub quantity: Decimal,
    pub unit: Text,
    pub unit_price: Option<Decimal>,
    pub price_basis: Option<Text>,
    pub ids: List<ItemId>,
    pub acks: Vec<LineAck>,
}

/// An ACK segment: what happens to (part of) a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineAck {
    /// ACK01: `IA` accepted, `IB` backordered, `IR` rejected, `IQ` quantity changed, `IP` price
    /// changed, `IC` changes made, `ID` deleted, …
    pub status: Text,
    pub quantity: Option<Decimal>,
    pub unit: Option<Text>,
    /// ACK04: date qualifier (`068` current schedule ship, …).
    pub date_qualifier: Option<Text>,
    pub date: Option<Text>,
}

pub(super) const ACK_TYPES: &[&str] = &[
    "AC", "AD", "AE", "AH", "AK", "AP", "AT", "NA", "RD", "RF", "RJ", "RN", "RO", "RV", "ZZ",
];

impl TransactionSet for PoAck {
    const ID: &'static str = "855";
    const FUNCTIONAL_ID: &'static str = "PR";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&["BAK", "REF", "DTM", "N1", "N3", "N4", "PO1", "ACK", "CTT"]);
        let mut ack = {
            let mut f = r.require("BAK")?;
            PoAck {
                purpose: f.text(1, true),
                ack_type: f.code(2, true, ACK_TYPES),
                po_number: f.text(3, true),
                po_date: f.date(4, true),
                references: Vec::new(),
                dates: Vec::new(),
                parties: Vec::new(),
                lines: Vec::new(),
            }
        };
        ack.references = r.references("REF");
        ack.dates = r.dates("DTM");
        ack.parties = r.parties();
        r.skip_until(&["PO1", "CTT"]);
        while let Some(mut f) = r.take("PO1") {
            let mut line = PoAckLine {
                line: f.opt(1),
                quantity: f
                    .decimal(2, true)
                    .unwrap_or_else(|| Decimal::from_integer(0)),
                unit: f.text(3, true),
                unit_price: f.decimal(4, false),
                price_basis: f.opt(5),
                ids: f.ids(6),
                acks: Vec::new(),
            };
            while let Some(mut f) = r.take("ACK") {
                line.acks.push(LineAck {
                    status: f.text(1, true),
                    quantity: f.decimal(2, false),
                    unit: f.opt(3),
                    date_qualifier: f.opt(4),
                    date: f.opt(5),
                });
            }
            ack.lines.push(line);
            r.skip_until(&["PO1", "CTT"]);
        }
        let _ = r.take("CTT");
        Some(ack)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "BAK",
            &[
                &self.purpose,
                &self.ack_type,
                &self.po_number,
                &self.po_date,
            ],
        )?;
        write_references(w, "REF", &self.references)?;
        write_dates(w, "DTM", &self.dates)?;
        write_parties(w, &self.parties)?;
        for line in &self.lines {
            let head = vec![
                o(&line.line),
                line.quantity.as_str(),
                &line.unit,
                od(&line.unit_price),
                o(&line.price_basis),
            ];
            w.segment("PO1", &with_ids(head, &line.ids))?;
            for a in &line.acks {
                w.segment(
                    "ACK",
                    &[
                        &a.status,
                        od(&a.quantity),
                        o(&a.unit),
                        o(&a.date_qualifier),
                        o(&a.date),
                    ],
                )?;
            }
        }
        if !self.lines.is_empty() {
            w.segment("CTT", &[self.lines.len().to_string()])?;
        }
        Ok(())
    }
}
