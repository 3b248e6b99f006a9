//! Typed transaction sets: each is read from the segments between ST and SE and written back
//! the same way, so write → read → write is byte for byte the same.
//!
//! Reading is lenient where partners differ and strict where meaning is at stake: segments a set
//! does not model (partner-specific REF, PER, FOB, …) are passed over; a mandatory segment or
//! element that is missing, a number that is not a number, or a code outside its list is a
//! [`Problem`] with the AK3/AK4 code a 997 reports it by.

mod common;
mod f810;
mod f846;
mod f850;
mod f855;
mod f856;
mod f940;
mod f944;
mod f945;
mod f947;
mod f997;

pub use common::{DateRef, Decimal, ItemId, Party, Reference, SetReader, WarehouseLine};
pub use f810::{Invoice, InvoiceLine};
pub use f846::{InventoryAdvice, InventoryItem, ItemQuantity};
pub use f850::{PurchaseOrder, PurchaseOrderLine};
pub use f855::{LineAck, PoAck, PoAckLine};
pub use f856::{HierarchyLevel, ShipNotice};
pub use f940::{ShippingOrder, ShippingOrderLine};
pub use f944::{ReceiptAdvice, ReceiptLine};
pub use f945::{ShippingAdvice, ShippingAdviceLine};
pub use f947::{AdjustmentAdvice, AdjustmentLine};
pub use f997::{ElementError, FunctionalAck, SegmentError, SetAck};

use serde::Serialize;

use crate::Segment;
use crate::problem::{Position, Problem};
use crate::writer::{SegmentWriter, WriteError};

/// A typed transaction set.
pub trait TransactionSet: Sized {
    /// ST01.
    const ID: &'static str;
    /// The GS01 functional identifier of the groups that carry it.
    const FUNCTIONAL_ID: &'static str;
    /// Reads the set's body (the segments between ST and SE); problems are pushed into the
    /// reader. `None` when the set is unusable.
    fn read(reader: &mut SetReader<'_, '_>) -> Option<Self>;
    /// Writes the set's body.
    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError>;
}

/// Any transaction set crossdock types, or the id of one it does not.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "set", rename_all = "snake_case")]
pub enum Document {
    #[serde(rename = "846")]
    InventoryAdvice(InventoryAdvice),
    #[serde(rename = "850")]
    PurchaseOrder(PurchaseOrder),
    #[serde(rename = "855")]
    PoAck(PoAck),
    #[serde(rename = "856")]
    ShipNotice(ShipNotice),
    #[serde(rename = "810")]
    Invoice(Invoice),
    #[serde(rename = "940")]
    ShippingOrder(ShippingOrder),
    #[serde(rename = "944")]
    ReceiptAdvice(ReceiptAdvice),
    #[serde(rename = "945")]
    ShippingAdvice(ShippingAdvice),
    #[serde(rename = "947")]
    AdjustmentAdvice(AdjustmentAdvice),
    #[serde(rename = "997")]
    FunctionalAck(FunctionalAck),
}

/// True when crossdock has a typed model for set `id`.
pub fn is_typed(id: &str) -> bool {
    matches!(
        id,
        "846" | "850" | "855" | "856" | "810" | "940" | "944" | "945" | "947" | "997"
    )
}

