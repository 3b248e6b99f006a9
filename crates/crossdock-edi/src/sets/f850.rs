//! 850 Purchase Order: a B2B customer or retailer orders goods.

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
pub struct PurchaseOrder {
    /// BEG01: `00` original, `01` cancellation, `05` replace, `06` confirmation, `07` duplicate.
    pub purpose: Text,
    /// BEG02: `SA` stand-alone, `DS` drop ship, `RL` release, `BK` blanket, …
    pub order_type: Text,
    /// BEG03: the buyer's purchase order number.
    pub number: Text,
    /// BEG04: release number.
    pub release: Option<Text>,
    /// BEG05: `CCYYMMDD`.
    pub date: Text,
    /// CUR02 (with CUR01 `BY`).
    pub currency: Option<Text>,
    pub references: Vec<Reference>,
    pub dates: Vec<DateRef>,
    pub parties: Vec<Party>,
    pub lines: Vec<PurchaseOrderLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurchaseOrderLine {
    /// PO101: the buyer's line number.
    pub line: Option<Text>,
    pub quantity: Decimal,
    /// PO103: `EA`, `CA`, …
    pub unit: Text,
    pub unit_price: Option<Decimal>,
    /// PO105: `PE` price per each, `TE` contract price per each, …
    pub price_basis: Option<Text>,
    /// PO106/PO107 onwards.
    pub ids: List<ItemId>,
    /// PID05 (free-form description).
    pub description: Option<Text>,
}

const PURPOSES: &[&str] = &["00", "01", "04", "05", "06", "07", "18", "22", "46"];

impl TransactionSet for PurchaseOrder {
    const ID: &'static str = "850";
    const FUNCTIONAL_ID: &'static str = "PO";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&[
            "BEG", "CUR", "REF", "DTM", "N1", "N3", "N4", "PO1", "PID", "CTT",
        ]);
        let mut order = {
            let mut f = r.require("BEG")?;
            PurchaseOrder {
                purpose: f.code(1, true, PURPOSES),
                order_type: f.text(2, true),
                number: f.text(3, true),
                release: f.opt(4),
                date: f.date(5, true),
                currency: None,
                references: Vec::new(),
                dates: Vec::new(),
                parties: Vec::new(),
                lines: Vec::new(),
            }
        };
        if let Some(mut f) = r.take("CUR") {
            order.currency = f.opt(2);
        }
        order.references = r.references("REF");
        order.dates = r.dates("DTM");
        order.parties = r.parties();
        r.skip_until(&["PO1", "CTT"]);
        order.lines.reserve(r.remaining() / 2);
        while let Some(mut f) = r.take("PO1") {
            let line = f.opt(1);
            let quantity = f.decimal(2, true);
            let unit = f.text(3, true);
            let unit_price = f.decimal(4, false);
            let price_basis = f.opt(5);
            let ids = f.ids(6);
            let description = r.take("PID").and_then(|mut f| f.opt(5));
            order.lines.push(PurchaseOrderLine {
                line,
                quantity: quantity.unwrap_or_else(|| Decimal::from_integer(0)),
                unit,
                unit_price,
                price_basis,
                ids,
                description,
            });
            r.skip_until(&["PO1", "CTT"]);
        }
        if order.lines.is_empty() {
            r.missing("PO1");
        }
        let _ = r.take("CTT");
        Some(order)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "BEG",
            &[
                &self.purpose,
                &self.order_type,
                &self.number,
                o(&self.release),
                &self.date,
            ],
        )?;
        if let Some(currency) = &self.currency {
            w.segment("CUR", &["BY", currency])?;
        }
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
            if let Some(description) = &line.description {
                w.segment("PID", &["F", "", "", "", description])?;
            }
        }
        w.segment("CTT", &[self.lines.len().to_string()])
    }
}
