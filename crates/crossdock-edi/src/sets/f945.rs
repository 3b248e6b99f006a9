//! 945 Warehouse Shipping Advice: the 3PL shipped (part of) an order.

use serde::Serialize;

use crate::list::List;
use crate::text::Text;

use super::TransactionSet;
use super::common::{
    DateRef, Decimal, ItemId, Party, Reference, SetReader, o, od, write_dates, write_parties,
    write_references,
};
use crate::writer::{SegmentWriter, WriteError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingAdvice {
    /// W0601: reporting code (`F` final, `P` partial, …).
    pub reporting: Text,
    /// W0602: the depositor's order number (the 940's W0502).
    pub order_number: Text,
    /// W0603.
    pub date: Text,
    /// W0604: the shipment id.
    pub shipment_id: Option<Text>,
    /// W0606: the customer's purchase order number.
    pub po_number: Option<Text>,
    pub parties: Vec<Party>,
    pub references: Vec<Reference>,
    pub dates: Vec<DateRef>,
    /// W2701: transportation method; W2702: carrier SCAC.
    pub transport: Option<Text>,
    pub carrier: Option<Text>,
    pub lines: Vec<ShippingAdviceLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingAdviceLine {
    pub line: Option<Text>,
    /// MAN: package marks (SSCC, tracking numbers).
    pub marks: Vec<Reference>,
    /// W1201: `CC` complete, `PR` partial, `CP` partial with balance cancelled, …
    pub status: Text,
    pub ordered: Option<Decimal>,
    pub shipped: Decimal,
    pub difference: Option<Decimal>,
    pub unit: Text,
    pub upc: Option<Text>,
    /// W1207/W1208.
    pub ids: List<ItemId>,
    /// N9 in the line's loop (lot, serial, …).
    pub references: Vec<Reference>,
}

impl TransactionSet for ShippingAdvice {
    const ID: &'static str = "945";
    const FUNCTIONAL_ID: &'static str = "SW";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&[
            "W06", "N1", "N3", "N4", "N9", "G62", "W27", "LX", "MAN", "W12", "W03",
        ]);
        let mut advice = {
            let mut f = r.require("W06")?;
            ShippingAdvice {
                reporting: f.text(1, true),
                order_number: f.text(2, true),
                date: f.date(3, true),
                shipment_id: f.opt(4),
                po_number: f.opt(6),
                parties: Vec::new(),
                references: Vec::new(),
                dates: Vec::new(),
                transport: None,
                carrier: None,
                lines: Vec::new(),
            }
        };
        advice.parties = r.parties();
        advice.references = r.references("N9");
        advice.dates = r.dates("G62");
        if let Some(mut f) = r.take("W27") {
            advice.transport = f.opt(1);
            advice.carrier = f.opt(2);
        }
        r.skip_until(&["LX", "MAN", "W12", "W03"]);
        loop {
            let line = r.take("LX").and_then(|mut f| f.opt(1));
            let marks = r.references("MAN");
            let Some(mut f) = r.require("W12") else {
                break;
            };
            advice.lines.push(ShippingAdviceLine {
                line,
                marks,
                status: f.text(1, true),
                ordered: f.decimal(2, false),
                shipped: f
                    .decimal(3, true)
                    .unwrap_or_else(|| Decimal::from_integer(0)),
                difference: f.decimal(4, false),
                unit: f.text(5, true),
                upc: f.opt(6),
                ids: f.ids_n(7, 1),
                references: Vec::new(),
            });
            if let Some(last) = advice.lines.last_mut() {
                last.references = r.references("N9");
            }
            r.skip_until(&["LX", "MAN", "W12", "W03"]);
            if r.at("W03") || r.done() {
                break;
            }
        }
        let _ = r.take("W03");
        Some(advice)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "W06",
            &[
                &self.reporting,
                &self.order_number,
                &self.date,
                o(&self.shipment_id),
                "",
                o(&self.po_number),
            ],
        )?;
        write_parties(w, &self.parties)?;
        write_references(w, "N9", &self.references)?;
        write_dates(w, "G62", &self.dates)?;
        if self.transport.is_some() || self.carrier.is_some() {
            w.segment("W27", &[o(&self.transport), o(&self.carrier)])?;
        }
        let mut total = 0i64;
        for line in &self.lines {
            if let Some(lx) = &line.line {
                w.segment("LX", &[lx])?;
            }
            write_references(w, "MAN", &line.marks)?;
            let mut w12 = vec![
                line.status.as_str(),
                od(&line.ordered),
                line.shipped.as_str(),
                od(&line.difference),
                &line.unit,
                o(&line.upc),
            ];
            for id in &line.ids {
                w12.push(&id.qualifier);
                w12.push(&id.id);
            }
            w.segment("W12", &w12)?;
            write_references(w, "N9", &line.references)?;
            total = total.saturating_add(line.shipped.to_integer().unwrap_or(0));
        }
        w.segment("W03", &[total.to_string()])
    }
}
