//! 997 functional acknowledgments for the groups received: which sets are accepted, and for
//! each rejected one the segments (AK3) and elements (AK4) in error with their codes.

use crate::envelope::{GroupHeader, GroupReport, InterchangeHeader};
use crate::problem::{Level, Problem, segment_code};
use crate::read::{SetRead, TypedHandler};
use crate::sets::{Document, ElementError, FunctionalAck, SegmentError, SetAck};
use crate::text::Text;
use crate::writer::{EnvelopeOptions, InterchangeWriter, WriteError};

/// AK4s per AK3 allowed by the standard.
const ELEMENT_ERRORS_MAX: usize = 99;

/// The AK2 loop for one set, from the problems found in it.
pub fn set_ack(id: &str, control: &str, problems: &[Problem]) -> SetAck {
    let mut codes: Vec<Text> = Vec::new();
    let mut segments: Vec<SegmentError> = Vec::new();
    for problem in problems {
        match problem.level {
            Level::Set(code) => {
                let code = Text::from(code.to_string());
                if !codes.contains(&code) && codes.len() < 5 {
                    codes.push(code);
                }
            }
            Level::Segment(code) | Level::Element(code) => {
                let position = u64::from(problem.position.segment.unwrap_or(0));
                let id = Text::from(problem.position.segment_id.as_deref().unwrap_or_default());
                let element = matches!(problem.level, Level::Element(_));
                let segment_code = if element {
                    segment_code::HAS_ELEMENT_ERRORS
                } else {
                    code
                };
                let at = segments
                    .iter()
                    .position(|s| s.position == position && s.id == id);
                let at = match at {
                    Some(at) => at,
                    None => {
                        segments.push(SegmentError {
                            id,
                            position,
                            loop_id: None,
                            code: Some(segment_code.to_string().into()),
                            elements: Vec::new(),
                        });
                        segments.len() - 1
                    }
                };
                if element && segments[at].elements.len() < ELEMENT_ERRORS_MAX {
                    segments[at].elements.push(ElementError {
                        position: u64::from(problem.position.element.unwrap_or(0)),
                        reference: None,
                        code: code.to_string().into(),
                        value: bad_value(&problem.found).map(Text::from),
                    });
                }
            }
            Level::Group(_) | Level::Interchange | Level::Warning => {}
        }
    }
    if !segments.is_empty() && !codes.iter().any(|c| c == "5") && codes.len() < 5 {
        codes.push("5".into());
    }
    let status = if codes.is_empty() { "A" } else { "R" };
    SetAck {
        id: id.into(),
        control: control.into(),
        segments,
        status: status.into(),
        codes,
    }
}

/// A copy of the bad value for AK404: the found text without its quotes, restricted to
/// characters any delimiter set leaves alone.
fn bad_value(found: &str) -> Option<String> {
    let inner = found
        .strip_prefix('`')
        .and_then(|f| f.strip_suffix('`'))
        .unwrap_or(found);
    let value: String = inner
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '.' | '/'))
        .take(99)
        .collect();
    let value = value.trim().to_string();
    (!value.is_empty()).then_some(value)
}

/// The 997 for one group, from its report and the AK2 loops of its sets.
pub fn group_ack(report: &GroupReport, sets: Vec<SetAck>) -> FunctionalAck {
    let mut codes: Vec<Text> = Vec::new();
    for problem in &report.problems {
        if let Level::Group(code) = problem.level {
            let code = Text::from(code.to_string());
            if !codes.contains(&code) && codes.len() < 5 {
                codes.push(code);
            }
        }
    }
    let received = u64::from(report.received_sets);
    let accepted = sets
        .iter()
        .filter(|s| s.status == "A" || s.status == "E")
        .count() as u64;
    let status = if !codes.is_empty() || accepted == 0 && received > 0 {
        "R"
    } else if accepted == received {
        "A"
    } else {
        "P"
    };
    let version = report
        .header
        .version
        .starts_with("005")
        .then(|| Text::from(report.header.version.as_str()));
    FunctionalAck {
        functional_id: report.header.functional_id.as_str().into(),
        group_control: report.header.control.as_str().into(),
        version,
        sets,
        status: status.into(),
        included: report.declared_sets.map_or(received, u64::from),
        received,
        accepted,
        codes,
    }
}

