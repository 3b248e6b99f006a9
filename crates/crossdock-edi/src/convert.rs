//! From typed sets to crossdock's inventory movements and orders, and back: a 3PL's 846 becomes
//! counts, its 944 receipts, its 947 adjustments and its 945 shipments; a customer's 850 becomes
//! an order; channel availability becomes an 846 for a retailer. Lines that cannot be mapped are
//! returned as errors with their line number — never dropped quietly.

use crossdock_core::Timestamp;
use crossdock_core::catalog::{LocationId, Sku};
use crossdock_core::inventory::Movement;
use serde_json::Value;

use crate::sets::{
    AdjustmentAdvice, Decimal, InventoryAdvice, InventoryItem, ItemId, ItemQuantity, LineAck,
    Party, PoAck, PoAckLine, ReceiptAdvice, ShippingAdvice, ShippingOrder, ShippingOrderLine,
};
use crate::text::Text;

/// How one partner's documents map onto crossdock's catalog.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Item id qualifiers that carry our SKU, in order of preference (`VP`, `VN`, `SK`, `BP`,
    /// `UP`, …).
    pub sku_qualifiers: Vec<String>,
    /// The location the partner's stock is at.
    pub location: LocationId,
    /// Partner warehouse ids (N1 `WH`/`SF` N104) and the locations they are; others are
    /// `location`.
    pub locations: Vec<(String, LocationId)>,
    /// The QTY01 qualifier of on-hand stock in an 846 (`17` by default; some partners send
    /// `33`).
    pub on_hand_qualifier: String,
}

impl Mapping {
    pub fn new(location: LocationId) -> Self {
        Mapping {
            sku_qualifiers: vec!["VP".into(), "VN".into(), "SK".into(), "BP".into()],
            location,
            locations: Vec::new(),
            on_hand_qualifier: "17".into(),
        }
    }

    fn sku(&self, ids: &[ItemId], upc: Option<&Text>) -> Result<Sku, String> {
        for qualifier in &self.sku_qualifiers {
            if let Some(id) = ids.iter().find(|i| i.qualifier == qualifier.as_str()) {
                return Sku::parse(&id.id)
                    .map_err(|why| format!("item id {:?}: {why}", id.id.as_str()));
            }
            if qualifier == "UP"
                && let Some(upc) = upc
            {
                return Sku::parse(upc).map_err(|why| format!("UPC {:?}: {why}", upc.as_str()));
            }
        }
        Err(format!(
            "no item id with qualifier {} (the line has {})",
            self.sku_qualifiers.join(", "),
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.iter()
                    .map(|i| format!("{} {}", i.qualifier, i.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    }

    fn location(&self, parties: &[Party]) -> LocationId {
        for party in parties {
            if matches!(party.role.as_str(), "WH" | "SF")
                && let Some(id) = &party.id
                && let Some((_, location)) = self.locations.iter().find(|(p, _)| p == id.as_str())
            {
                return location.clone();
            }
        }
        self.location.clone()
    }
}

/// A movement read from a document, with the document's reference (receipt, adjustment or
/// order number).
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryEvent {
    pub movement: Movement,
    pub reference: Option<String>,
}

impl InventoryEvent {
    /// The event's `data`, as `POST /v1/events` takes it.
    pub fn data(&self) -> Value {
        let mut data = self.movement.to_data();
        if let (Some(reference), Some(object)) = (&self.reference, data.as_object_mut()) {
            object.insert("reference".into(), Value::String(reference.clone()));
        }
        data
    }
}

/// A line that could not become a movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// The line (item) number in the document, from 1.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

type Converted = (Vec<InventoryEvent>, Vec<ConvertError>);

fn whole(quantity: &Decimal, what: &str) -> Result<i64, String> {
    quantity
        .to_integer()
        .ok_or_else(|| format!("{what} {quantity} is not a whole number of units"))
}

/// A `CCYYMMDD` date and optional `HHMM[SS]` time as a UTC timestamp.
fn timestamp(date: &str, time: Option<&str>) -> Result<Timestamp, String> {
    let d = date.as_bytes();
    if d.len() != 8 || !d.iter().all(u8::is_ascii_digit) {
        return Err(format!("date {date:?} is not CCYYMMDD"));
    }
    let t = time.unwrap_or("0000");
    if !(t.len() == 4 || t.len() == 6) || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("time {t:?} is not HHMM or HHMMSS"));
    }
    let seconds = t.get(4..6).unwrap_or("00");
    Timestamp::parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{seconds}Z",
        &date[..4],
        &date[4..6],
        &date[6..8],
        &t[..2],
        &t[2..4]
    ))
    .map_err(|why| format!("date {date} {t}: {why}"))
}

