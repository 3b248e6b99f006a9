//! Helpers shared by the integration tests: collecting what a read finds, and writing it back.
#![allow(dead_code)]

use crossdock_edi::envelope::{GroupHeader, InterchangeHeader, SetHeader};
use crossdock_edi::read::{SetRead, TypedHandler, read_slice};
use crossdock_edi::sets::Document;
use crossdock_edi::writer::{EnvelopeOptions, InterchangeWriter};
use crossdock_edi::{Problem, problem::Level};

/// One set as read.
#[derive(Debug, Clone)]
pub struct Read {
    pub interchange: InterchangeHeader,
    pub group: GroupHeader,
    pub set: SetHeader,
    pub document: Option<Document>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Default)]
pub struct Collect {
    pub sets: Vec<Read>,
    pub other: Vec<Problem>,
}

impl TypedHandler for Collect {
    fn set(&mut self, set: &mut SetRead<'_>) {
        self.sets.push(Read {
            interchange: set.interchange.clone(),
            group: set.group.clone(),
            set: set.report.header.clone(),
            document: set.document.take(),
            problems: set.problems.to_vec(),
        });
    }
    fn group_end(&mut self, _: &InterchangeHeader, report: &crossdock_edi::envelope::GroupReport) {
        self.other.extend(report.problems.iter().cloned());
    }
    fn interchange_end(&mut self, report: &crossdock_edi::envelope::InterchangeReport) {
        self.other.extend(report.problems.iter().cloned());
    }
}

impl Collect {
    pub fn all_problems(&self) -> Vec<&Problem> {
        self.sets
            .iter()
            .flat_map(|s| s.problems.iter())
            .chain(self.other.iter())
            .collect()
    }

    pub fn errors(&self) -> Vec<&Problem> {
        self.all_problems()
            .into_iter()
            .filter(|p| p.is_error())
            .collect()
    }
}

pub fn collect(bytes: &[u8]) -> Collect {
    let mut c = Collect::default();
    read_slice(bytes, &mut c);
    c
}

/// Writes typed sets back as one interchange per input interchange, with the envelope values
/// read (sender, receiver, date, time, version, delimiters, control numbers).
pub fn rewrite(sets: &[Read], line_breaks: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sets.len() {
        let isa = &sets[i].interchange;
        let options = EnvelopeOptions {
            delimiters: isa.delimiters.unwrap(),
            sender_qualifier: isa.sender_qualifier.clone(),
            sender: isa.sender.clone(),
            receiver_qualifier: isa.receiver_qualifier.clone(),
            receiver: isa.receiver.clone(),
            date: isa.date.clone(),
            time: isa.time.clone(),
            version: isa.version.clone(),
            usage: isa.usage.chars().next().unwrap(),
            line_breaks,
        };
        let mut w = InterchangeWriter::new(options, isa.control.parse().unwrap()).unwrap();
        while i < sets.len() && sets[i].interchange == *isa {
            let gs = &sets[i].group;
            w.begin_group_as(
                &gs.functional_id,
                &gs.sender,
                &gs.receiver,
                gs.control.parse().unwrap(),
                &gs.version,
            )
            .unwrap();
            while i < sets.len() && sets[i].interchange == *isa && sets[i].group == *gs {
                let doc = sets[i].document.as_ref().expect("a typed document");
                w.set(&sets[i].set.id, &sets[i].set.control, |s| doc.write(s))
                    .unwrap();
                i += 1;
            }
            w.end_group().unwrap();
        }
        out.extend(w.finish().unwrap());
    }
    out
}

/// The AK5/AK9-level codes of errors, for assertions.
pub fn levels(problems: &[&Problem]) -> Vec<Level> {
    problems.iter().map(|p| p.level).collect()
}

/// `../shared/testdata/x12/real`, when the shared folder is there.
pub fn shared_samples() -> Option<std::path::PathBuf> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/x12/real");
    dir.is_dir().then_some(dir)
}

pub fn own_samples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/x12")
}