/// One group's acknowledgment, with the headers it answers.
#[derive(Debug, Clone)]
pub struct GroupAck {
    pub interchange: InterchangeHeader,
    pub group: GroupHeader,
    pub ack: FunctionalAck,
}

/// True when an id or control number can be echoed in a 997: 1 to 9 ASCII letters and digits.
fn nameable(value: &str) -> bool {
    (1..=9).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A [`TypedHandler`] that builds the 997 of every group read — except groups of 997s, which are
/// never acknowledged.
#[derive(Debug, Default)]
pub struct AckBuilder {
    sets: Vec<SetAck>,
    /// The acknowledgments, in the order the groups closed.
    pub acks: Vec<GroupAck>,
    /// Received 997s, for correlating with the groups we sent.
    pub received_acks: Vec<FunctionalAck>,
}

impl TypedHandler for AckBuilder {
    fn set(&mut self, set: &mut SetRead<'_>) {
        if let Some(Document::FunctionalAck(_)) = &set.document
            && let Some(Document::FunctionalAck(ack)) = set.document.take()
        {
            self.received_acks.push(ack);
        }
        let header = &set.report.header;
        // A set whose ST01 or ST02 is missing or garbled cannot be named in an AK2; it still
        // counts as received and not accepted in the AK9.
        if set.group.functional_id != "FA" && nameable(&header.id) && nameable(&header.control) {
            self.sets
                .push(set_ack(&header.id, &header.control, set.problems));
        }
    }

    fn group_end(&mut self, interchange: &InterchangeHeader, report: &GroupReport) {
        let sets = std::mem::take(&mut self.sets);
        // Groups of 997s are never acknowledged; a group whose GS01 or GS06 is missing or garbled cannot be named
        // in an AK1 (validate reports it).
        let header = &report.header;
        if header.functional_id == "FA"
            || !nameable(&header.functional_id)
            || !nameable(&header.control)
        {
            return;
        }
        self.acks.push(GroupAck {
            interchange: interchange.clone(),
            group: report.header.clone(),
            ack: group_ack(report, sets),
        });
    }
}

/// Writes 997s answering `acks`: one interchange per inbound interchange, sender and receiver
/// swapped, numbered from `interchange_control` (ISA13) and `group_control` (GS06, one per
/// group). `date` is `YYMMDD`, `time` `HHMM`. Returns the bytes and the next free interchange
/// and group control numbers.
pub fn write_acks(
    acks: &[GroupAck],
    mut interchange_control: u32,
    mut group_control: u32,
    date: &str,
    time: &str,
    delimiters: Option<crate::Delimiters>,
) -> Result<(Vec<u8>, u32, u32), WriteError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < acks.len() {
        let inbound = &acks[i].interchange;
        let mut options = EnvelopeOptions {
            sender_qualifier: inbound.receiver_qualifier.clone(),
            sender: inbound.receiver.clone(),
            receiver_qualifier: inbound.sender_qualifier.clone(),
            receiver: inbound.sender.clone(),
            date: date.to_string(),
            time: time.to_string(),
            version: if inbound.version.is_empty() {
                "00401".into()
            } else {
                inbound.version.clone()
            },
            usage: inbound.usage.chars().next().unwrap_or('P'),
            ..EnvelopeOptions::default()
        };
        if let Some(d) = delimiters.or(inbound.delimiters) {
            options.delimiters = d;
        }
        let mut w = InterchangeWriter::new(options, interchange_control)?;
        let mut set_control = 1u32;
        while i < acks.len() && acks[i].interchange == *inbound {
            let GroupAck { group, ack, .. } = &acks[i];
            w.begin_group_as(
                "FA",
                &group.receiver,
                &group.sender,
                group_control,
                &group.version,
            )?;
            w.set("997", &format!("{set_control:04}"), |s| {
                crate::sets::TransactionSet::write(ack, s)
            })?;
            w.end_group()?;
            set_control += 1;
            group_control = group_control % crate::writer::CONTROL_MAX + 1;
            i += 1;
        }
        out.extend(w.finish()?);
        interchange_control = interchange_control % crate::writer::CONTROL_MAX + 1;
    }
    Ok((out, interchange_control, group_control))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::read_slice;

    const GOOD: &[u8] = b"ISA*00*          *00*          *ZZ*BUYER          *ZZ*SELLER         *240101*1200*U*00401*000000001*0*P*>~
GS*PO*BUYER*SELLER*20240101*1200*7*X*004010~
ST*850*0001~
BEG*00*SA*PO1**20240101~
PO1*1*5*EA*1.00**UP*123~
CTT*1~
SE*5*0001~
ST*850*0002~
BEG*00*SA*PO2**20240101~
PO1*1*X*EA*1.00**UP*123~
CTT*1~
SE*5*0002~
ST*850*0003~
BEG*00*SA*PO3**20240101~
PO1*1*5*EA*1.00**UP*123~
SE*9*0003~
GE*3*7~
IEA*1*000000001~
";

    #[test]
    fn the_997_rejects_exactly_the_sets_in_error() {
        let mut builder = AckBuilder::default();
        read_slice(GOOD, &mut builder);
        assert_eq!(builder.acks.len(), 1);
        let ack = &builder.acks[0].ack;
        assert_eq!(ack.functional_id, "PO");
        assert_eq!(ack.group_control, "7");
        let status: Vec<_> = ack.sets.iter().map(|s| s.status.as_str()).collect();
        assert_eq!(status, ["A", "R", "R"]);
        // Set 2: PO102 is not a number → AK3 PO1 at 3 with code 8, AK4 element 2 code 6.
        let bad = &ack.sets[1];
        assert_eq!(bad.codes, ["5"]);
        assert_eq!(bad.segments[0].id, "PO1");
        assert_eq!(bad.segments[0].position, 3);
        assert_eq!(bad.segments[0].code.as_deref(), Some("8"));
        assert_eq!(bad.segments[0].elements[0].position, 2);
        assert_eq!(bad.segments[0].elements[0].code, "6");
        // Set 3: SE01 says 9, the set has 4 segments.
        assert_eq!(ack.sets[2].codes, ["4"]);
        assert_eq!(
            (
                ack.status.as_str(),
                ack.included,
                ack.received,
                ack.accepted
            ),
            ("P", 3, 3, 1)
        );

        let (bytes, next, next_group) =
            write_acks(&builder.acks, 5, 31, "240102", "0800", None).unwrap();
        assert_eq!((next, next_group), (6, 32));
        assert!(
            String::from_utf8_lossy(&bytes)
                .contains("GS*FA*SELLER*BUYER*20240102*0800*31*X*004010~")
        );
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("*ZZ*SELLER         *ZZ*BUYER          *"),
            "{text}"
        );
        assert!(text.contains("AK1*PO*7~"), "{text}");
        assert!(
            text.contains("AK2*850*0002~\nAK3*PO1*3**8~\nAK4*2**6*X~\nAK5*R*5~"),
            "{text}"
        );
        assert!(text.contains("AK9*P*3*3*1~"), "{text}");

        // The 997 itself reads back clean, and is never acknowledged.
        let mut again = AckBuilder::default();
        let stats = read_slice(&bytes, &mut again);
        assert_eq!(stats.errors, 0, "{text}");
        assert!(again.acks.is_empty());
        assert_eq!(again.received_acks.len(), 1);
        assert_eq!(&again.received_acks[0], ack);
    }
}
