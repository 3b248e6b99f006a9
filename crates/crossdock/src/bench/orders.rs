//! `crossdock bench --scenario orders`: the order figures, each beside its baseline from the
//! same run.
//!
//! - ingestion: orders of one to three lines taken through `orders::take` (parsed, checked
//!   against the catalog, recorded once, held durably, the ERP sales order queued) by many
//!   concurrent callers, against the durable reservation primitive alone on the same catalog;
//! - latency: the time each `take` answers in, at a sustained rate;
//! - lifecycle: a served crossdock with in-process fake targets — an ERP that confirms sales
//!   orders, invoices shipments and confirms journals, a warehouse that ships what is released —
//!   carrying orders from ingestion to closed and posted; orders per second sustained and the
//!   time each step takes (p50/p99), from the orders' own timelines.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossdock_core::NewEvent;
use crossdock_core::order::Status;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::inventory::{
    CHANNELS, LOCATIONS, Rng, catalog, channel_settings, channel_target_name, hold, project, sku,
    stock_events,
};
use super::{BenchArgs, bench_config, rate};
use crate::app::{AppBuilder, AppState};
use crate::runtime::delivery::{Deliverer, DeliveryFuture, DeliveryOutcome};

const CALLERS: usize = 64;

/// An order as a channel sends it: one to three lines of listed SKUs, priced.
fn order_body(n: usize, skus: usize, rng: &mut Rng) -> Value {
    let lines: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| {
            json!({"channel_sku": format!("{}-{}", CHANNELS[0], sku(rng.below(skus))),
                "quantity": 1 + rng.below(2), "unit_price": "12.50", "currency": "USD"})
        })
        .collect();
    json!({"channel": CHANNELS[0], "external_id": format!("B-{n:08}"), "lines": lines,
        "ship_to": {"name": "Ada Lovelace", "address1": "1 Main St", "city": "Solon",
            "postal_code": "44139", "country": "US"}})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

