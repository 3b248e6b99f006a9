//! 810 Invoice.

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
pub struct Invoice {
    /// BIG01.
    pub date: Text,
    /// BIG02.
    pub number: Text,
    /// BIG03.
    pub po_date: Option<Text>,
    /// BIG04.
    pub po_number: Option<Text>,
    pub currency: Option<Text>,
    pub references: Vec<Reference>,
    pub parties: Vec<Party>,
    pub dates: Vec<DateRef>,
    pub lines: Vec<InvoiceLine>,
    /// TDS01: the total in cents (an implied two decimals), as written.
    pub total_cents: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceLine {
    pub line: Option<Text>,
    pub quantity: Decimal,
    pub unit: Text,
    pub unit_price: Decimal,
    pub price_basis: Option<Text>,
    pub ids: List<ItemId>,
    pub description: Option<Text>,
}

impl TransactionSet for Invoice {
    const ID: &'static str = "810";
    const FUNCTIONAL_ID: &'static str = "IN";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&[
            "BIG", "CUR", "REF", "N1", "N3", "N4", "DTM", "IT1", "PID", "TDS", "CTT",
        ]);
        let mut invoice = {
            let mut f = r.require("BIG")?;
            Invoice {
                date: f.date(1, true),
                number: f.text(2, true),
                po_date: f.opt(3),
                po_number: f.opt(4),
                currency: None,
                references: Vec::new(),
                parties: Vec::new(),
                dates: Vec::new(),
                lines: Vec::new(),
                total_cents: Decimal::from_integer(0),
            }
        };
        if let Some(mut f) = r.take("CUR") {
            invoice.currency = f.opt(2);
        }
        invoice.references = r.references("REF");
        invoice.parties = r.parties();
        invoice.dates = r.dates("DTM");
        r.skip_until(&["IT1", "TDS"]);
        while let Some(mut f) = r.take("IT1") {
            let line = f.opt(1);
            let quantity = f
                .decimal(2, true)
                .unwrap_or_else(|| Decimal::from_integer(0));
            let unit = f.text(3, true);
            let unit_price = f
                .decimal(4, true)
                .unwrap_or_else(|| Decimal::from_integer(0));
            let price_basis = f.opt(5);
            let ids = f.ids(6);
            let description = r.take("PID").and_then(|mut f| f.opt(5));
            invoice.lines.push(InvoiceLine {
                line,
                quantity,
                unit,
                unit_price,
                price_basis,
                ids,
                description,
            });
            r.skip_until(&["IT1", "TDS"]);
        }
        match r.require("TDS") {
            Some(mut f) => {
                if let Some(total) = f.decimal(1, true) {
                    invoice.total_cents = total;
                }
            }
            None => return Some(invoice),
        }
        let _ = r.take("CTT");
        Some(invoice)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "BIG",
            &[
                &self.date,
                &self.number,
                o(&self.po_date),
                o(&self.po_number),
            ],
        )?;
        if let Some(currency) = &self.currency {
            w.segment("CUR", &["SE", currency])?;
        }
        write_references(w, "REF", &self.references)?;
        write_parties(w, &self.parties)?;
        write_dates(w, "DTM", &self.dates)?;
        for line in &self.lines {
            let head = vec![
                o(&line.line),
                line.quantity.as_str(),
                &line.unit,
                line.unit_price.as_str(),
                o(&line.price_basis),
            ];
            w.segment("IT1", &with_ids(head, &line.ids))?;
            if let Some(description) = &line.description {
                w.segment("PID", &["F", "", "", "", description])?;
            }
        }
        w.segment("TDS", &[self.total_cents.as_str()])?;
        w.segment("CTT", &[self.lines.len().to_string()])
    }
}
