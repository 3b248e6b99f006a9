//! 940 Warehouse Shipping Order: the depositor asks its 3PL to ship an order.

use serde::Serialize;

use crate::text::Text;

use super::TransactionSet;
use super::common::WarehouseLine;
use super::common::{
    DateRef, Party, Reference, SetReader, o, write_dates, write_parties, write_references,
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

/// A line of the warehouse shipping order: see [`WarehouseLine`].
pub type ShippingOrderLine = WarehouseLine;

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
        order.lines = WarehouseLine::read_all(r, "W01", "W76");
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
        WarehouseLine::write_all(&self.lines, w, "W01", "W76")
    }
}
