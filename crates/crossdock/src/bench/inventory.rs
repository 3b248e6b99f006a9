//! `crossdock bench --scenario inventory`: the inventory engine's figures, each beside its
//! baseline from the same run.
//!
//! - projection: inventory events over SKUs × 3 locations × 3 channels applied by the engine
//!   (positions, listings recomputed, channel actions queued), against the platform's durable
//!   ingest of the same events;
//! - latency: from an accepted inventory event to its channel action, at a sustained rate;
//! - reservations: durable all-or-nothing holds from many concurrent callers, across many SKUs
//!   and on one hot SKU, against raw conditional updates of the same rows;
//! - memory: the process's resident set with many SKUs × 3 locations loaded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossdock_core::catalog::{
    Channel, ChannelId, ChannelSku, Item, Listing, Location, LocationId, LocationKind, OrderPolicy,
    Policy, Sku,
};
use crossdock_core::{NewEvent, Timestamp};
use crossdock_store::{ReservationLine, ReserveOutcome, ReserveRequest, Store};
use tokio::task::JoinSet;

use super::{BenchArgs, bench_config, median, rate};
use crate::app::{AppBuilder, AppState};
use crate::runtime::consumer;
use crate::runtime::inventory::{HOLD_SOURCE, InventoryProjection, with_lines};

pub(super) const AUTHORITY: &str = "/bench/erp";
pub(super) const LOCATIONS: [&str; 3] = ["wh-east", "wh-west", "3pl-central"];
pub(super) const CHANNELS: [&str; 3] = ["shopify", "amazon", "edi"];
const RESERVERS: usize = 64;
/// Listings written by one bulk PUT while the catalog is loaded.
const LISTINGS_PER_PUT: usize = 5000;

/// A channel that takes every update at once, noting when each listing's first update was
/// queued and when it arrived, so the latency figure measures crossdock.
#[derive(Default)]
struct Acknowledge {
    arrived: std::sync::Mutex<std::collections::HashMap<String, (Timestamp, Timestamp)>>,
}

impl crate::runtime::delivery::Deliverer for Acknowledge {
    fn deliver<'a>(
        &'a self,
        action: &'a crossdock_store::ClaimedAction,
    ) -> crate::runtime::delivery::DeliveryFuture<'a> {
        Box::pin(async move {
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            if let Ok(batch) = serde_json::from_str::<crate::runtime::inventory::AvailabilityBatch>(
                &action.payload,
            ) && let Ok(mut arrived) = self.arrived.lock()
            {
                for u in batch.updates {
                    arrived
                        .entry(u.channel_sku)
                        .or_insert((action.created_at, now));
                }
            }
            crate::runtime::delivery::DeliveryOutcome::Delivered
        })
    }
}

pub(super) fn channel_target_name(channel: &str) -> String {
    ChannelId::parse(channel)
        .map(|c| crate::runtime::inventory::channel_target(&c))
        .unwrap_or_default()
}

pub(super) fn channel_settings() -> crate::runtime::delivery::TargetSettings {
    crate::runtime::delivery::TargetSettings {
        policy: crossdock_core::RetryPolicy {
            attempts_max: 3,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
        },
        in_flight_max: 64,
        rate_per_second: 0,
    }
}

pub(super) fn sku(i: usize) -> String {
    format!("SKU-{i:07}")
}

