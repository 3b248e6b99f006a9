//! Properties of the EDI engine over generated input: typed sets write → read → write byte for
//! byte; no input makes it panic; mutated counts and control numbers are found, and the 997
//! rejects exactly the sets they touch.

mod common;

use common::{collect, own_samples, rewrite};
use crossdock_edi::ack::AckBuilder;
use crossdock_edi::read::read_slice;
use crossdock_edi::sets::*;
use crossdock_edi::writer::{EnvelopeOptions, InterchangeWriter};
use crossdock_edi::{Delimiters, List, Text};
use proptest::prelude::*;

/// A small deterministic generator, driven by a seed proptest picks (and shrinks).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
    fn word(&mut self, min: usize, max: usize) -> Text {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -./#&";
        let len = min + self.below((max - min + 1) as u64) as usize;
        let mut s: String = (0..len)
            .map(|_| char::from(ALPHABET[self.below(ALPHABET.len() as u64) as usize]))
            .collect();
        if s.trim().is_empty() {
            s = "X".into();
        }
        Text::from(s)
    }
    fn opt(&mut self) -> Option<Text> {
        self.coin().then(|| self.word(1, 12))
    }
    fn pick(&mut self, from: &[&str]) -> Text {
        Text::from(from[self.below(from.len() as u64) as usize])
    }
    fn date(&mut self) -> Text {
        Text::from(format!(
            "20{:02}{:02}{:02}",
            self.below(99),
            1 + self.below(12),
            1 + self.below(28)
        ))
    }
    fn decimal(&mut self) -> Decimal {
        let text = match self.below(3) {
            0 => format!("{}", self.below(100_000)),
            1 => format!("{}.{:02}", self.below(10_000), self.below(100)),
            _ => format!("-{}", 1 + self.below(500)),
        };
        Decimal::parse(&text).unwrap()
    }
    fn count(&mut self, max: u64) -> usize {
        self.below(max + 1) as usize
    }
    fn ids(&mut self, max: u64) -> List<ItemId> {
        (0..self.count(max))
            .map(|_| ItemId {
                qualifier: self.pick(&["UP", "VN", "VP", "BP", "SK", "IN"]),
                id: self.word(1, 20),
            })
            .collect()
    }
    fn references(&mut self) -> Vec<Reference> {
        (0..self.count(2))
            .map(|_| Reference {
                qualifier: self.pick(&["DP", "PO", "BM", "CN", "IA"]),
                value: self.word(1, 15),
            })
            .collect()
    }
    fn dates(&mut self) -> Vec<DateRef> {
        (0..self.count(2))
            .map(|_| DateRef {
                qualifier: self.pick(&["002", "010", "011", "037"]),
                date: self.date(),
            })
            .collect()
    }
    fn parties(&mut self) -> Vec<Party> {
        (0..self.count(2))
            .map(|_| Party {
                role: self.pick(&["ST", "BT", "SF", "WH", "VN"]),
                name: self.opt(),
                id_qualifier: Some(Text::from("92")),
                id: Some(self.word(1, 10)),
                address: (0..self.count(2)).map(|_| self.word(1, 20)).collect(),
                city: self.opt(),
                state: self.opt(),
                postal_code: self.opt(),
                country: self.opt(),
            })
            .collect()
    }
}

