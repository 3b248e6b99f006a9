//! Instrumentation: every metric crossdock exports, by name, rendered in the Prometheus text
//! format. Counters live here; gauges that describe stored state (consumer lag, outbox depth)
//! are read from the store when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossdock_store::{ConsumerPosition, OutboxCount};

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, slot) in BUCKETS_S.iter().zip(&self.counts) {
            if seconds <= *bound {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, slot) in BUCKETS_S.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                slot.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// How a delivery ended, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryResult {
    Delivered,
    Retry,
    DeadLettered,
}

impl DeliveryResult {
    const fn label(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Retry => "retry",
            DeliveryResult::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    events_accepted: AtomicU64,
    events_duplicate: AtomicU64,
    event_requests_rejected: AtomicU64,
    append_seconds: Histogram,
    deliveries: Mutex<BTreeMap<(String, DeliveryResult), u64>>,
    delivery_seconds: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    http_responses: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    pub fn events_appended(&self, accepted: usize, duplicates: usize, elapsed: Duration) {
        self.events_accepted
            .fetch_add(accepted as u64, Ordering::Relaxed);
        self.events_duplicate
            .fetch_add(duplicates as u64, Ordering::Relaxed);
        self.append_seconds.observe(elapsed);
    }

    pub fn event_request_rejected(&self) {
        self.event_requests_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn delivery(&self, target: &str, result: DeliveryResult, elapsed: Duration) {
        if let Ok(mut map) = self.deliveries.lock() {
            *map.entry((target.to_owned(), result)).or_default() += 1;
        }
        let histogram = self
            .delivery_seconds
            .lock()
            .ok()
            .map(|mut map| map.entry(target.to_owned()).or_default().clone());
        if let Some(h) = histogram {
            h.observe(elapsed);
        }
    }

    pub fn http_response(&self, status: u16) {
        if let Ok(mut map) = self.http_responses.lock() {
            *map.entry(status).or_default() += 1;
        }
    }

    /// Renders everything; `head`, `consumers`, `outbox` and `statuses` come from the store at
    /// scrape time.
    pub fn render(
        &self,
        head: i64,
        consumers: &[ConsumerPosition],
        outbox: &[OutboxCount],
        statuses: &[crossdock_store::StatusCount],
    ) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "crossdock_events_ingested_total",
            "Events newly appended to the log.",
            self.events_accepted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "crossdock_events_duplicate_total",
            "Events received again and dropped as duplicates of (source, id).",
            self.events_duplicate.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "crossdock_event_requests_rejected_total",
            "Event requests rejected as invalid; nothing of them reached the log.",
            self.event_requests_rejected.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP crossdock_append_seconds Time from an append request to its durable commit.\n\
             # TYPE crossdock_append_seconds histogram"
        );
        self.append_seconds
            .render(&mut out, "crossdock_append_seconds", "");
        let _ = writeln!(
            out,
            "# HELP crossdock_log_head_seq The highest sequence number in the event log.\n\
             # TYPE crossdock_log_head_seq gauge\ncrossdock_log_head_seq {head}"
        );
        let _ = writeln!(
            out,
            "# HELP crossdock_consumer_lag_events Events in the log not yet applied by a consumer.\n\
             # TYPE crossdock_consumer_lag_events gauge"
        );
        for c in consumers {
            let lag = (head - c.position).max(0);
            let _ = writeln!(
                out,
                "crossdock_consumer_lag_events{{consumer=\"{}\"}} {lag}",
                escape(&c.name)
            );
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_outbox_actions Open outbox actions by target and status.\n\
             # TYPE crossdock_outbox_actions gauge"
        );
        for c in outbox {
            let _ = writeln!(
                out,
                "crossdock_outbox_actions{{target=\"{}\",status=\"{}\"}} {}",
                escape(&c.target),
                c.status.as_str(),
                c.count
            );
        }
        for (kind, name, help) in [
            (
                "order",
                "crossdock_orders",
                "Orders by status (exception: stopped, with a reason, for a person).",
            ),
            ("return", "crossdock_returns", "Returns by status."),
            (
                "posting_batch",
                "crossdock_posting_batches",
                "Journal batches by status (queued: not yet confirmed by the ERP).",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for c in statuses.iter().filter(|c| c.kind == kind) {
                let _ = writeln!(
                    out,
                    "{name}{{status=\"{}\"}} {}",
                    escape(&c.status),
                    c.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_dead_letters Actions in the dead-letter queue, by target.\n\
             # TYPE crossdock_dead_letters gauge"
        );
        for c in outbox
            .iter()
            .filter(|c| c.status == crossdock_store::ActionStatus::Dead)
        {
            let _ = writeln!(
                out,
                "crossdock_dead_letters{{target=\"{}\"}} {}",
                escape(&c.target),
                c.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_deliveries_total Delivery attempts by target and result.\n\
             # TYPE crossdock_deliveries_total counter"
        );
        if let Ok(map) = self.deliveries.lock() {
            for ((target, result), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "crossdock_deliveries_total{{target=\"{}\",result=\"{}\"}} {n}",
                    escape(target),
                    result.label()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_delivery_seconds Time one delivery attempt took, by target.\n\
             # TYPE crossdock_delivery_seconds histogram"
        );
        if let Ok(map) = self.delivery_seconds.lock() {
            for (target, h) in map.iter() {
                h.render(
                    &mut out,
                    "crossdock_delivery_seconds",
                    &format!("target=\"{}\"", escape(target)),
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_http_responses_total HTTP responses by status code.\n\
             # TYPE crossdock_http_responses_total counter"
        );
        if let Ok(map) = self.http_responses.lock() {
            for (status, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "crossdock_http_responses_total{{status=\"{status}\"}} {n}"
                );
            }
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
