//! 940 Warehouse Shipping Order: the depositor asks its 3PL to ship an order.

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
pub struct ShippingOrder {
    /// W0501: `N` original, `F` cancellation, `R` replace, …
    pub status: Text,
    /// W0502: the depositor's order number.
    pub order_number: Text,
    /// W0503: the customer's purchase order number.
    pub po_number: Option<Text>,
    pub parties: Vec<Party>,
    pub references: Vec<Reference>,
    pub dates: Vec<DateRef>,
    /// W6601: shipment method of payment (`PP` prepaid, `CC` collect, …).
    pub payment: Option<Text>,
    /// W6602: transportation method (`M` motor, `U` parcel, …).
    pub transport: Option<Text>,
    /// W6610: carrier SCAC.
    pub carrier: Option<Text>,
    pub lines: Vec<ShippingOrderLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingOrderLine {
    /// LX01.
    pub line: Option<Text>,
    pub quantity: Decimal,
    pub unit: Text,
    /// W0103.
    pub upc: Option<Text>,
    /// W0104/W0105.
    pub ids: List<ItemId>,
    /// G6901.
    pub description: Option<Text>,
    /// N9 in the line's loop (lot, serial, …).
    pub references: Vec<Reference>,
}

impl TransactionSet for ShippingOrder {
    const ID: &'static str = "940";
    const FUNCTIONAL_ID: &'static str = "OW";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&[
            "W05", "N1", "N3", "N4", "N9", "G62", "W66", "LX", "W01", "G69", "W76",
        ]);
        let mut order = {
            let mut f = r.require("W05")?;
            ShippingOrder {
                status: f.text(1, true),
                order_number: f.text(2, true),
                po_number: f.opt(3),
                parties: Vec::new(),
                references: Vec::new(),
                dates: Vec::new(),
                payment: None,
                transport: None,
                carrier: None,
                lines: Vec::new(),
            }
        };
        order.parties = r.parties();
        order.references = r.references("N9");
        order.dates = r.dates("G62");
        if let Some(mut f) = r.take("W66") {
            order.payment = f.opt(1);
            order.transport = f.opt(2);
            order.carrier = f.opt(10);
        }
        r.skip_until(&["LX", "W01", "W76"]);
        loop {
            let line = r.take("LX").and_then(|mut f| f.opt(1));
            let Some(mut f) = r.require("W01") else {
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
            order.lines.push(ShippingOrderLine {
                line,
                quantity,
                unit,
                upc,
                ids,
                description,
                references,
            });
            r.skip_until(&["LX", "W01", "W76"]);
            if r.at("W76") || r.done() {
                break;
            }
        }
        let _ = r.take("W76");
        Some(order)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "W05",
            &[&self.status, &self.order_number, o(&self.po_number)],
        )?;
        write_parties(w, &self.parties)?;
        write_references(w, "N9", &self.references)?;
        write_dates(w, "G62", &self.dates)?;
        if self.payment.is_some() || self.transport.is_some() || self.carrier.is_some() {
            let mut w66 = vec![o(&self.payment), o(&self.transport)];
            w66.extend(["", "", "", "", "", "", ""]);
            w66.push(o(&self.carrier));
            w.segment("W66", &w66)?;
        }
        let mut total = 0i64;
        for line in &self.lines {
            if let Some(lx) = &line.line {
                w.segment("LX", &[lx])?;
            }
            let mut w01 = vec![line.quantity.as_str(), &line.unit, o(&line.upc)];
            for id in &line.ids {
                w01.push(&id.qualifier);
                w01.push(&id.id);
            }
            w.segment("W01", &w01)?;
            if let Some(description) = &line.description {
                w.segment("G69", &[description])?;
            }
            write_references(w, "N9", &line.references)?;
            total = total.saturating_add(line.quantity.to_integer().unwrap_or(0));
        }
        w.segment("W76", &[total.to_string()])
    }
}