/// An 846 as counts: each item's on-hand quantity at the partner's location, as of BIA04/BIA05.
pub fn counts_from_846(advice: &InventoryAdvice, mapping: &Mapping) -> Converted {
    let mut out = (Vec::new(), Vec::new());
    let as_of = match timestamp(&advice.date, advice.time.as_deref()) {
        Ok(t) => t,
        Err(message) => {
            out.1.push(ConvertError { line: 0, message });
            return out;
        }
    };
    let location = mapping.location(&advice.parties);
    for (i, item) in advice.items.iter().enumerate() {
        let result = mapping.sku(&item.ids, None).and_then(|sku| {
            let q = item
                .quantities
                .iter()
                .find(|q| q.qualifier == mapping.on_hand_qualifier.as_str())
                .ok_or_else(|| format!("no QTY with qualifier {}", mapping.on_hand_qualifier))?;
            let on_hand = whole(&q.quantity, "quantity")?;
            if on_hand < 0 {
                return Err(format!("on-hand quantity {on_hand} is negative"));
            }
            Ok(Movement::Counted {
                sku,
                location: location.clone(),
                on_hand,
                as_of,
            })
        });
        push(&mut out, i, result, Some(advice.reference.to_string()));
    }
    out
}

/// A 944 as receipts at the partner's location.
pub fn receipts_from_944(advice: &ReceiptAdvice, mapping: &Mapping) -> Converted {
    let mut out = (Vec::new(), Vec::new());
    let location = mapping.location(&advice.parties);
    for (i, line) in advice.lines.iter().enumerate() {
        let result = mapping.sku(&line.ids, line.upc.as_ref()).and_then(|sku| {
            let quantity = whole(&line.quantity, "quantity received")?;
            if quantity <= 0 {
                return Err(format!("quantity received {quantity} is not positive"));
            }
            Ok(Movement::Received {
                sku,
                location: location.clone(),
                quantity,
            })
        });
        push(&mut out, i, result, Some(advice.receipt_number.to_string()));
    }
    out
}

/// A 947 as adjustments: W1902 is the signed change, W1901 the reason.
pub fn adjustments_from_947(advice: &AdjustmentAdvice, mapping: &Mapping) -> Converted {
    let mut out = (Vec::new(), Vec::new());
    let location = mapping.location(&advice.parties);
    for (i, line) in advice.lines.iter().enumerate() {
        let result = mapping.sku(&line.ids, line.upc.as_ref()).and_then(|sku| {
            let delta = whole(&line.quantity, "adjustment quantity")?;
            if delta == 0 {
                return Err("adjustment quantity is 0".into());
            }
            Ok(Movement::Adjusted {
                sku,
                location: location.clone(),
                delta,
                reason: line.reason.to_string(),
            })
        });
        push(
            &mut out,
            i,
            result,
            Some(advice.adjustment_number.to_string()),
        );
    }
    out
}

/// A 945 as shipments of what was shipped (W1203); lines shipping nothing are passed over.
pub fn shipments_from_945(advice: &ShippingAdvice, mapping: &Mapping) -> Converted {
    let mut out = (Vec::new(), Vec::new());
    let location = mapping.location(&advice.parties);
    for (i, line) in advice.lines.iter().enumerate() {
        let result = mapping.sku(&line.ids, line.upc.as_ref()).and_then(|sku| {
            let quantity = whole(&line.shipped, "quantity shipped")?;
            if quantity < 0 {
                return Err(format!("quantity shipped {quantity} is negative"));
            }
            Ok((quantity > 0).then(|| Movement::Shipped {
                sku,
                location: location.clone(),
                quantity,
            }))
        });
        match result {
            Ok(Some(movement)) => out.0.push(InventoryEvent {
                movement,
                reference: Some(advice.order_number.to_string()),
            }),
            Ok(None) => {}
            Err(message) => out.1.push(ConvertError {
                line: i + 1,
                message,
            }),
        }
    }
    out
}

fn push(
    out: &mut Converted,
    index: usize,
    result: Result<Movement, String>,
    reference: Option<String>,
) {
    match result {
        Ok(movement) => out.0.push(InventoryEvent {
            movement,
            reference,
        }),
        Err(message) => out.1.push(ConvertError {
            line: index + 1,
            message,
        }),
    }
}