/// Reads set `id` from its body segments. `position` locates the set; problems found are
/// appended to `problems`. `None` for a set id crossdock does not type, or a set too broken to
/// use.
pub fn read(
    id: &str,
    segments: &[Segment<'_>],
    position: &Position,
    problems: &mut Vec<Problem>,
) -> Option<Document> {
    read_in(id, segments, None, position, problems)
}

/// As [`read`], for segments that are all views into `body` (the set's segments copied end to
/// end): the body is checked as UTF-8 once rather than element by element.
pub fn read_body(
    id: &str,
    body: &[u8],
    segments: &[Segment<'_>],
    position: &Position,
    problems: &mut Vec<Problem>,
) -> Option<Document> {
    read_in(id, segments, Some(body), position, problems)
}

fn read_in(
    id: &str,
    segments: &[Segment<'_>],
    body: Option<&[u8]>,
    position: &Position,
    problems: &mut Vec<Problem>,
) -> Option<Document> {
    fn typed<T: TransactionSet>(
        segments: &[Segment<'_>],
        body: Option<&[u8]>,
        position: &Position,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let mut reader = match body {
            Some(body) => SetReader::with_body(segments, body, position.clone()),
            None => SetReader::new(segments, position.clone()),
        };
        let document = T::read(&mut reader);
        problems.extend(reader.into_problems());
        document
    }
    Some(match id {
        "846" => Document::InventoryAdvice(typed(segments, body, position, problems)?),
        "850" => Document::PurchaseOrder(typed(segments, body, position, problems)?),
        "855" => Document::PoAck(typed(segments, body, position, problems)?),
        "856" => Document::ShipNotice(typed(segments, body, position, problems)?),
        "810" => Document::Invoice(typed(segments, body, position, problems)?),
        "940" => Document::ShippingOrder(typed(segments, body, position, problems)?),
        "944" => Document::ReceiptAdvice(typed(segments, body, position, problems)?),
        "945" => Document::ShippingAdvice(typed(segments, body, position, problems)?),
        "947" => Document::AdjustmentAdvice(typed(segments, body, position, problems)?),
        "997" => Document::FunctionalAck(typed(segments, body, position, problems)?),
        _ => return None,
    })
}

impl Document {
    /// ST01 of the set.
    pub fn id(&self) -> &'static str {
        match self {
            Document::InventoryAdvice(_) => InventoryAdvice::ID,
            Document::PurchaseOrder(_) => PurchaseOrder::ID,
            Document::PoAck(_) => PoAck::ID,
            Document::ShipNotice(_) => ShipNotice::ID,
            Document::Invoice(_) => Invoice::ID,
            Document::ShippingOrder(_) => ShippingOrder::ID,
            Document::ReceiptAdvice(_) => ReceiptAdvice::ID,
            Document::ShippingAdvice(_) => ShippingAdvice::ID,
            Document::AdjustmentAdvice(_) => AdjustmentAdvice::ID,
            Document::FunctionalAck(_) => FunctionalAck::ID,
        }
    }

    /// GS01 of the groups that carry the set.
    pub fn functional_id(&self) -> &'static str {
        match self {
            Document::InventoryAdvice(_) => InventoryAdvice::FUNCTIONAL_ID,
            Document::PurchaseOrder(_) => PurchaseOrder::FUNCTIONAL_ID,
            Document::PoAck(_) => PoAck::FUNCTIONAL_ID,
            Document::ShipNotice(_) => ShipNotice::FUNCTIONAL_ID,
            Document::Invoice(_) => Invoice::FUNCTIONAL_ID,
            Document::ShippingOrder(_) => ShippingOrder::FUNCTIONAL_ID,
            Document::ReceiptAdvice(_) => ReceiptAdvice::FUNCTIONAL_ID,
            Document::ShippingAdvice(_) => ShippingAdvice::FUNCTIONAL_ID,
            Document::AdjustmentAdvice(_) => AdjustmentAdvice::FUNCTIONAL_ID,
            Document::FunctionalAck(_) => FunctionalAck::FUNCTIONAL_ID,
        }
    }

    /// Writes the set's body.
    pub fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        match self {
            Document::InventoryAdvice(d) => d.write(w),
            Document::PurchaseOrder(d) => d.write(w),
            Document::PoAck(d) => d.write(w),
            Document::ShipNotice(d) => d.write(w),
            Document::Invoice(d) => d.write(w),
            Document::ShippingOrder(d) => d.write(w),
            Document::ReceiptAdvice(d) => d.write(w),
            Document::ShippingAdvice(d) => d.write(w),
            Document::AdjustmentAdvice(d) => d.write(w),
            Document::FunctionalAck(d) => d.write(w),
        }
    }

    /// The number of line items (or acknowledged sets, for a 997).
    pub fn items(&self) -> usize {
        match self {
            Document::InventoryAdvice(d) => d.items.len(),
            Document::PurchaseOrder(d) => d.lines.len(),
            Document::PoAck(d) => d.lines.len(),
            Document::ShipNotice(d) => d.items().count(),
            Document::Invoice(d) => d.lines.len(),
            Document::ShippingOrder(d) => d.lines.len(),
            Document::ReceiptAdvice(d) => d.lines.len(),
            Document::ShippingAdvice(d) => d.lines.len(),
            Document::AdjustmentAdvice(d) => d.lines.len(),
            Document::FunctionalAck(d) => d.sets.len(),
        }
    }
}