fn document(g: &mut Gen, kind: u64) -> Document {
    match kind {
        0 => Document::PurchaseOrder(PurchaseOrder {
            purpose: g.pick(&["00", "01", "05"]),
            order_type: g.pick(&["SA", "DS"]),
            number: g.word(1, 22),
            release: g.opt(),
            date: g.date(),
            currency: g.coin().then(|| Text::from("USD")),
            references: g.references(),
            dates: g.dates(),
            parties: g.parties(),
            lines: (0..1 + g.count(5))
                .map(|_| PurchaseOrderLine {
                    line: g.opt(),
                    quantity: g.decimal(),
                    unit: g.pick(&["EA", "CA"]),
                    unit_price: g.coin().then(|| g.decimal()),
                    price_basis: g.opt(),
                    ids: g.ids(3),
                    description: g.opt(),
                })
                .collect(),
        }),
        1 => Document::InventoryAdvice(InventoryAdvice {
            purpose: g.pick(&["00", "05"]),
            report_type: g.pick(&["DD", "MM", "SI"]),
            reference: g.word(1, 20),
            date: g.date(),
            time: g.coin().then(|| Text::from("1200")),
            dates: g.dates(),
            references: g.references(),
            parties: g.parties(),
            items: (0..g.count(5))
                .map(|_| InventoryItem {
                    line: g.opt(),
                    ids: g.ids(3),
                    description: g.opt(),
                    quantities: (0..g.count(3))
                        .map(|_| ItemQuantity {
                            qualifier: g.pick(&["33", "17", "02"]),
                            quantity: g.decimal(),
                            unit: g.opt(),
                        })
                        .collect(),
                })
                .collect(),
        }),
        2 => Document::PoAck(PoAck {
            purpose: g.pick(&["00", "06"]),
            ack_type: g.pick(&["AC", "AD", "RJ"]),
            po_number: g.word(1, 22),
            po_date: g.date(),
            references: g.references(),
            dates: g.dates(),
            parties: g.parties(),
            lines: (0..g.count(4))
                .map(|_| PoAckLine {
                    line: g.opt(),
                    quantity: g.decimal(),
                    unit: g.pick(&["EA", "CA"]),
                    unit_price: g.coin().then(|| g.decimal()),
                    price_basis: g.opt(),
                    ids: g.ids(2),
                    acks: (0..g.count(2))
                        .map(|_| LineAck {
                            status: g.pick(&["IA", "IB", "IR", "IQ"]),
                            quantity: g.coin().then(|| g.decimal()),
                            unit: g.opt(),
                            date_qualifier: g.opt(),
                            date: g.coin().then(|| g.date()),
                        })
                        .collect(),
                })
                .collect(),
        }),
        3 => {
            let levels = (0..1 + g.count(6))
                .map(|i| HierarchyLevel {
                    id: Text::from((i + 1).to_string()),
                    parent: (i > 0).then(|| Text::from(i.to_string())),
                    level: g.pick(&["S", "O", "T", "P", "I"]),
                    packaging: g.opt(),
                    packages: g.coin().then(|| g.decimal()),
                    weight: g.coin().then(|| g.decimal()),
                    weight_unit: g.opt(),
                    carrier: g.opt(),
                    routing: g.opt(),
                    references: g.references(),
                    dates: g.dates(),
                    parties: g.parties(),
                    po_number: g.opt(),
                    marks: g.references(),
                    ids: g.ids(2),
                    shipped: g.coin().then(|| g.decimal()),
                    unit: g.opt(),
                    description: g.opt(),
                })
                .collect();
            Document::ShipNotice(ShipNotice {
                purpose: g.pick(&["00", "05"]),
                shipment_id: g.word(1, 20),
                date: g.date(),
                time: Text::from("1630"),
                structure: g.coin().then(|| Text::from("0001")),
                dates: g.dates(),
                levels,
            })
        }
        4 => Document::Invoice(Invoice {
            date: g.date(),
            number: g.word(1, 22),
            po_date: g.coin().then(|| g.date()),
            po_number: g.opt(),
            currency: g.coin().then(|| Text::from("USD")),
            references: g.references(),
            parties: g.parties(),
            dates: g.dates(),
            lines: (0..g.count(4))
                .map(|_| InvoiceLine {
                    line: g.opt(),
                    quantity: g.decimal(),
                    unit: g.pick(&["EA", "CA"]),
                    unit_price: g.decimal(),
                    price_basis: g.opt(),
                    ids: g.ids(2),
                    description: g.opt(),
                })
                .collect(),
            total_cents: g.decimal(),
        }),
        5 => Document::ShippingOrder(ShippingOrder {
            status: g.pick(&["N", "F", "R"]),
            order_number: g.word(1, 22),
            po_number: g.opt(),
            parties: g.parties(),
            references: g.references(),
            dates: g.dates(),
            payment: g.opt(),
            transport: g.opt(),
            carrier: g.opt(),
            lines: (0..1 + g.count(4))
                .map(|_| ShippingOrderLine {
                    line: g.opt(),
                    quantity: g.decimal(),
                    unit: g.pick(&["EA", "CA"]),
                    upc: g.opt(),
                    ids: g.ids(1),
                    description: g.opt(),
                    references: g.references(),
                })
                .collect(),
        }),
        6 => Document::ReceiptAdvice(ReceiptAdvice {
            reporting: g.pick(&["F", "P"]),
            date: g.date(),
            receipt_number: g.word(1, 22),
            order_number: g.opt(),
            parties: g.parties(),
            references: g.references(),
            dates: g.dates(),
            lines: (0..1 + g.count(4))
                .map(|_| ReceiptLine {
                    line: g.opt(),
                    quantity: g.decimal(),
                    unit: g.pick(&["EA", "CA"]),
                    upc: g.opt(),
                    ids: g.ids(1),
                    description: g.opt(),
                    references: g.references(),
                })
                .collect(),
        }),
        7 => Document::ShippingAdvice(ShippingAdvice {
            reporting: g.pick(&["F", "P"]),
            order_number: g.word(1, 22),
            date: g.date(),
            shipment_id: g.opt(),
            po_number: g.opt(),
            parties: g.parties(),
            references: g.references(),
            dates: g.dates(),
            transport: g.opt(),
            carrier: g.opt(),
            lines: (0..1 + g.count(4))
                .map(|_| ShippingAdviceLine {
                    line: g.opt(),
                    marks: g.references(),
                    status: g.pick(&["CC", "PR", "CP"]),
                    ordered: g.coin().then(|| g.decimal()),
                    shipped: g.decimal(),
                    difference: g.coin().then(|| g.decimal()),
                    unit: g.pick(&["EA", "CA"]),
                    upc: g.opt(),
                    ids: g.ids(1),
                    references: g.references(),
                })
                .collect(),
        }),
        8 => Document::AdjustmentAdvice(AdjustmentAdvice {
            date: g.date(),
            adjustment_number: g.word(1, 22),
            depositor_number: g.opt(),
            parties: g.parties(),
            references: g.references(),
            dates: g.dates(),
            lines: (0..1 + g.count(4))
                .map(|_| AdjustmentLine {
                    line: g.opt(),
                    reason: g.pick(&["AU", "07", "AC", "56"]),
                    quantity: g.decimal(),
                    unit: g.pick(&["EA", "CA"]),
                    upc: g.opt(),
                    ids: g.ids(1),
                    description: g.opt(),
                    references: g.references(),
                })
                .collect(),
        }),
        _ => Document::FunctionalAck(FunctionalAck {
            functional_id: g.pick(&["PO", "IN", "SH"]),
            group_control: Text::from(g.below(1_000_000).to_string()),
            version: g.coin().then(|| Text::from("005010")),
            sets: (0..g.count(3))
                .map(|_| SetAck {
                    id: g.pick(&["850", "810", "856"]),
                    control: Text::from(format!("{:04}", g.below(10_000))),
                    segments: (0..g.count(2))
                        .map(|_| SegmentError {
                            id: g.pick(&["PO1", "BEG", "N1"]),
                            position: 1 + g.below(100),
                            loop_id: g.coin().then(|| Text::from("PO1")),
                            code: g.coin().then(|| Text::from("8")),
                            elements: (0..g.count(2))
                                .map(|_| ElementError {
                                    position: 1 + g.below(20),
                                    reference: g.coin().then(|| Text::from("330")),
                                    code: g.pick(&["1", "6", "7"]),
                                    value: g.opt(),
                                })
                                .collect(),
                        })
                        .collect(),
                    status: g.pick(&["A", "E", "R"]),
                    codes: (0..g.count(2))
                        .map(|_| g.pick(&["2", "3", "4", "5"]))
                        .collect(),
                })
                .collect(),
            status: g.pick(&["A", "E", "P", "R"]),
            included: g.below(10),
            received: g.below(10),
            accepted: g.below(10),
            codes: (0..g.count(2))
                .map(|_| g.pick(&["2", "3", "4", "5"]))
                .collect(),
        }),
    }
}

