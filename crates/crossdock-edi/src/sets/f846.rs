//! 846 Inventory Inquiry/Advice: stock on hand or available, per item (and location).

use serde::Serialize;

use crate::list::List;
use crate::text::Text;

use super::TransactionSet;
use super::common::{
    DateRef, Decimal, ItemId, Party, Reference, SetReader, o, with_ids, write_dates, write_parties,
    write_references,
};
use crate::writer::{SegmentWriter, WriteError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryAdvice {
    /// BIA01: `00` original, `05` replace, …
    pub purpose: Text,
    /// BIA02: `DD` distributor inventory report, `MM` merchandise movement, `SI` seller's
    /// inventory, …
    pub report_type: Text,
    /// BIA03.
    pub reference: Text,
    /// BIA04: `CCYYMMDD`.
    pub date: Text,
    /// BIA05: `HHMM[SS]`.
    pub time: Option<Text>,
    pub dates: Vec<DateRef>,
    pub references: Vec<Reference>,
    pub parties: Vec<Party>,
    pub items: Vec<InventoryItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryItem {
    /// LIN01: line id.
    pub line: Option<Text>,
    /// LIN02/LIN03 onwards.
    pub ids: List<ItemId>,
    pub description: Option<Text>,
    pub quantities: List<ItemQuantity>,
}

/// A QTY segment: `33` available for sale, `17` on hand, `02` cumulative, … and its unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ItemQuantity {
    pub qualifier: Text,
    pub quantity: Decimal,
    pub unit: Option<Text>,
}

impl TransactionSet for InventoryAdvice {
    const ID: &'static str = "846";
    const FUNCTIONAL_ID: &'static str = "IB";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&[
            "BIA", "DTM", "REF", "N1", "N3", "N4", "LIN", "PID", "QTY", "CTT",
        ]);
        let mut advice = {
            let mut f = r.require("BIA")?;
            InventoryAdvice {
                purpose: f.text(1, true),
                report_type: f.text(2, true),
                reference: f.text(3, true),
                date: f.date(4, true),
                time: f.opt(5),
                dates: Vec::new(),
                references: Vec::new(),
                parties: Vec::new(),
                items: Vec::new(),
            }
        };
        advice.dates = r.dates("DTM");
        advice.references = r.references("REF");
        advice.parties = r.parties();
        r.skip_until(&["LIN", "CTT"]);
        advice.items.reserve(r.remaining() / 3);
        while let Some(mut f) = r.take("LIN") {
            let line = f.opt(1);
            let ids = f.ids(2);
            let description = r.take("PID").and_then(|mut f| f.opt(5));
            let mut quantities = List::new();
            while !r.at("LIN") && !r.at("CTT") && !r.done() {
                let Some(mut f) = r.take("QTY") else {
                    r.skip_until(&["QTY", "LIN", "CTT"]);
                    continue;
                };
                let qualifier = f.text(1, true);
                let quantity = f.decimal(2, true);
                let unit = f.opt(3);
                if let Some(quantity) = quantity {
                    quantities.push(ItemQuantity {
                        qualifier,
                        quantity,
                        unit,
                    });
                }
            }
            advice.items.push(InventoryItem {
                line,
                ids,
                description,
                quantities,
            });
        }
        let _ = r.take("CTT");
        Some(advice)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "BIA",
            &[
                &self.purpose,
                &self.report_type,
                &self.reference,
                &self.date,
                o(&self.time),
            ],
        )?;
        write_dates(w, "DTM", &self.dates)?;
        write_references(w, "REF", &self.references)?;
        write_parties(w, &self.parties)?;
        for item in &self.items {
            w.segment("LIN", &with_ids(vec![o(&item.line)], &item.ids))?;
            if let Some(description) = &item.description {
                w.segment("PID", &["F", "", "", "", description])?;
            }
            for q in &item.quantities {
                w.segment("QTY", &[&q.qualifier, q.quantity.as_str(), o(&q.unit)])?;
            }
        }
        w.segment("CTT", &[self.items.len().to_string()])
    }
}
