//! 944 Warehouse Stock Transfer Receipt Advice: the 3PL received goods.

use serde::Serialize;

use crate::list::List;
use crate::text::Text;

use super::TransactionSet;
use super::common::{
    DateRef, Decimal, ItemId, Party, Reference, SetReader, o, write_dates, write_parties,
    write_references,
};
use crate::writer::{SegmentWriter, WriteError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptAdvice {
    /// W1701: reporting code (`F` final, `P` partial, …).
    pub reporting: Text,
    /// W1702.
    pub date: Text,
    /// W1703: the warehouse's receipt number.
    pub receipt_number: Text,
    /// W1704: the depositor's order number (PO, ASN or transfer reference).
    pub order_number: Option<Text>,
    pub parties: Vec<Party>,
    pub references: Vec<Reference>,
    pub dates: Vec<DateRef>,
    pub lines: Vec<ReceiptLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptLine {
    pub line: Option<Text>,
    /// W0701.
    pub quantity: Decimal,
    pub unit: Text,
    pub upc: Option<Text>,
    /// W0704/W0705.
    pub ids: List<ItemId>,
    pub description: Option<Text>,
    /// N9 in the line's loop (lot, serial, …).
    pub references: Vec<Reference>,
}

impl TransactionSet for ReceiptAdvice {
    const ID: &'static str = "944";
    const FUNCTIONAL_ID: &'static str = "RE";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&[
            "W17", "N1", "N3", "N4", "N9", "G62", "LX", "W07", "G69", "W14",
        ]);
        let mut advice = {
            let mut f = r.require("W17")?;
            ReceiptAdvice {
                reporting: f.text(1, true),
                date: f.date(2, true),
                receipt_number: f.text(3, true),
                order_number: f.opt(4),
                parties: Vec::new(),
                references: Vec::new(),
                dates: Vec::new(),
                lines: Vec::new(),
            }
        };
        advice.parties = r.parties();
        advice.references = r.references("N9");
        advice.dates = r.dates("G62");
        r.skip_until(&["LX", "W07", "W14"]);
        loop {
            let line = r.take("LX").and_then(|mut f| f.opt(1));
            let Some(mut f) = r.require("W07") else {
                break;
            };
            let quantity = f
                .decimal(1, true)
                .unwrap_or_else(|| Decimal::from_integer(0));
            let unit = f.text(2, true);
            let upc = f.opt(3);
            let ids = f.ids_n(4, 1);
            let description = r.take("G69").and_then(|mut f| f.opt(1));
            let references = r.references("N9");
            advice.lines.push(ReceiptLine {
                line,
                quantity,
                unit,
                upc,
                ids,
                description,
                references,
            });
            r.skip_until(&["LX", "W07", "W14"]);
            if r.at("W14") || r.done() {
                break;
            }
        }
        let _ = r.take("W14");
        Some(advice)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "W17",
            &[
                &self.reporting,
                &self.date,
                &self.receipt_number,
                o(&self.order_number),
            ],
        )?;
        write_parties(w, &self.parties)?;
        write_references(w, "N9", &self.references)?;
        write_dates(w, "G62", &self.dates)?;
        let mut total = 0i64;
        for line in &self.lines {
            if let Some(lx) = &line.line {
                w.segment("LX", &[lx])?;
            }
            let mut w07 = vec![line.quantity.as_str(), &line.unit, o(&line.upc)];
            for id in &line.ids {
                w07.push(&id.qualifier);
                w07.push(&id.id);
            }
            w.segment("W07", &w07)?;
            if let Some(description) = &line.description {
                w.segment("G69", &[description])?;
            }
            write_references(w, "N9", &line.references)?;
            total = total.saturating_add(line.quantity.to_integer().unwrap_or(0));
        }
        w.segment("W14", &[total.to_string()])
    }
}