/// Takes `bodies` from `CALLERS` concurrent callers; returns orders per second and how many
/// were held (submitted to the ERP).
async fn take_all(state: &Arc<AppState>, bodies: Vec<Value>) -> anyhow::Result<(f64, usize)> {
    let n = bodies.len();
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for worker in 0..CALLERS {
        let (state, bodies) = (state.clone(), bodies.clone());
        tasks.spawn(async move {
            let mut held = 0;
            for body in bodies.iter().skip(worker).step_by(CALLERS) {
                let order = crate::orders::parse(body)
                    .map_err(|e| anyhow::anyhow!("a bench order does not parse: {e:?}"))?;
                let taken = crate::orders::take(&state, order, "bench").await?;
                if taken.order.status == Status::Submitted {
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
    Ok((rate(n, started.elapsed()), held))
}

/// Takes orders at `per_second` for `seconds`, each on its own task; returns each answer's
/// time in milliseconds, sorted.
async fn take_at_rate(
    state: &Arc<AppState>,
    per_second: usize,
    seconds: usize,
    skus: usize,
) -> anyhow::Result<Vec<f64>> {
    let per_tick = (per_second / 100).max(1);
    let mut rng = Rng(0xA5A5_0001);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    for t in 0..seconds.max(1) * 100 {
        tick.tick().await;
        for j in 0..per_tick {
            let body = order_body(10_000_000 + t * per_tick + j, skus, &mut rng);
            let state = state.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let order = crate::orders::parse(&body)
                    .map_err(|e| anyhow::anyhow!("a bench order does not parse: {e:?}"))?;
                crate::orders::take(&state, order, "bench").await?;
                Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64() * 1000.0)
            });
        }
    }
    let mut times = Vec::new();
    while let Some(done) = tasks.join_next().await {
        times.push(done??);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

pub(super) async fn run(args: &BenchArgs, run_dir: &std::path::Path) -> anyhow::Result<()> {
    let skus = args.skus.max(2);
    let orders = args.orders;
    println!(
        "\norders: {orders} orders of 1 to 3 lines over {skus} SKUs from {CALLERS} callers; \
         latency at {}/s for {} s",
        args.order_rate, args.order_seconds
    );
    println!(
        "  backend    ingestion | reservations alone (same run) | ratio   latency p50 / p99 / max"
    );
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
            None => run_dir.join("orders.db").display().to_string(),
        };
        let result = ingestion(args, &db, skus, orders, backend).await;
        if let Some(s) = schema {
            s.drop().await;
        }
        result?;
    }
    lifecycle(args, run_dir, skus).await
}

async fn ingestion(
    args: &BenchArgs,
    db: &str,
    skus: usize,
    orders: usize,
    backend: &str,
) -> anyhow::Result<()> {
    let app = AppBuilder::new(bench_config(db, args.durability))
        .build()
        .await?;
    let state = app.state().clone();
    catalog(&state.store, skus, 1).await?;
    let now = state.clock.now();
    // Stock everywhere for every order; the reservations baseline runs on the same SKUs.
    for chunk in stock_events(skus, 10 * orders + 10, 10 * orders + 10)?.chunks(1000) {
        state.store.append(chunk.to_vec(), now).await?;
    }
    project(&state).await?;
    state.catalog.get(&state.store).await?;
    let mut rng = Rng(0x0DD5_EED5);
    let bodies: Vec<Value> = (0..orders).map(|n| order_body(n, skus, &mut rng)).collect();
    let (ours, held) = take_all(&state, bodies).await?;
    anyhow::ensure!(held == orders, "{held} of {orders} orders were held");
    let (reservations, _) = hold(&state.store, orders, skus, false).await?;
    // A rate the backend cannot sustain measures its queue, not its latency: then half its
    // capacity is measured instead, and said so.
    let sustainable = ours * 0.8;
    let order_rate = if (args.order_rate as f64) <= sustainable {
        args.order_rate
    } else {
        ((ours * 0.5) as usize / 100).max(1) * 100
    };
    let times = take_at_rate(&state, order_rate, args.order_seconds, skus).await?;
    let note = if order_rate == args.order_rate {
        String::new()
    } else {
        format!(
            " at {order_rate}/s: {}/s is beyond what it sustains",
            args.order_rate
        )
    };
    println!(
        "  {backend:<10} {ours:>8.0}/s | {reservations:>8.0}/s | {:.2}   {:.1} / {:.1} / {:.1} ms ({} orders{note})",
        ours / reservations.max(1e-9),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0),
        times.len()
    );
    state.store.close().await;
    Ok(())
}

/// The fake ERP: confirms sales orders, answers invoices and confirms journals by appending the
/// events an ERP connector would.
#[derive(Default)]
struct FakeErp {
    state: OnceLock<Arc<AppState>>,
}

/// The fake warehouse: ships every release whole, at once.
#[derive(Default)]
struct FakeWarehouse {
    state: OnceLock<Arc<AppState>>,
}

async fn answer(
    state: Option<&Arc<AppState>>,
    id: String,
    kind: &str,
    data: Value,
) -> DeliveryOutcome {
    let Some(state) = state else {
        return DeliveryOutcome::Retry {
            error: "not started".into(),
            after_ms: Some(10),
        };
    };
    let event = match NewEvent::new(&id, "/bench/erp", kind, Some(&data)) {
        Ok(e) => e,
        Err(e) => {
            return DeliveryOutcome::Retry {
                error: e.to_string(),
                after_ms: None,
            };
        }
    };
    match crate::ingest::accept_events(state, vec![event]).await {
        Ok(_) => DeliveryOutcome::Delivered,
        Err(e) => DeliveryOutcome::Retry {
            error: e.to_string(),
            after_ms: None,
        },
    }
}

impl Deliverer for FakeErp {
    fn deliver<'a>(&'a self, action: &'a crossdock_store::ClaimedAction) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let p: Value = serde_json::from_str(&action.payload).unwrap_or_default();
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let order = text(&p["order_id"]);
            let (id, kind, data) = match p["type"].as_str() {
                Some("erp.sales_order.create") => (
                    format!("so-{order}"),
                    "erp.sales_order.confirmed",
                    json!({"order_id": order, "erp_order": format!("SO-{order}")}),
                ),
                Some("erp.invoice.create") => {
                    let shipment = text(&p["action"]["shipment"]);
                    (
                        format!("inv-{order}-{shipment}"),
                        "invoice.created",
                        json!({"order_id": order, "shipment": shipment, "invoice": format!("INV-{order}")}),
                    )
                }
                Some("erp.journal.post") => {
                    let batch = text(&p["batch"]);
                    (
                        format!("je-{batch}"),
                        "erp.journal.posted",
                        json!({"batch": batch, "journal": format!("JE-{batch}")}),
                    )
                }
                _ => return DeliveryOutcome::Delivered,
            };
            answer(self.state.get(), id, kind, data).await
        })
    }
}

