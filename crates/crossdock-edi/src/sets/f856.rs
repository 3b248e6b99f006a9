//! 856 Ship Notice/Manifest (ASN): what left, how, in which packages, for which orders.
//!
//! The HL hierarchy is kept as written — a flat list of levels, each naming its parent — with
//! the segments of each level: shipment (`S`: TD1, TD5, REF, DTM, N1), order (`O`: PRF), tare
//! and pack (`T`, `P`: MAN) and item (`I`: LIN, SN1, PID).

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
pub struct ShipNotice {
    /// BSN01.
    pub purpose: Text,
    /// BSN02: the shipment id.
    pub shipment_id: Text,
    /// BSN03.
    pub date: Text,
    /// BSN04.
    pub time: Text,
    /// BSN05: the hierarchical structure code (`0001` shipment/order/pack/item, …).
    pub structure: Option<Text>,
    pub dates: Vec<DateRef>,
    pub levels: Vec<HierarchyLevel>,
}

/// One HL level and what it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HierarchyLevel {
    /// HL01.
    pub id: Text,
    /// HL02.
    pub parent: Option<Text>,
    /// HL03: `S` shipment, `O` order, `T` tare, `P` pack, `I` item.
    pub level: Text,
    /// TD101 and TD102: packaging code (`CTN25`, `PLT94`, …) and count.
    pub packaging: Option<Text>,
    pub packages: Option<Decimal>,
    /// TD107 and TD108: gross weight and its unit.
    pub weight: Option<Decimal>,
    pub weight_unit: Option<Text>,
    /// TD503: carrier SCAC; TD505: routing or service.
    pub carrier: Option<Text>,
    pub routing: Option<Text>,
    pub references: Vec<Reference>,
    pub dates: Vec<DateRef>,
    pub parties: Vec<Party>,
    /// PRF01: the purchase order number.
    pub po_number: Option<Text>,
    /// MAN: marks (`GM` SSCC-18, `CP` carrier package id / tracking, …).
    pub marks: Vec<Reference>,
    /// LIN02/LIN03 onwards.
    pub ids: List<ItemId>,
    /// SN102 and SN103: units shipped and their unit.
    pub shipped: Option<Decimal>,
    pub unit: Option<Text>,
    pub description: Option<Text>,
}

impl ShipNotice {
    /// The item levels.
    pub fn items(&self) -> impl Iterator<Item = &HierarchyLevel> {
        self.levels.iter().filter(|l| l.level == "I")
    }

    /// The purchase order an item level belongs to: the nearest ancestor with a PRF.
    pub fn po_number_of<'a>(&'a self, level: &'a HierarchyLevel) -> Option<&'a str> {
        let mut current = level;
        for _ in 0..self.levels.len() {
            if let Some(po) = &current.po_number {
                return Some(po);
            }
            let parent = current.parent.as_deref()?;
            current = self.levels.iter().find(|l| l.id == parent)?;
        }
        None
    }
}

const LEVEL_SEGMENTS: &[&str] = &[
    "TD1", "TD5", "REF", "DTM", "N1", "PRF", "MAN", "LIN", "SN1", "PID",
];

impl TransactionSet for ShipNotice {
    const ID: &'static str = "856";
    const FUNCTIONAL_ID: &'static str = "SH";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&[
            "BSN", "DTM", "HL", "TD1", "TD5", "REF", "N1", "N3", "N4", "PRF", "MAN", "LIN", "SN1",
            "PID", "CTT",
        ]);
        let mut notice = {
            let mut f = r.require("BSN")?;
            ShipNotice {
                purpose: f.text(1, true),
                shipment_id: f.text(2, true),
                date: f.date(3, true),
                time: f.text(4, true),
                structure: f.opt(5),
                dates: Vec::new(),
                levels: Vec::new(),
            }
        };
        notice.dates = r.dates("DTM");
        r.skip_until(&["HL", "CTT"]);
        while let Some(mut f) = r.take("HL") {
            let mut level = HierarchyLevel {
                id: f.text(1, true),
                parent: f.opt(2),
                level: f.text(3, true),
                ..HierarchyLevel::default()
            };
            loop {
                if let Some(mut f) = r.take("TD1") {
                    level.packaging = f.opt(1);
                    level.packages = f.decimal(2, false);
                    level.weight = f.decimal(7, false);
                    level.weight_unit = f.opt(8);
                } else if let Some(mut f) = r.take("TD5") {
                    level.carrier = f.opt(3);
                    level.routing = f.opt(5);
                } else if r.at("REF") {
                    level.references.extend(r.references("REF"));
                } else if r.at("DTM") {
                    level.dates.extend(r.dates("DTM"));
                } else if r.at("N1") {
                    level.parties.extend(r.parties());
                } else if let Some(mut f) = r.take("PRF") {
                    level.po_number = f.opt(1);
                } else if r.at("MAN") {
                    level.marks.extend(r.references("MAN"));
                } else if let Some(mut f) = r.take("LIN") {
                    level.ids = f.ids(2);
                } else if let Some(mut f) = r.take("SN1") {
                    level.shipped = f.decimal(2, true);
                    level.unit = f.opt(3);
                } else if let Some(mut f) = r.take("PID") {
                    level.description = f.opt(5);
                } else if r.done() || r.at("HL") || r.at("CTT") {
                    break;
                } else {
                    let mut stops = vec!["HL", "CTT"];
                    stops.extend_from_slice(LEVEL_SEGMENTS);
                    r.skip_until(&stops);
                }
            }
            notice.levels.push(level);
        }
        if notice.levels.is_empty() {
            r.missing("HL");
        }
        let _ = r.take("CTT");
        Some(notice)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "BSN",
            &[
                &self.purpose,
                &self.shipment_id,
                &self.date,
                &self.time,
                o(&self.structure),
            ],
        )?;
        write_dates(w, "DTM", &self.dates)?;
        for l in &self.levels {
            w.segment("HL", &[&l.id, o(&l.parent), &l.level])?;
            if !l.ids.is_empty() {
                w.segment("LIN", &with_ids(vec![""], &l.ids))?;
            }
            if let Some(shipped) = &l.shipped {
                w.segment("SN1", &["", shipped.as_str(), o(&l.unit)])?;
            }
            if let Some(po) = &l.po_number {
                w.segment("PRF", &[po])?;
            }
            if let Some(description) = &l.description {
                w.segment("PID", &["F", "", "", "", description])?;
            }
            if l.packaging.is_some() || l.packages.is_some() || l.weight.is_some() {
                w.segment(
                    "TD1",
                    &[
                        o(&l.packaging),
                        od(&l.packages),
                        "",
                        "",
                        "",
                        if l.weight.is_some() { "G" } else { "" },
                        od(&l.weight),
                        o(&l.weight_unit),
                    ],
                )?;
            }
            if l.carrier.is_some() || l.routing.is_some() {
                let qualifier = if l.carrier.is_some() { "2" } else { "" };
                w.segment("TD5", &["", qualifier, o(&l.carrier), "", o(&l.routing)])?;
            }
            write_references(w, "REF", &l.references)?;
            write_references(w, "MAN", &l.marks)?;
            write_dates(w, "DTM", &l.dates)?;
            write_parties(w, &l.parties)?;
        }
        w.segment("CTT", &[self.levels.len().to_string()])
    }
}
