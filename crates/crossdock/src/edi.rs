//! `crossdock edi parse|validate|ack`: X12 files from the command line, streamed in bounded
//! memory whatever their size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use crossdock_edi::Problem;
use crossdock_edi::ack::{AckBuilder, write_acks};
use crossdock_edi::envelope::{GroupReport, InterchangeHeader, InterchangeReport, Stats};
use crossdock_edi::generate::{Kind, generate};
use crossdock_edi::read::{SetRead, TypedHandler, read_stream_parallel};

#[derive(Debug, Subcommand)]
pub enum EdiCommand {
    /// Read a file and summarize it: interchanges, groups, sets by type, line items, problems.
    Parse {
        /// The X12 file (`-` for standard input).
        file: PathBuf,
        /// Print one JSON object per transaction set instead (its envelope, typed content and
        /// problems), one per line.
        #[arg(long)]
        json: bool,
    },
    /// Check a file: envelopes, counts, control numbers and the content of every typed set.
    /// Prints every problem with its position; exits 1 if there is any error.
    Validate {
        /// The X12 file (`-` for standard input).
        file: PathBuf,
    },
    /// Write the 997 functional acknowledgment of every group in a file (groups of 997s are
    /// never acknowledged).
    Ack {
        /// The X12 file (`-` for standard input).
        file: PathBuf,
        /// Where to write the 997s (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The first interchange and group control number to use.
        #[arg(long, default_value_t = 1)]
        control: u32,
    },
    /// Write a large valid interchange for load tests: 850s or 846s with N line items.
    Generate {
        /// `850` (purchase orders) or `846` (inventory advice).
        set: String,
        /// Line items in all.
        #[arg(long, default_value_t = 500_000)]
        items: u64,
        /// Line items per transaction set.
        #[arg(long, default_value_t = 100)]
        per_set: u64,
        /// No line break after each segment terminator.
        #[arg(long)]
        no_line_breaks: bool,
        /// The file to write.
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Threads typing sets while one reads: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn open(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(file))
}

pub fn run(command: EdiCommand) -> anyhow::Result<()> {
    match command {
        EdiCommand::Generate {
            set,
            items,
            per_set,
            no_line_breaks,
            output,
        } => {
            let kind = match set.as_str() {
                "850" => Kind::PurchaseOrder,
                "846" => Kind::InventoryAdvice,
                other => bail!("cannot generate {other:?}: choose 850 or 846"),
            };
            let file = File::create(&output)
                .with_context(|| format!("cannot create {}", output.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let bytes = generate(&mut out, kind, items, per_set, !no_line_breaks)
                .and_then(|n| out.flush().map(|()| n))
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!("{}: {items} items, {bytes} bytes", output.display());
            Ok(())
        }
        EdiCommand::Parse { file, json } => {
            let input = open(&file)?;
            if json {
                let mut out = JsonLines {
                    out: BufWriter::new(std::io::stdout().lock()),
                    error: None,
                    problems: Vec::new(),
                };
                read_stream_parallel(input, &mut out, workers())
                    .with_context(|| format!("reading {}", file.display()))?;
                if let Some(error) = out.error {
                    return Err(error).context("writing to standard output");
                }
                for problem in &out.problems {
                    writeln!(out.out, "{}", serde_json::json!({ "problem": problem }))?;
                }
                out.out.flush()?;
                return Ok(());
            }
            let mut summary = Summary::default();
            let stats = read_stream_parallel(input, &mut summary, workers())
                .with_context(|| format!("reading {}", file.display()))?;
            summary.print(&file, &stats);
            Ok(())
        }
        EdiCommand::Validate { file } => {
            let input = open(&file)?;
            let mut summary = Summary {
                print_problems: true,
                ..Summary::default()
            };
            let stats = read_stream_parallel(input, &mut summary, workers())
                .with_context(|| format!("reading {}", file.display()))?;
            let (errors, warnings) = summary.counts();
            println!(
                "{}: {} interchanges, {} groups, {} sets, {} segments; {errors} errors, {warnings} warnings",
                file.display(),
                stats.interchanges,
                stats.groups,
                stats.sets,
                stats.segments
            );
            if errors > 0 {
                bail!("{} is not valid: {errors} errors", file.display());
            }
            Ok(())
        }
        EdiCommand::Ack {
            file,
            output,
            control,
        } => {
            let input = open(&file)?;
            let mut builder = AckBuilder::default();
            read_stream_parallel(input, &mut builder, workers())
                .with_context(|| format!("reading {}", file.display()))?;
            if builder.acks.is_empty() {
                eprintln!(
                    "{}: no functional group to acknowledge (997s are never acknowledged)",
                    file.display()
                );
                return Ok(());
            }
            let now = crossdock_edi::writer::envelope_stamp(crate::clock::Clock::now(
                &crate::clock::SystemClock,
            ));
            let (bytes, next, _) =
                write_acks(&builder.acks, control, control, &now.0, &now.1, None)
                    .map_err(|e| anyhow::anyhow!("writing the 997: {e}"))?;
            match output {
                Some(path) => std::fs::write(&path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().lock().write_all(&bytes)?,
            }
            let rejected = builder
                .acks
                .iter()
                .flat_map(|a| &a.ack.sets)
                .filter(|s| s.status == "R")
                .count();
            eprintln!(
                "{} groups acknowledged ({rejected} sets rejected); next control number {next}",
                builder.acks.len()
            );
            Ok(())
        }
    }
}

#[derive(Default)]
struct Summary {
    print_problems: bool,
    interchanges: Vec<String>,
    sets: BTreeMap<String, (u64, u64)>,
    problems: Vec<Problem>,
    errors: u64,
    warnings: u64,
}

impl Summary {
    fn note(&mut self, problem: &Problem) {
        if problem.is_error() {
            self.errors += 1;
        } else {
            self.warnings += 1;
        }
        if self.print_problems {
            println!("{problem}");
        } else if self.problems.len() < 20 {
            self.problems.push(problem.clone());
        }
    }

    fn counts(&self) -> (u64, u64) {
        (self.errors, self.warnings)
    }

    fn print(&self, file: &Path, stats: &Stats) {
        println!(
            "{}: {} interchanges, {} groups, {} sets, {} segments",
            file.display(),
            stats.interchanges,
            stats.groups,
            stats.sets,
            stats.segments
        );
        for line in &self.interchanges {
            println!("  {line}");
        }
        for (id, (sets, items)) in &self.sets {
            println!("  {id}: {sets} sets, {items} items");
        }
        println!("  {} errors, {} warnings", self.errors, self.warnings);
        for problem in &self.problems {
            println!("  {problem}");
        }
        let more = (self.errors + self.warnings) as usize - self.problems.len();
        if more > 0 {
            println!("  … {more} more (crossdock edi validate lists them all)");
        }
    }
}

impl TypedHandler for Summary {
    fn set(&mut self, set: &mut SetRead<'_>) {
        let entry = self.sets.entry(set.report.header.id.clone()).or_default();
        entry.0 += 1;
        entry.1 += set.document.as_ref().map_or(0, |d| d.items() as u64);
        for problem in set.problems {
            self.note(problem);
        }
    }

    fn group_end(&mut self, _: &InterchangeHeader, report: &GroupReport) {
        for problem in &report.problems {
            self.note(problem);
        }
    }

    fn interchange_end(&mut self, report: &InterchangeReport) {
        let h = &report.header;
        if self.interchanges.len() < 20 {
            self.interchanges.push(format!(
                "interchange {} from {}:{} to {}:{}, version {}, {} groups",
                h.control,
                h.sender_qualifier,
                h.sender,
                h.receiver_qualifier,
                h.receiver,
                h.version,
                report.groups
            ));
        }
        for problem in &report.problems {
            self.note(problem);
        }
    }
}

struct JsonLines<W: Write> {
    out: W,
    error: Option<std::io::Error>,
    problems: Vec<Problem>,
}

impl<W: Write> JsonLines<W> {
    fn line(&mut self, value: &serde_json::Value) {
        if self.error.is_none()
            && let Err(e) = writeln!(self.out, "{value}")
        {
            self.error = Some(e);
        }
    }
}

impl<W: Write> TypedHandler for JsonLines<W> {
    fn set(&mut self, set: &mut SetRead<'_>) {
        let value = serde_json::json!({
            "interchange": set.interchange.control,
            "sender": set.interchange.sender,
            "receiver": set.interchange.receiver,
            "group": set.group.control,
            "functional_id": set.group.functional_id,
            "version": set.group.version,
            "set": set.report.header.id,
            "control": set.report.header.control,
            "offset": set.report.header.offset,
            "segments": set.report.segments,
            "document": set.document,
            "problems": set.problems,
        });
        self.line(&value);
    }

    fn group_end(&mut self, _: &InterchangeHeader, report: &GroupReport) {
        self.problems.extend(report.problems.iter().cloned());
    }

    fn interchange_end(&mut self, report: &InterchangeReport) {
        self.problems.extend(report.problems.iter().cloned());
    }
}