fn delimiters(g: &mut Gen) -> Delimiters {
    match g.below(3) {
        0 => Delimiters::default(),
        1 => Delimiters {
            element: b'|',
            component: b'>',
            repetition: None,
            segment: b'\n',
        },
        _ => Delimiters {
            element: 0x1D,
            component: b'\\',
            repetition: Some(b'!'),
            segment: 0x1C,
        },
    }
}

/// An interchange of `sets` generated documents of one kind in one group.
fn interchange(g: &mut Gen, kind: u64, sets: usize) -> (Vec<u8>, Vec<Document>) {
    let d = delimiters(g);
    let options = EnvelopeOptions {
        delimiters: d,
        version: if d.repetition.is_some() {
            "00501"
        } else {
            "00401"
        }
        .into(),
        line_breaks: g.coin(),
        ..EnvelopeOptions::default()
    };
    let docs: Vec<Document> = (0..sets).map(|_| document(g, kind)).collect();
    let mut w = InterchangeWriter::new(options, 1 + g.below(999_999_998) as u32).unwrap();
    w.begin_group(docs[0].functional_id(), 1 + g.below(1_000_000) as u32)
        .unwrap();
    for (i, doc) in docs.iter().enumerate() {
        w.set(doc.id(), &format!("{:04}", i + 1), |s| doc.write(s))
            .unwrap();
    }
    (w.finish().unwrap(), docs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn write_read_write_is_byte_stable_for_every_set(seed in 1u64.., kind in 0u64..10, sets in 1usize..4) {
        let mut g = Gen(seed);
        let (bytes, _) = interchange(&mut g, kind, sets);
        let read = collect(&bytes);
        prop_assert!(read.all_problems().is_empty(), "{:#?}\n{}", read.all_problems(), String::from_utf8_lossy(&bytes));
        prop_assert_eq!(read.sets.len(), sets);
        let line_breaks = bytes.get(crossdock_edi::delimiters::ISA_LEN) == Some(&b'\n');
        let again = rewrite(&read.sets, line_breaks);
        prop_assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_isa_never_panic(tail in proptest::collection::vec(prop_oneof![
        Just(b'*'), Just(b'~'), Just(b'\n'), Just(b'S'), Just(b'T'), Just(b'E'), Just(b'G'), Just(b'I'),
        Just(b'A'), Just(b'1'), Just(b'0'), Just(b'>'), any::<u8>()], 0..400)) {
        let mut bytes = b"ISA*00*          *00*          *ZZ*A              *ZZ*B              *240101*1200*U*00401*000000001*0*P*>~".to_vec();
        bytes.extend_from_slice(&tail);
        exercise(&bytes);
    }

    #[test]
    fn mutated_valid_files_never_panic(seed in 1u64.., kind in 0u64..10, edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 1..8)) {
        let mut g = Gen(seed);
        let (mut bytes, _) = interchange(&mut g, kind, 2);
        for (at, byte, how) in edits {
            let at = usize::from(at) % (bytes.len() + 1);
            match how {
                0 => bytes.truncate(at),
                1 if at < bytes.len() => bytes[at] = byte,
                2 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        exercise(&bytes);
    }

    #[test]
    fn parallel_reading_sees_what_sequential_reading_sees(seed in 1u64.., kind in 0u64..10, sets in 1usize..6, cut in any::<u16>(), workers in 1usize..4) {
        let mut g = Gen(seed);
        let (mut bytes, _) = interchange(&mut g, kind, sets);
        // Two interchanges, the second one cut short somewhere.
        let (second, _) = interchange(&mut g, (kind + 1) % 10, sets);
        bytes.extend_from_slice(&second[..usize::from(cut) % (second.len() + 1)]);
        let mut sequential = common::Collect::default();
        crossdock_edi::read::read_stream(&bytes[..], &mut sequential).unwrap();
        let mut parallel = common::Collect::default();
        crossdock_edi::read::read_stream_parallel(&bytes[..], &mut parallel, workers).unwrap();
        prop_assert_eq!(format!("{:?}", sequential.sets), format!("{:?}", parallel.sets));
        prop_assert_eq!(format!("{:?}", sequential.other), format!("{:?}", parallel.other));
    }

    #[test]
    fn mutated_set_bodies_keep_the_typed_round_trip(seed in 1u64.., kind in 0u64..10, edits in proptest::collection::vec((any::<u16>(), prop_oneof![Just(b'*'), Just(b'~'), Just(b'0'), Just(b'A'), any::<u8>()], 0u8..4), 0..6)) {
        let mut g = Gen(seed);
        let doc = document(&mut g, kind);
        let mut body = Vec::new();
        doc.write(&mut crossdock_edi::writer::SegmentWriter::new(&mut body, Delimiters::default(), false)).unwrap();
        for (at, byte, how) in edits {
            let at = usize::from(at) % (body.len() + 1);
            match how {
                0 => body.truncate(at),
                1 if at < body.len() => body[at] = byte,
                2 => body.insert(at, byte),
                _ if at < body.len() => { body.remove(at); }
                _ => {}
            }
        }
        crossdock_edi::harness::set(doc.id(), &body);
    }
}

fn exercise(bytes: &[u8]) {
    crossdock_edi::harness::input(bytes);
}

/// Five 850s in one group; `mutate` edits the text; returns the 997's AK5 statuses and AK9.
fn ack_after(mutate: impl Fn(&str) -> String) -> (Vec<String>, String, Vec<String>) {
    let po = std::fs::read_to_string(own_samples().join("850.edi")).unwrap();
    let (head, rest) = po.split_once("ST*850*0001~\n").unwrap();
    let (body, _) = rest.split_once("SE*14*0001~\n").unwrap();
    let head = head.replace("*000000101*", "*000000777*");
    let mut text = head.replace("*101*X*", "*555*X*");
    for i in 1..=5 {
        text.push_str(&format!("ST*850*{i:04}~\n{body}SE*14*{i:04}~\n"));
    }
    text.push_str("GE*5*555~\nIEA*1*000000777~\n");
    let text = mutate(&text);
    let mut builder = AckBuilder::default();
    read_slice(text.as_bytes(), &mut builder);
    let ack = &builder.acks[0].ack;
    (
        ack.sets
            .iter()
            .map(|s| format!("{}{:?}", s.status, s.codes))
            .collect(),
        format!(
            "{} {} {} {}",
            ack.status, ack.included, ack.received, ack.accepted
        ),
        ack.codes.iter().map(ToString::to_string).collect(),
    )
}

#[test]
fn mutated_counts_and_control_numbers_reject_exactly_the_sets_they_touch() {
    let clean = ack_after(str::to_string);
    assert_eq!(clean.0, vec!["A[]"; 5]);
    assert_eq!(clean.1, "A 5 5 5");

    // SE01 of set 3 says 15: that set is rejected with AK5 code 4, the others accepted.
    let (sets, group, _) = ack_after(|t| t.replace("SE*14*0003~", "SE*15*0003~"));
    assert_eq!(sets, ["A[]", "A[]", "R[\"4\"]", "A[]", "A[]"]);
    assert_eq!(group, "P 5 5 4");

    // SE02 of set 2 does not match its ST02: AK5 code 3.
    let (sets, _, _) = ack_after(|t| t.replace("SE*14*0002~", "SE*14*0009~"));
    assert_eq!(sets, ["A[]", "R[\"3\"]", "A[]", "A[]", "A[]"]);

    // Set 5 loses its SE: AK5 code 2 for it alone.
    let (sets, _, _) = ack_after(|t| t.replace("SE*14*0005~\n", ""));
    assert_eq!(sets, ["A[]", "A[]", "A[]", "A[]", "R[\"2\"]"]);

    // GE01 wrong: the group is rejected with AK9 code 5; GE02 wrong: code 4.
    let (_, group, codes) = ack_after(|t| t.replace("GE*5*555~", "GE*4*555~"));
    assert_eq!((group.as_str(), codes), ("R 4 5 5", vec!["5".to_string()]));
    let (_, group, codes) = ack_after(|t| t.replace("GE*5*555~", "GE*5*556~"));
    assert_eq!((group.as_str(), codes), ("R 5 5 5", vec!["4".to_string()]));
}

#[test]
fn a_wrong_interchange_trailer_is_reported_by_validate() {
    let po = std::fs::read_to_string(own_samples().join("850.edi")).unwrap();
    for (from, to) in [
        ("IEA*1*000000101~", "IEA*1*000000102~"),
        ("IEA*1*000000101~", "IEA*2*000000101~"),
    ] {
        let c = collect(po.replace(from, to).as_bytes());
        let errors = c.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].level, crossdock_edi::Level::Interchange);
        assert_eq!(errors[0].position.segment_id.as_deref(), Some("IEA"));
    }
}