/// A deterministic pseudo-random sequence, so every run measures the same work.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Items, the three locations and, when `channels`, three channels listing every item.
pub(super) async fn catalog(store: &Store, skus: usize, channels: usize) -> anyhow::Result<()> {
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
    for (i, id) in LOCATIONS.iter().enumerate() {
        let kind = if i == 2 {
            LocationKind::ThirdParty
        } else {
            LocationKind::Warehouse
        };
        let location = Location {
            name: (*id).to_owned(),
            kind,
            authority: AUTHORITY.to_owned(),
        };
        store
            .location_put(
                LocationId::parse(id).map_err(anyhow::Error::msg)?,
                location,
                now,
            )
            .await?;
    }
    let ids: Vec<usize> = (0..skus).collect();
    for chunk in ids.chunks(10_000) {
        let items = chunk
            .iter()
            .map(|i| {
                let item = Item {
                    description: None,
                    unit: "each".into(),
                    components: Vec::new(),
                };
                Sku::parse(&sku(*i))
                    .map(|s| (s, item))
                    .map_err(anyhow::Error::msg)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.items_put(items, now, None).await?;
    }

    let policies = [
        Policy {
            percent: Some(80),
            buffer: Some(2),
            ..Policy::default()
        },
        Policy {
            max: Some(50),
            ..Policy::default()
        },
        Policy::default(),
    ];
    for (id, policy) in CHANNELS.iter().zip(policies).take(channels) {
        let channel = Channel {
            kind: (*id).to_owned(),
            locations: LOCATIONS
                .iter()
                .map(|l| LocationId::parse(l).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
            policy,
            increase_hold_ms: 0,
            orders: OrderPolicy::default(),
        };
        let channel_id = ChannelId::parse(id).map_err(anyhow::Error::msg)?;
        store
            .channel_put(channel_id.clone(), channel, now, None)
            .await?;
        // Listings in bulk, as a connector's first synchronisation writes them.
        for chunk in (0..skus).collect::<Vec<_>>().chunks(LISTINGS_PER_PUT) {
            let listings = chunk
                .iter()
                .map(|i| {
                    let s = sku(*i);
                    let listing = Listing {
                        sku: Sku::parse(&s).map_err(anyhow::Error::msg)?,
                    };
                    let channel_sku =
                        ChannelSku::parse(&format!("{id}-{s}")).map_err(anyhow::Error::msg)?;
                    Ok((channel_sku, listing))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            store
                .listings_put(channel_id.clone(), listings, now, None)
                .await?;
        }
    }
    Ok(())
}

/// Inventory events over `skus` × the three locations: receipts, adjustments, shipments and
/// counts, each from the locations' authority.
fn events(n: usize, skus: usize, seed: u64, prefix: &str) -> anyhow::Result<Vec<NewEvent>> {
    let mut rng = Rng(seed | 1);
    let base = Timestamp::from_unix_micros(1_800_000_000_000_000);
    (0..n)
        .map(|i| {
            let s = sku(rng.below(skus));
            let location = LOCATIONS[rng.below(3)];
            let (kind, data) = match rng.below(10) {
                0..=3 => ("inventory.received", serde_json::json!({"sku": s, "location": location, "quantity": 1 + rng.below(50)})),
                4..=5 => ("inventory.adjusted", serde_json::json!({"sku": s, "location": location, "delta": -1 - rng.below(3) as i64, "reason": "damage"})),
                6..=8 => ("inventory.shipped", serde_json::json!({"sku": s, "location": location, "quantity": 1 + rng.below(3)})),
                _ => ("inventory.counted", serde_json::json!({"sku": s, "location": location, "on_hand": rng.below(500),
                    "as_of": base.plus_millis(i as i64).to_string()})),
            };
            NewEvent::new(&format!("{prefix}-{i:09}"), AUTHORITY, kind, Some(&data))
                .map(|e| e.with_time(base.plus_millis(i as i64 + 1)))
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}

/// Applies the whole log with the inventory engine; returns events per second and the listings
/// whose updates are due.
pub(super) async fn project(state: &Arc<AppState>) -> anyhow::Result<(f64, usize)> {
    let head = state.store.head_seq().await?;
    let started = Instant::now();
    let applied = consumer::catch_up(
        state.clone(),
        Arc::new(InventoryProjection::for_store(&state.store)),
    )
    .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        applied as i64 >= head,
        "the engine applied {applied} of {head} events"
    );
    let catalog = state.catalog.get(&state.store).await?;
    let mut due = 0;
    for channel in catalog.snapshot.channels.keys() {
        due += state
            .store
            .availability_due(
                channel,
                "none",
                usize::MAX >> 1,
                Timestamp::from_unix_micros(i64::MAX),
            )
            .await?
            .listings
            .len();
    }
    Ok((rate(applied, elapsed), due))
}

/// What the process holds in memory now, and at most, in MiB (Linux; 0 elsewhere).
pub(super) fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub(super) async fn run(args: &BenchArgs, run_dir: &std::path::Path) -> anyhow::Result<()> {
    throughput(args, run_dir).await?;
    latency(args, run_dir).await?;
    reservations(args, run_dir).await?;
    if args.rss_skus > 0 {
        memory_apart(args, run_dir)?;
    }
    Ok(())
}

/// The engine's throughput on a backlog, beside the platform's ingest of the same events.
pub(super) async fn throughput(args: &BenchArgs, run_dir: &std::path::Path) -> anyhow::Result<()> {
    let skus = args.skus;
    let n = args.inventory_events;
    println!(
        "\ninventory engine: {n} events over {skus} SKUs x 3 locations x {} channels",
        args.channels
    );
    let evs = events(n, skus, 42, "inv")?;
    let mut ingest = Vec::new();
    let mut projection = Vec::new();
    for round in 0..args.rounds.clamp(1, 3) {
        let db = run_dir
            .join(format!("inventory-{round}.db"))
            .display()
            .to_string();
        let mut builder = AppBuilder::new(bench_config(&db, args.durability));
        for channel in CHANNELS {
            builder = builder.target(
                &channel_target_name(channel),
                channel_settings(),
                Arc::new(Acknowledge::default()),
            );
        }
        let app = builder.build().await?;
        let state = app.state().clone();
        let started = Instant::now();
        catalog(&state.store, skus, args.channels).await?;
        let catalog_s = started.elapsed().as_secs_f64();
        let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
        let started = Instant::now();
        for chunk in evs.chunks(args.batch) {
            state.store.append(chunk.to_vec(), now).await?;
        }
        let ingested = rate(n, started.elapsed());
        let (applied, queued) = project(&state).await?;
        println!(
            "  round {round}: catalog {catalog_s:.1} s; ingest {ingested:.0} ev/s; engine {applied:.0} ev/s \
             ({:.2} of ingest), {queued} listing updates due",
            applied / ingested
        );
        ingest.push(ingested);
        projection.push(applied);
        state.store.close().await;
        drop(app);
    }
    let ratios: Vec<f64> = projection.iter().zip(&ingest).map(|(p, i)| p / i).collect();
    println!(
        "  engine throughput (median): {:.0} ev/s | platform ingest {:.0} ev/s | ratio {:.2}",
        median(projection),
        median(ingest),
        median(ratios)
    );
    Ok(())
}

/// Runs the memory figure in a process of its own, so that the resident set is what loading the
/// SKUs takes, not what the figures before it left behind in this one.
fn memory_apart(args: &BenchArgs, run_dir: &std::path::Path) -> anyhow::Result<()> {
    let durability = match args.durability {
        super::BenchDurability::Full => "full",
        super::BenchDurability::Normal => "normal",
    };
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--scenario", "memory", "--durability", durability])
        .arg("--rss-skus")
        .arg(args.rss_skus.to_string())
        .arg("--dir")
        .arg(run_dir)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "the memory figure failed ({}): {text}",
        output.status
    );
    // The child's own heading is left out: only its figure.
    for line in text.lines().filter(|l| l.starts_with("memory:")) {
        println!("\n{line} (measured in a process of its own)");
    }
    Ok(())
}

/// Appends receipts at `args.latency_rate` per second (in batches every 10 ms) to a running app
/// whose channels take every update at once, and times each batch from its acknowledgement to its
/// first SKU's update arriving at the channel (through the engine, the feeder, the outbox and a
/// delivery: a stricter figure than to the outbox).
async fn latency(args: &BenchArgs, run_dir: &std::path::Path) -> anyhow::Result<()> {
    // A fresh store with the catalog only: no backlog from the throughput figure.
    let db = run_dir.join("latency.db").display().to_string();
    let measured = CHANNELS[args.channels.clamp(1, 3) - 1];
    let arrivals = Arc::new(Acknowledge::default());
    let mut builder = AppBuilder::new(bench_config(&db, args.durability));
    for channel in CHANNELS {
        let deliverer: Arc<dyn crate::runtime::delivery::Deliverer> = if channel == measured {
            arrivals.clone()
        } else {
            Arc::new(Acknowledge::default())
        };
        builder = builder.target(&channel_target_name(channel), channel_settings(), deliverer);
    }
    let app = builder.build().await?;
    let state = app.state().clone();
    catalog(&state.store, args.skus, args.channels).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    // Steady state: the catalog snapshot is loaded (as the feeder does at start) before timing.
    state.catalog.get(&state.store).await?;
    let per_tick = (args.latency_rate / 100).max(1);
    let ticks = args.latency_seconds.max(1) * 100;
    // Receipts on distinct SKUs, so every event changes its listings; measured on the last
    // channel ("edi" has no policy: every receipt changes its number).
    let channel = measured;
    let mut acked: Vec<(String, Timestamp)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for t in 0..ticks {
        tick.tick().await;
        let batch = (0..per_tick)
            .map(|j| {
                let s = sku((t * per_tick + j) % args.skus);
                let data =
                    serde_json::json!({"sku": s, "location": LOCATIONS[0], "quantity": 1 + j % 7});
                NewEvent::new(
                    &format!("lat-{t}-{j}"),
                    AUTHORITY,
                    "inventory.received",
                    Some(&data),
                )
                .map(|e| (s, e))
                .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let first = batch.first().map(|(s, _)| s.clone()).unwrap_or_default();
        crate::ingest::accept_events(&state, batch.into_iter().map(|(_, e)| e).collect()).await?;
        acked.push((first, state.clock.now()));
    }
    let sent_for = started.elapsed();
    // Each batch's first SKU: from its acknowledgement to its update reaching the channel.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrived = arrivals
        .arrived
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let mut queued = Vec::with_capacity(acked.len());
    let mut delivered = Vec::with_capacity(acked.len());
    let mut missing = 0;
    let ms =
        |from: &Timestamp, to: &Timestamp| (to.unix_micros() - from.unix_micros()) as f64 / 1000.0;
    for (s, at) in &acked {
        match arrived.get(&format!("{channel}-{s}")) {
            Some((queued_at, arrived_at)) => {
                queued.push(ms(at, queued_at));
                delivered.push(ms(at, arrived_at));
            }
            None => missing += 1,
        }
    }
    println!(
        "  latency at {} ev/s for {:.1} s, on channel {channel} ({} batches, {missing} not delivered within \
         0.5 s of the end):",
        per_tick * 100,
        sent_for.as_secs_f64(),
        queued.len()
    );
    for (what, mut figures) in [
        ("accepted event -> channel action queued", queued),
        (
            "accepted event -> update delivered to the channel",
            delivered,
        ),
    ] {
        figures.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            figures
                .get(((figures.len() as f64 * p) as usize).min(figures.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "    {what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(0.5),
            pct(0.99),
            figures.last().copied().unwrap_or(0.0)
        );
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Counts giving every reservation SKU its stock at the first location.
pub(super) fn stock_events(
    skus: usize,
    on_hand: usize,
    hot: usize,
) -> anyhow::Result<Vec<NewEvent>> {
    let as_of = Timestamp::from_unix_micros(1_800_000_000_000_000).to_string();
    (0..skus)
        .map(|i| {
            let quantity = if i == 0 { hot } else { on_hand };
            let data = serde_json::json!({"sku": sku(i), "location": LOCATIONS[0], "on_hand": quantity, "as_of": as_of});
            NewEvent::new(&format!("stock-{i}"), AUTHORITY, "inventory.counted", Some(&data)).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}

/// Holds `orders` single-unit orders from `RESERVERS` concurrent callers: all on the first SKU
/// (`hot`), or spread over the others. Returns reservations per second and how many were held.
pub(super) async fn hold(
    store: &Store,
    orders: usize,
    skus: usize,
    hot: bool,
) -> anyhow::Result<(f64, usize)> {
    let tag = if hot { "h" } else { "m" };
    let pick = move |order: usize| if hot { 0 } else { 1 + order % (skus - 1) };
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for worker in 0..RESERVERS {
        let store = store.clone();
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let mut held = 0;
            for order in (worker..orders).step_by(RESERVERS) {
                let line = ReservationLine {
                    sku: Sku::parse(&sku(pick(order))).map_err(anyhow::Error::msg)?,
                    location: LocationId::parse(LOCATIONS[0]).map_err(anyhow::Error::msg)?,
                    quantity: 1,
                };
                let id = format!("{tag}-{order}");
                let event = NewEvent::new(
                    &format!("reserved-{id}"),
                    HOLD_SOURCE,
                    "inventory.reserved",
                    None,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                let request = ReserveRequest::new(
                    id.clone(),
                    vec![line],
                    Timestamp::from_unix_micros(1_800_000_000_000_000),
                    |lines| with_lines(event, &id, lines),
                );
                if let ReserveOutcome::Reserved { .. } = store.reserve(request).await? {
                    held += 1;
                }
            }
            Ok::<_, anyhow::Error>(held)
        });
    }
    let mut held = 0;
    while let Some(done) = tasks.join_next().await {
        held += done??;
    }
    Ok((rate(orders, started.elapsed()), held))
}

pub(super) async fn reservations(
    args: &BenchArgs,
    run_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let orders = args.reservations;
    let skus = args.skus.max(2);
    println!(
        "\nreservations: {orders} single-unit orders from {RESERVERS} callers (zero oversell checked)"
    );
    let names: Vec<String> = (0..skus).map(sku).collect();
    let mut lines = Vec::new();
    for backend in ["SQLite"]
        .into_iter()
        .chain(args.postgres.as_ref().map(|_| "PostgreSQL"))
    {
        let schema = match (backend, &args.postgres) {
            ("PostgreSQL", Some(url)) => {
                Some(crossdock_store::baseline::ScratchSchema::create(url, "bench").await?)
            }
            _ => None,
        };
        let db = match &schema {
            Some(s) => s.url.clone(),
            None => run_dir.join("reservations.db").display().to_string(),
        };
        let app = AppBuilder::new(bench_config(&db, args.durability))
            .build()
            .await?;
        let state = app.state().clone();
        catalog(&state.store, skus, 0).await?;
        let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
        // Each SKU holds more than the orders could take, but the hot SKU exactly half of them:
        // the second half must be refused.
        for chunk in stock_events(skus, orders, orders / 2)?.chunks(1000) {
            state.store.append(chunk.to_vec(), now).await?;
        }
        project(&state).await?;
        let (spread, spread_held) = hold(&state.store, orders, skus, false).await?;
        let (hot_rate, hot_held) = hold(&state.store, orders, skus, true).await?;
        anyhow::ensure!(
            spread_held == orders,
            "{spread_held} of {orders} spread orders held"
        );
        anyhow::ensure!(
            hot_held == orders / 2,
            "hot SKU: {hot_held} held of {} in stock: oversold",
            orders / 2
        );
        state.store.close().await;
        let (base_spread, base_hot) = match schema {
            Some(s) => {
                let b = crossdock_store::baseline::raw_postgres_reservations(
                    &s.url,
                    &names,
                    LOCATIONS[0],
                    orders,
                    RESERVERS,
                )
                .await;
                s.drop().await;
                b?
            }
            None => crossdock_store::baseline::raw_sqlite_reservations(
                &run_dir.join("raw-reservations.db"),
                &names,
                LOCATIONS[0],
                orders,
                RESERVERS,
                args.durability == super::BenchDurability::Full,
            )?,
        };
        lines.push(format!(
            "  {backend:<10} many SKUs: {spread:>8.0}/s | raw {base_spread:>8.0}/s | {:.2}   hot SKU: {hot_rate:>8.0}/s | raw {base_hot:>8.0}/s | {:.2}   (hot: {hot_held} held, {} refused)",
            spread / base_spread.max(1e-9),
            hot_rate / base_hot.max(1e-9),
            orders - hot_held
        ));
    }
    println!("  backend    crossdock | raw conditional update | ratio");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Loads `args.rss_skus` items with stock at the three locations and one channel listing them
/// all, applies it, reads some stock back, and reports the resident set.
pub(super) async fn memory(args: &BenchArgs, run_dir: &std::path::Path) -> anyhow::Result<()> {
    let skus = args.rss_skus;
    let db = run_dir.join("memory.db").display().to_string();
    let app = AppBuilder::new(bench_config(&db, args.durability))
        .build()
        .await?;
    let state = app.state().clone();
    catalog(&state.store, skus, 0).await?;
    let channel = Channel {
        kind: "shopify".into(),
        locations: LOCATIONS
            .iter()
            .map(|l| LocationId::parse(l).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?,
        policy: Policy::default(),
        increase_hold_ms: 0,
        orders: OrderPolicy::default(),
    };
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
    let shop = ChannelId::parse("shopify").map_err(anyhow::Error::msg)?;
    state
        .store
        .channel_put(shop.clone(), channel, now, None)
        .await?;
    let as_of = now.to_string();
    let mut batch = Vec::with_capacity(3000);
    for i in 0..skus {
        for location in LOCATIONS {
            let data = serde_json::json!({"sku": sku(i), "location": location, "on_hand": 100, "as_of": as_of});
            batch.push(
                NewEvent::new(
                    &format!("m-{i}-{location}"),
                    AUTHORITY,
                    "inventory.counted",
                    Some(&data),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        if batch.len() >= 3000 {
            state.store.append(std::mem::take(&mut batch), now).await?;
        }
    }
    state.store.append(batch, now).await?;
    let started = Instant::now();
    let (applied, _) = project(&state).await?;
    let loaded = started.elapsed().as_secs_f64();
    let catalog = state.catalog.get(&state.store).await?;
    let mut rng = Rng(99);
    for _ in 0..10_000 {
        let s = Sku::parse(&sku(rng.below(skus))).map_err(anyhow::Error::msg)?;
        crate::explain::inventory(&state.store, &catalog, &s, |_| true).await?;
    }
    let (rss, peak) = rss_mib();
    println!(
        "\nmemory: {skus} SKUs x 3 locations ({} positions) applied at {applied:.0} ev/s in {loaded:.1} s; \
         RSS {rss:.0} MiB, peak {peak:.0} MiB",
        skus * 3
    );
    state.store.close().await;
    Ok(())
}