/// An 850 as an order of `channel`: BEG03 is the channel's order id; each PO1 a line (PO101 its
/// number when it is one, else its position), our SKU from the mapping's qualifiers, a whole
/// quantity. Every line that cannot be mapped is an error; an order is built only when none is.
pub fn order_from_850(
    po: &crate::sets::PurchaseOrder,
    channel: &crossdock_core::catalog::ChannelId,
    mapping: &Mapping,
) -> Result<crossdock_core::order::Spec, Vec<ConvertError>> {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in po.lines.iter().enumerate() {
        let number = line
            .line
            .as_deref()
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(u32::try_from(i + 1).unwrap_or(u32::MAX));
        let result = mapping.sku(&line.ids, None).and_then(|sku| {
            let quantity = whole(&line.quantity, "quantity")?;
            let unit_price = line
                .unit_price
                .as_ref()
                .map(|p| crossdock_core::money::Amount::parse(p.as_str()))
                .transpose()
                .map_err(|why| format!("unit price (PO104): {why}"))?;
            Ok(crossdock_core::order::Line {
                line: number,
                sku,
                quantity,
                unit_price,
            })
        });
        match result {
            Ok(l) => lines.push(l),
            Err(message) => errors.push(ConvertError {
                line: i + 1,
                message,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    crossdock_core::order::Spec::new(channel.clone(), &po.number, lines)
        .map(|spec| spec.with_currency(po.currency.as_deref().map(str::to_owned)))
        .map_err(|message| vec![ConvertError { line: 0, message }])
}

/// A 940 asking a 3PL to ship order `order_id` (its lines under `VN` with our SKU, in eaches);
/// W0503 carries the channel's order id. Ship-to and carrier are for the caller to add.
pub fn shipping_order_940(order_id: &str, spec: &crossdock_core::order::Spec) -> ShippingOrder {
    ShippingOrder {
        status: "N".into(),
        order_number: order_id.into(),
        po_number: Some(spec.external_id.as_str().into()),
        parties: Vec::new(),
        references: Vec::new(),
        dates: Vec::new(),
        payment: None,
        transport: None,
        carrier: None,
        lines: spec
            .lines()
            .iter()
            .map(|l| ShippingOrderLine {
                line: Some(Text::from(l.line.to_string())),
                quantity: Decimal::from_integer(l.quantity),
                unit: "EA".into(),
                upc: None,
                ids: vec![ItemId {
                    qualifier: "VN".into(),
                    id: l.sku.as_str().into(),
                }]
                .into(),
                description: None,
                references: Vec::new(),
            })
            .collect(),
    }
}

/// An 855 acknowledging purchase order `po` line by line: `accepted` units of each line (by
/// PO101 line number) are acknowledged `IA`, the rest of the line `IB` (backordered) — or `IR`
/// when `backorder` is false. BAK02 is `AD` when everything is accepted, `AC` otherwise.
pub fn po_ack_855(
    po: &crate::sets::PurchaseOrder,
    accepted: &[(u32, i64)],
    backorder: bool,
    date: &str,
) -> PoAck {
    let mut changed = false;
    let lines = po
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let number = line
                .line
                .as_deref()
                .and_then(|l| l.parse::<u32>().ok())
                .unwrap_or(u32::try_from(i + 1).unwrap_or(u32::MAX));
            let ordered = line.quantity.to_integer().unwrap_or(0);
            let ok = accepted
                .iter()
                .find(|(n, _)| *n == number)
                .map_or(0, |(_, q)| *q)
                .clamp(0, ordered.max(0));
            let mut acks = Vec::new();
            if ok > 0 {
                acks.push(LineAck {
                    status: "IA".into(),
                    quantity: Some(Decimal::from_integer(ok)),
                    unit: Some(line.unit.clone()),
                    date_qualifier: None,
                    date: None,
                });
            }
            if ok < ordered {
                changed = true;
                acks.push(LineAck {
                    status: if backorder { "IB" } else { "IR" }.into(),
                    quantity: Some(Decimal::from_integer(ordered - ok)),
                    unit: Some(line.unit.clone()),
                    date_qualifier: None,
                    date: None,
                });
            }
            PoAckLine {
                line: line.line.clone(),
                quantity: line.quantity.clone(),
                unit: line.unit.clone(),
                unit_price: line.unit_price.clone(),
                price_basis: line.price_basis.clone(),
                ids: line.ids.clone(),
                acks,
            }
        })
        .collect();
    PoAck {
        purpose: "00".into(),
        ack_type: if changed { "AC" } else { "AD" }.into(),
        po_number: po.number.clone(),
        po_date: if po.date.is_empty() {
            date.into()
        } else {
            po.date.clone()
        },
        references: Vec::new(),
        dates: Vec::new(),
        parties: Vec::new(),
        lines,
    }
}

/// An 846 advertising what a channel may sell: one LIN per SKU (our SKU under `VP`), QTY `33`
/// (available for sale) in each.
pub fn advice_846(
    reference: &str,
    date: &str,
    time: &str,
    available: &[(Sku, i64)],
) -> InventoryAdvice {
    InventoryAdvice {
        purpose: "00".into(),
        report_type: "MM".into(),
        reference: reference.into(),
        date: date.into(),
        time: Some(time.into()),
        dates: Vec::new(),
        references: Vec::new(),
        parties: Vec::new(),
        items: available
            .iter()
            .enumerate()
            .map(|(i, (sku, quantity))| InventoryItem {
                line: Some(Text::from((i + 1).to_string())),
                ids: vec![ItemId {
                    qualifier: "VP".into(),
                    id: sku.as_str().into(),
                }]
                .into(),
                description: None,
                quantities: vec![ItemQuantity {
                    qualifier: "33".into(),
                    quantity: Decimal::from_integer((*quantity).max(0)),
                    unit: Some("EA".into()),
                }]
                .into(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{SetRead, TypedHandler, read_slice};
    use crate::sets::Document;

    struct Docs(Vec<Document>);
    impl TypedHandler for Docs {
        fn set(&mut self, set: &mut SetRead<'_>) {
            self.0.extend(set.document.take());
        }
    }

    fn sample(id: &str) -> Document {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../testdata/x12/{id}.edi"));
        let mut docs = Docs(Vec::new());
        read_slice(&std::fs::read(path).unwrap(), &mut docs);
        docs.0.remove(0)
    }

    fn mapping() -> Mapping {
        let mut m = Mapping::new(LocationId::parse("FASTLANE-WEST").unwrap());
        m.on_hand_qualifier = "33".into();
        m
    }

    fn kinds(events: &[InventoryEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{} {}", e.movement.kind(), e.data()))
            .collect()
    }

    #[test]
    fn warehouse_advices_become_movements() {
        let Document::ReceiptAdvice(r) = sample("944") else {
            panic!()
        };
        let (events, errors) = receipts_from_944(&r, &mapping());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            kinds(&events),
            [
                r#"inventory.received {"location":"FASTLANE-WEST","quantity":120,"reference":"RCV-2031","sku":"WIDGET-S"}"#,
                r#"inventory.received {"location":"FASTLANE-WEST","quantity":36,"reference":"RCV-2031","sku":"WIDGET-M-CASE"}"#,
            ]
        );

        let Document::AdjustmentAdvice(a) = sample("947") else {
            panic!()
        };
        let (events, errors) = adjustments_from_947(&a, &mapping());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events[0].data()["delta"], -3);
        assert_eq!(events[0].data()["reason"], "AU");
        assert_eq!(events[1].data()["delta"], 2);

        let Document::ShippingAdvice(s) = sample("945") else {
            panic!()
        };
        let (events, errors) = shipments_from_945(&s, &mapping());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data()["quantity"], 3);
        assert_eq!(events[1].data()["reference"], "SO-55001");

        let Document::InventoryAdvice(i) = sample("846") else {
            panic!()
        };
        let (events, errors) = counts_from_846(&i, &mapping());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events[0].data()["on_hand"], 118);
        assert_eq!(events[0].data()["as_of"], "2026-11-26T06:00:00Z");
        assert_eq!(events[1].data()["on_hand"], 0);
    }

    #[test]
    fn every_converted_event_is_accepted_by_the_core() {
        for id in ["846", "944", "945", "947"] {
            let events = match sample(id) {
                Document::InventoryAdvice(d) => counts_from_846(&d, &mapping()).0,
                Document::ReceiptAdvice(d) => receipts_from_944(&d, &mapping()).0,
                Document::ShippingAdvice(d) => shipments_from_945(&d, &mapping()).0,
                Document::AdjustmentAdvice(d) => adjustments_from_947(&d, &mapping()).0,
                _ => unreachable!(),
            };
            for event in events {
                let mut errors = Vec::new();
                let back = Movement::parse(
                    event.movement.kind(),
                    Some(&event.data()),
                    "/data",
                    &mut errors,
                );
                assert_eq!(back, Some(event.movement), "{id}: {errors:?}");
            }
        }
    }

    #[test]
    fn unmappable_lines_are_errors_with_their_line() {
        let Document::ReceiptAdvice(mut r) = sample("944") else {
            panic!()
        };
        r.lines[1].ids.clear();
        r.lines[0].quantity = Decimal::parse("1.5").unwrap();
        let (events, errors) = receipts_from_944(&r, &mapping());
        assert!(events.is_empty());
        assert_eq!(errors[0].line, 1);
        assert!(
            errors[0].message.contains("not a whole number"),
            "{}",
            errors[0]
        );
        assert_eq!(errors[1].line, 2);
        assert!(errors[1].message.contains("no item id"), "{}", errors[1]);
    }

    #[test]
    fn a_purchase_order_becomes_an_order() {
        let Document::PurchaseOrder(po) = sample("850") else {
            panic!()
        };
        let mut m = mapping();
        m.sku_qualifiers = vec!["VP".into()];
        let channel = crossdock_core::catalog::ChannelId::parse("acme-edi").unwrap();
        let spec = order_from_850(&po, &channel, &m).unwrap();
        assert_eq!(spec.external_id, "PO-48213");
        let lines: Vec<_> = spec
            .lines()
            .iter()
            .map(|l| (l.line, l.sku.as_str(), l.quantity))
            .collect();
        assert_eq!(lines, [(1, "WIDGET-S", 24), (2, "WIDGET-M-CASE", 6)]);

        let mut broken = po.clone();
        broken.lines[1].quantity = Decimal::parse("2.5").unwrap();
        broken.lines[0].ids.clear();
        let errors = order_from_850(&broken, &channel, &m).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn an_order_becomes_a_940_and_a_purchase_order_its_855() {
        let Document::PurchaseOrder(po) = sample("850") else {
            panic!()
        };
        let mut m = mapping();
        m.sku_qualifiers = vec!["VP".into()];
        let channel = crossdock_core::catalog::ChannelId::parse("acme-edi").unwrap();
        let spec = order_from_850(&po, &channel, &m).unwrap();
        let w = shipping_order_940("o-77", &spec);
        assert_eq!(
            (w.order_number.as_str(), w.po_number.as_deref()),
            ("o-77", Some("PO-48213"))
        );
        assert_eq!(w.lines[1].quantity.as_str(), "6");
        assert_eq!(w.lines[1].ids[0].id, "WIDGET-M-CASE");

        let ack = po_ack_855(&po, &[(1, 24), (2, 4)], true, "20261126");
        assert_eq!(
            (ack.ack_type.as_str(), ack.po_number.as_str()),
            ("AC", "PO-48213")
        );
        let statuses: Vec<Vec<(String, String)>> = ack
            .lines
            .iter()
            .map(|l| {
                l.acks
                    .iter()
                    .map(|a| {
                        (
                            a.status.to_string(),
                            a.quantity.as_ref().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            statuses,
            [
                vec![("IA".to_string(), "24".to_string())],
                vec![
                    ("IA".to_string(), "4".to_string()),
                    ("IB".to_string(), "2".to_string())
                ]
            ]
        );
        // Both write as valid sets and read back the same.
        for doc in [Document::ShippingOrder(w), Document::PoAck(ack)] {
            let mut out = Vec::new();
            let mut writer =
                crate::writer::SegmentWriter::new(&mut out, crate::Delimiters::default(), false);
            doc.write(&mut writer).unwrap();
            let spans: Vec<(usize, usize)> = {
                let mut v = Vec::new();
                let mut start = 0;
                for (i, b) in out.iter().enumerate() {
                    if *b == b'~' {
                        v.push((start, i));
                        start = i + 1;
                    }
                }
                v
            };
            let segments: Vec<crate::Segment<'_>> = spans
                .iter()
                .map(|&(s, e)| {
                    crate::Segment::new(&out[s..e], s as u64, crate::Delimiters::default())
                })
                .collect();
            let mut problems = Vec::new();
            let back = crate::sets::read(
                doc.id(),
                &segments,
                &crate::Position::default(),
                &mut problems,
            );
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(back.as_ref(), Some(&doc));
        }
    }

    #[test]
    fn availability_becomes_an_846_that_reads_back() {
        let advice = advice_846(
            "AVAIL-1",
            "20261126",
            "1200",
            &[
                (Sku::parse("WIDGET-S").unwrap(), 7),
                (Sku::parse("WIDGET-M").unwrap(), -2),
            ],
        );
        let mut m = mapping();
        m.on_hand_qualifier = "33".into();
        let (events, errors) = counts_from_846(&advice, &m);
        assert!(errors.is_empty());
        assert_eq!(events[0].data()["on_hand"], 7);
        assert_eq!(events[1].data()["on_hand"], 0);
    }
}
