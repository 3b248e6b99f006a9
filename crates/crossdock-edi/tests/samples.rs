//! crossdock's own hand-checked samples (`testdata/x12`, one per transaction set) and the public
//! real-world samples in `../shared/testdata/x12/real` (when that folder exists).

mod common;

use common::{collect, own_samples, rewrite, shared_samples};
use crossdock_edi::problem::{Level, set_code};
use crossdock_edi::read::read_stream;
use crossdock_edi::sets::Document;

const SETS: [&str; 10] = [
    "846", "850", "855", "856", "810", "940", "944", "945", "947", "997",
];

#[test]
fn every_own_sample_reads_clean_and_writes_back_byte_for_byte() {
    for id in SETS {
        let path = own_samples().join(format!("{id}.edi"));
        let bytes = std::fs::read(&path).unwrap();
        let c = collect(&bytes);
        assert!(c.all_problems().is_empty(), "{id}: {:#?}", c.all_problems());
        assert_eq!(c.sets.len(), 1, "{id}");
        let doc = c.sets[0]
            .document
            .as_ref()
            .unwrap_or_else(|| panic!("{id} is typed"));
        assert_eq!(doc.id(), id);
        assert_eq!(doc.functional_id(), c.sets[0].group.functional_id);
        let again = rewrite(&c.sets, true);
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&bytes),
            "{id}: the typed model writes the sample back unchanged"
        );
    }
}

#[test]
fn own_samples_hold_what_they_say() {
    let read = |id: &str| {
        let bytes = std::fs::read(own_samples().join(format!("{id}.edi"))).unwrap();
        collect(&bytes).sets.remove(0).document.unwrap()
    };
    let Document::PurchaseOrder(po) = read("850") else {
        panic!()
    };
    assert_eq!(
        (po.number.as_str(), po.currency.as_deref()),
        ("PO-48213", Some("USD"))
    );
    assert_eq!(po.lines.len(), 2);
    assert_eq!(po.lines[1].quantity.to_integer(), Some(6));
    assert_eq!(po.lines[1].unit_price.as_ref().unwrap().as_str(), "48.00");
    assert_eq!(po.lines[0].ids[1].id, "WIDGET-S");
    assert_eq!(po.parties[0].postal_code.as_deref(), Some("44139"));

    let Document::ShipNotice(asn) = read("856") else {
        panic!()
    };
    let items: Vec<_> = asn.items().collect();
    assert_eq!(items.len(), 2);
    assert_eq!(asn.po_number_of(items[1]), Some("PO-48213"));
    assert_eq!(items[1].shipped.as_ref().unwrap().as_str(), "4");
    assert_eq!(asn.levels[0].carrier.as_deref(), Some("UPSN"));

    let Document::PoAck(ack) = read("855") else {
        panic!()
    };
    assert_eq!(ack.lines[1].acks.len(), 2);
    assert_eq!(ack.lines[1].acks[1].status, "IB");

    let Document::InventoryAdvice(inv) = read("846") else {
        panic!()
    };
    assert_eq!(inv.items[0].quantities[0].quantity.as_str(), "118");

    let Document::ShippingAdvice(sa) = read("945") else {
        panic!()
    };
    assert_eq!(sa.lines[1].shipped.as_str(), "3");
    assert_eq!(sa.carrier.as_deref(), Some("UPSN"));

    let Document::AdjustmentAdvice(adj) = read("947") else {
        panic!()
    };
    assert_eq!(adj.lines[0].quantity.to_integer(), Some(-3));

    let Document::FunctionalAck(fa) = read("997") else {
        panic!()
    };
    assert_eq!(
        (fa.functional_id.as_str(), fa.group_control.as_str()),
        ("IN", "104")
    );
}

/// What each public sample is known to get wrong (see its SOURCES.md); every other sample must
/// read without errors.
fn known_defects(name: &str) -> &'static [Level] {
    match name {
        "855-x12types-1.edi" | "856-stupidedi-1.edi" | "945-x12types-1.edi" => {
            &[Level::Set(set_code::SEGMENT_COUNT)]
        }
        "940-x12types-1.edi" => &[Level::Group(4), Level::Interchange],
        // 940-x12types-2: each W01 runs over a line break with no terminator; the line break
        // stays inside the element (it is data, not a terminator), so the counts work out.
        _ => &[],
    }
}

#[test]
fn public_samples_read_with_exactly_their_known_defects() {
    let Some(dir) = shared_samples() else {
        eprintln!("../shared/testdata/x12/real is not here; the public samples were not read");
        return;
    };
    let mut read = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "edi") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let c = collect(&bytes);
        assert!(!c.sets.is_empty(), "{name}: no sets read");
        let mut found: Vec<Level> = c
            .errors()
            .iter()
            .map(|p| p.level)
            .filter(|l| !matches!(l, Level::Element(_) | Level::Segment(_)))
            .collect();
        found.dedup();
        assert_eq!(found, known_defects(&name), "{name}: {:#?}", c.errors());
        for set in &c.sets {
            assert!(set.document.is_some(), "{name}: set {} typed", set.set.id);
        }
        // The streaming reader sees the same thing through a tiny buffer.
        let mut streamed = common::Collect::default();
        read_stream(std::io::Cursor::new(&bytes), &mut streamed).unwrap();
        assert_eq!(streamed.sets.len(), c.sets.len(), "{name}");
        read += 1;
    }
    assert!(read >= 16, "{read} samples read");
}
