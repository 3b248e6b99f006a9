//! 944 Warehouse Stock Transfer Receipt Advice: the 3PL received goods.

use serde::Serialize;

use crate::text::Text;

use super::TransactionSet;
use super::common::WarehouseLine;
use super::common::{
    DateRef, Party, Reference, SetReader, o, write_dates, write_parties, write_references,
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

/// A line of the receipt advice: see [`WarehouseLine`].
pub type ReceiptLine = WarehouseLine;

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
        advice.lines = WarehouseLine::read_all(r, "W07", "W14");
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
        WarehouseLine::write_all(&self.lines, w, "W07", "W14")
    }
}