impl Deliverer for FakeWarehouse {
    fn deliver<'a>(&'a self, action: &'a crossdock_store::ClaimedAction) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let p: Value = serde_json::from_str(&action.payload).unwrap_or_default();
            if p["type"] != "fulfillment.release" {
                return DeliveryOutcome::Delivered;
            }
            let order = p["order_id"].as_str().unwrap_or_default().to_owned();
            let lines: Vec<Value> = p["lines"]
                .as_array()
                .map(|lines| {
                    lines
                        .iter()
                        .map(|l| json!({"line": l["line"], "quantity": l["quantity"]}))
                        .collect()
                })
                .unwrap_or_default();
            let data = json!({"order_id": order, "shipment": format!("S-{order}"), "lines": lines,
                "carrier": "UPSN", "tracking": "1Z"});
            answer(
                self.state.get(),
                format!("ship-{order}"),
                "shipment.confirmed",
                data,
            )
            .await
        })
    }
}

async fn lifecycle(args: &BenchArgs, run_dir: &std::path::Path, skus: usize) -> anyhow::Result<()> {
    let orders = args.lifecycle_orders;
    let db = run_dir.join("lifecycle.db").display().to_string();
    let erp = Arc::new(FakeErp::default());
    let warehouse = Arc::new(FakeWarehouse::default());
    let mut config = bench_config(&db, args.durability);
    config.postings.interval_s = 0;
    let mut settings = channel_settings();
    settings.in_flight_max = 64;
    let app = AppBuilder::new(config)
        .target("erp", settings, erp.clone())
        .target(
            &format!("fulfillment-{}", LOCATIONS[0]),
            settings,
            warehouse.clone(),
        )
        .target(
            &channel_target_name(CHANNELS[0]),
            settings,
            Arc::new(Accept),
        )
        .build()
        .await?;
    let state = app.state().clone();
    let _ = erp.state.set(state.clone());
    let _ = warehouse.state.set(state.clone());
    catalog(&state.store, skus, 1).await?;
    let now = state.clock.now();
    for chunk in stock_events(skus, 10 * orders + 10, 10 * orders + 10)?.chunks(1000) {
        state.store.append(chunk.to_vec(), now).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    // Let the engine apply the stock before the clock starts.
    let head = state.store.head_seq().await?;
    let inventory = crossdock_store::Projection::Inventory.consumer_name();
    while !state
        .store
        .consumers()
        .await?
        .iter()
        .any(|c| c.name == inventory && c.position >= head)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rng = Rng(0x11FE_C1C1);
    let bodies: Vec<Value> = (0..orders).map(|n| order_body(n, skus, &mut rng)).collect();
    let started = Instant::now();
    let (ingest_rate, held) = take_all(&state, bodies).await?;
    anyhow::ensure!(
        held == orders,
        "{held} of {orders} lifecycle orders were held"
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let closed = state
            .store
            .orders(crossdock_store::OrderQuery {
                status: Some("closed".into()),
                limit: orders + 1,
                ..crossdock_store::OrderQuery::default()
            })
            .await?
            .len();
        if closed >= orders {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{closed} of {orders} orders closed after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_in = started.elapsed();
    let posting_started = Instant::now();
    let batches = crate::postings::run(&state).await?;
    let units: i64 = batches.iter().map(|b| b.units).sum();
    loop {
        let open = state
            .store
            .postings(crossdock_store::PostingQuery {
                status: Some("queued".into()),
                limit: 10,
                ..crossdock_store::PostingQuery::default()
            })
            .await?;
        if open.is_empty() {
            break;
        }
        anyhow::ensure!(
            posting_started.elapsed() < Duration::from_secs(60),
            "journal batches not confirmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posted_in = posting_started.elapsed();
    let closed = closed_orders(&state, orders).await?;
    println!(
        "\nlifecycle: {orders} orders taken at {ingest_rate:.0}/s, all closed (ERP confirmed, released, \
         shipped, invoiced) in {:.1} s: {:.0} orders/s sustained; posting: {} batch(es), {units} units, \
         confirmed {:.0} ms after the run",
        closed_in.as_secs_f64(),
        rate(orders, closed_in),
        batches.len(),
        posted_in.as_secs_f64() * 1000.0
    );
    print_steps(&state, &closed).await?;

    // Then at a steady rate the hub keeps up with: each step's own time.
    let steady = args.lifecycle_rate.max(1) * args.order_seconds.max(1);
    take_at_rate(&state, args.lifecycle_rate, args.order_seconds, skus).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let steady_rows = loop {
        let rows: Vec<_> = closed_orders(&state, orders + steady)
            .await?
            .into_iter()
            .filter(|r| r.external_id.as_str() >= STEADY_FIRST)
            .collect();
        if rows.len() >= steady {
            break rows;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {steady} steady orders closed after 10 minutes",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "  at a steady {}/s for {} s ({steady} orders), each order's steps:",
        args.lifecycle_rate, args.order_seconds
    );
    print_steps(&state, &steady_rows).await?;
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// The external id of the first order `take_at_rate` sends.
const STEADY_FIRST: &str = "B-10000000";

async fn closed_orders(
    state: &AppState,
    limit: usize,
) -> anyhow::Result<Vec<crossdock_store::OrderRow>> {
    Ok(state
        .store
        .orders(crossdock_store::OrderQuery {
            status: Some("closed".into()),
            limit: limit + 1,
            ..crossdock_store::OrderQuery::default()
        })
        .await?)
}

/// Prints how long each step took (p50/p99), from the orders' own timelines.
async fn print_steps(state: &AppState, rows: &[crossdock_store::OrderRow]) -> anyhow::Result<()> {
    let steps = [
        (
            "taken -> submitted to the ERP",
            Status::Received,
            Status::Submitted,
        ),
        (
            "submitted -> ERP confirmed",
            Status::Submitted,
            Status::Confirmed,
        ),
        (
            "confirmed -> released to the warehouse",
            Status::Confirmed,
            Status::Released,
        ),
        ("released -> shipped", Status::Released, Status::Shipped),
        ("shipped -> invoiced", Status::Shipped, Status::Invoiced),
        ("taken -> closed", Status::Received, Status::Closed),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); steps.len()];
    for row in rows {
        let Some(stored) = crate::orders::load(state, &row.id).await? else {
            continue;
        };
        let at = |s: Status| {
            stored
                .order
                .history
                .iter()
                .find(|h| h.status == s)
                .map(|h| h.at.unix_micros())
        };
        for (i, (_, from, to)) in steps.iter().enumerate() {
            if let (Some(a), Some(b)) = (at(*from), at(*to)) {
                times[i].push((b - a) as f64 / 1000.0);
            }
        }
    }
    for ((what, _, _), mut figures) in steps.iter().zip(times) {
        figures.sort_by(f64::total_cmp);
        println!(
            "    {what:<40} p50 {:>8.1} ms   p99 {:>8.1} ms",
            percentile(&figures, 0.5),
            percentile(&figures, 0.99)
        );
    }
    Ok(())
}

/// A channel that takes every update.
struct Accept;

impl Deliverer for Accept {
    fn deliver<'a>(&'a self, _: &'a crossdock_store::ClaimedAction) -> DeliveryFuture<'a> {
        Box::pin(async { DeliveryOutcome::Delivered })
    }
}
