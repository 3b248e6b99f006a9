//! 947 Warehouse Inventory Adjustment Advice: the 3PL's stock changed (damage, count, status).

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
pub struct AdjustmentAdvice {
    /// W1501.
    pub date: Text,
    /// W1502: the warehouse's adjustment number.
    pub adjustment_number: Text,
    /// W1503: the depositor's adjustment number.
    pub depositor_number: Option<Text>,
    pub parties: Vec<Party>,
    pub references: Vec<Reference>,
    pub dates: Vec<DateRef>,
    pub lines: Vec<AdjustmentLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdjustmentLine {
    pub line: Option<Text>,
    /// W1901: adjustment reason (`AU` damaged in facility, `07` destroyed, `AC` condition
    /// change, `AY` receipt error, `56` book increase, …).
    pub reason: Text,
    /// W1902: the quantity credited (positive) or debited (negative).
    pub quantity: Decimal,
    pub unit: Text,
    pub upc: Option<Text>,
    /// W1905/W1906.
    pub ids: List<ItemId>,
    pub description: Option<Text>,
    /// N9 in the line's loop (lot, serial, …).
    pub references: Vec<Reference>,
}

impl TransactionSet for AdjustmentAdvice {
    const ID: &'static str = "947";
    const FUNCTIONAL_ID: &'static str = "AW";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&["W15", "N1", "N3", "N4", "N9", "G62", "LX", "W19", "G69"]);
        let mut advice = {
            let mut f = r.require("W15")?;
            AdjustmentAdvice {
                date: f.date(1, true),
                adjustment_number: f.text(2, true),
                depositor_number: f.opt(3),
                parties: Vec::new(),
                references: Vec::new(),
                dates: Vec::new(),
                lines: Vec::new(),
            }
        };
        advice.parties = r.parties();
        advice.references = r.references("N9");
        advice.dates = r.dates("G62");
        r.skip_until(&["LX", "W19"]);
        if r.done() {
            r.missing("W19");
        }
        while !r.done() {
            let line = r.take("LX").and_then(|mut f| f.opt(1));
            let Some(mut f) = r.require("W19") else {
                break;
            };
            let reason = f.text(1, true);
            let quantity = f
                .decimal(2, true)
                .unwrap_or_else(|| Decimal::from_integer(0));
            let unit = f.text(3, true);
            let upc = f.opt(4);
            let ids = f.ids_n(5, 1);
            let description = r.take("G69").and_then(|mut f| f.opt(1));
            let references = r.references("N9");
            advice.lines.push(AdjustmentLine {
                line,
                reason,
                quantity,
                unit,
                upc,
                ids,
                description,
                references,
            });
            r.skip_until(&["LX", "W19"]);
        }
        Some(advice)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "W15",
            &[
                &self.date,
                &self.adjustment_number,
                o(&self.depositor_number),
            ],
        )?;
        write_parties(w, &self.parties)?;
        write_references(w, "N9", &self.references)?;
        write_dates(w, "G62", &self.dates)?;
        for line in &self.lines {
            if let Some(lx) = &line.line {
                w.segment("LX", &[lx])?;
            }
            let mut w19 = vec![
                line.reason.as_str(),
                line.quantity.as_str(),
                &line.unit,
                o(&line.upc),
            ];
            for id in &line.ids {
                w19.push(&id.qualifier);
                w19.push(&id.id);
            }
            w.segment("W19", &w19)?;
            if let Some(description) = &line.description {
                w.segment("G69", &[description])?;
            }
            write_references(w, "N9", &line.references)?;
        }
        Ok(())
    }
}
