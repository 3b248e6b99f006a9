//! 997 Functional Acknowledgment: whether each set of a functional group was accepted.

use serde::Serialize;

use crate::text::Text;

use super::TransactionSet;
use super::common::{SetReader, o};
use crate::writer::{SegmentWriter, WriteError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionalAck {
    /// AK101: the acknowledged group's functional id (GS01).
    pub functional_id: Text,
    /// AK102: the acknowledged group's control number (GS06).
    pub group_control: Text,
    /// AK103: the acknowledged group's version (GS08), 5010 only.
    pub version: Option<Text>,
    pub sets: Vec<SetAck>,
    /// AK901: `A` accepted, `E` accepted with errors, `P` partially accepted, `R` rejected.
    pub status: Text,
    /// AK902..AK904: sets included (GE01), received and accepted.
    pub included: u64,
    pub received: u64,
    pub accepted: u64,
    /// AK905..AK909.
    pub codes: Vec<Text>,
}

/// The AK2 loop: one acknowledged set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetAck {
    /// AK201: ST01.
    pub id: Text,
    /// AK202: ST02.
    pub control: Text,
    pub segments: Vec<SegmentError>,
    /// AK501: `A`, `E`, `M`, `R`, `W`, `X`.
    pub status: Text,
    /// AK502..AK506.
    pub codes: Vec<Text>,
}

/// AK3: a segment in error, and its elements in error (AK4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentError {
    pub id: Text,
    /// AK302: the segment's position in the set (ST = 1).
    pub position: u64,
    pub loop_id: Option<Text>,
    pub code: Option<Text>,
    pub elements: Vec<ElementError>,
}

/// AK4: an element in error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElementError {
    /// AK401: the element's position in the segment.
    pub position: u64,
    pub reference: Option<Text>,
    pub code: Text,
    /// AK404: a copy of the bad value.
    pub value: Option<Text>,
}

const GROUP_STATUS: &[&str] = &["A", "E", "M", "P", "R", "W", "X"];

impl TransactionSet for FunctionalAck {
    const ID: &'static str = "997";
    const FUNCTIONAL_ID: &'static str = "FA";

    fn read(r: &mut SetReader<'_, '_>) -> Option<Self> {
        r.known(&["AK1", "AK2", "AK3", "AK4", "AK5", "AK9"]);
        let mut ack = {
            let mut f = r.require("AK1")?;
            FunctionalAck {
                functional_id: f.text(1, true),
                group_control: f.text(2, true),
                version: f.opt(3),
                sets: Vec::new(),
                status: Text::default(),
                included: 0,
                received: 0,
                accepted: 0,
                codes: Vec::new(),
            }
        };
        while let Some(mut f) = r.take("AK2") {
            let mut set = SetAck {
                id: f.text(1, true),
                control: f.text(2, true),
                segments: Vec::new(),
                status: Text::default(),
                codes: Vec::new(),
            };
            while let Some(mut f) = r.take("AK3") {
                let mut segment = SegmentError {
                    id: f.text(1, true),
                    position: f.count(2, true).unwrap_or(0),
                    loop_id: f.opt(3),
                    code: f.opt(4),
                    elements: Vec::new(),
                };
                while let Some(mut f) = r.take("AK4") {
                    let position = f.text(1, true);
                    let position = position
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    segment.elements.push(ElementError {
                        position,
                        reference: f.opt(2),
                        code: f.text(3, true),
                        value: f.opt(4),
                    });
                }
                set.segments.push(segment);
            }
            if let Some(mut f) = r.require("AK5") {
                set.status = f.code(1, true, GROUP_STATUS);
                set.codes = f
                    .all_from(2)
                    .into_iter()
                    .filter(|c| !c.is_empty())
                    .collect();
            }
            ack.sets.push(set);
        }
        if let Some(mut f) = r.require("AK9") {
            ack.status = f.code(1, true, GROUP_STATUS);
            ack.included = f.count(2, true).unwrap_or(0);
            ack.received = f.count(3, true).unwrap_or(0);
            ack.accepted = f.count(4, true).unwrap_or(0);
            ack.codes = f
                .all_from(5)
                .into_iter()
                .filter(|c| !c.is_empty())
                .collect();
        }
        Some(ack)
    }

    fn write(&self, w: &mut SegmentWriter<'_>) -> Result<(), WriteError> {
        w.segment(
            "AK1",
            &[&self.functional_id, &self.group_control, o(&self.version)],
        )?;
        for set in &self.sets {
            w.segment("AK2", &[&set.id, &set.control])?;
            for segment in &set.segments {
                w.segment(
                    "AK3",
                    &[
                        segment.id.as_str(),
                        &segment.position.to_string(),
                        o(&segment.loop_id),
                        o(&segment.code),
                    ],
                )?;
                for element in &segment.elements {
                    w.segment(
                        "AK4",
                        &[
                            element.position.to_string().as_str(),
                            o(&element.reference),
                            &element.code,
                            o(&element.value),
                        ],
                    )?;
                }
            }
            let mut ak5 = vec![set.status.as_str()];
            ak5.extend(set.codes.iter().map(Text::as_str));
            w.segment("AK5", &ak5)?;
        }
        let counts = [
            self.included.to_string(),
            self.received.to_string(),
            self.accepted.to_string(),
        ];
        let mut ak9 = vec![self.status.as_str()];
        ak9.extend(counts.iter().map(String::as_str));
        ak9.extend(self.codes.iter().map(Text::as_str));
        w.segment("AK9", &ak9)
    }
}
