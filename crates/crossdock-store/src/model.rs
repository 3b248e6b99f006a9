//! The records that cross the store's API: inbox messages, append results, consumer positions,
//! outbox actions, attempts and dead letters.

use crossdock_core::money::Amount;
use crossdock_core::{FailureDecision, RetryPolicy, Timestamp};

/// An inbound message exactly as it arrived, before any parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct InboxMessage {
    /// Who sent it: a connector name, `api`, a partner id.
    pub source: String,
    /// How it arrived and how to read it: `http+cloudevents`, `shopify-webhook`, `x12`…
    pub protocol: String,
    /// Transport headers worth keeping, as `(name, value)` pairs.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: Timestamp,
    pub status: InboxStatus,
    pub error: Option<String>,
    pub correlation_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxStatus {
    /// Kept, not yet turned into events.
    Received,
    /// Turned into events.
    Processed,
    /// Could not be turned into events; kept for a fix and a replay.
    Rejected,
}

impl InboxStatus {
    pub const ALL: [InboxStatus; 3] = [
        InboxStatus::Received,
        InboxStatus::Processed,
        InboxStatus::Rejected,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Received => "received",
            InboxStatus::Processed => "processed",
            InboxStatus::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "received" => Some(InboxStatus::Received),
            "processed" => Some(InboxStatus::Processed),
            "rejected" => Some(InboxStatus::Rejected),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct InboxRecord {
    pub id: i64,
    pub message: InboxMessage,
    pub attempts: i64,
    pub processed_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub struct InboxQuery {
    pub status: Option<InboxStatus>,
    pub after_id: i64,
    pub limit: usize,
}

impl InboxQuery {
    /// The `WHERE` clause for the status filter, parameter 2 (see [`conditions`]).
    pub(crate) fn conditions(&self, param: impl Fn(usize, &str) -> String) -> String {
        conditions(&[(self.status.is_some(), 2, "text", "status = #")], param)
    }
}

/// What happened to one event of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResult {
    /// Newly recorded at this sequence number.
    Appended(i64),
    /// Its `(source, id)` was already in the log; nothing changed.
    Duplicate,
}

/// The results of an append, in the order the events were given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub results: Vec<AppendResult>,
}

impl AppendOutcome {
    pub fn appended(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, AppendResult::Appended(_)))
            .count()
    }

    pub fn duplicates(&self) -> usize {
        self.results.len() - self.appended()
    }

    /// The lowest and highest sequence numbers assigned, if any event was new.
    pub fn seq_range(&self) -> Option<(i64, i64)> {
        let seqs = self.results.iter().filter_map(|r| match r {
            AppendResult::Appended(seq) => Some(*seq),
            AppendResult::Duplicate => None,
        });
        seqs.fold(None, |range, seq| match range {
            None => Some((seq, seq)),
            Some((lo, hi)) => Some((lo.min(seq), hi.max(seq))),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerPosition {
    pub name: String,
    pub position: i64,
    pub updated_at: Timestamp,
}

/// An action for an external system, on its way into the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAction {
    /// The delivery target (a configured system), such as `webhook:crm`.
    pub target: String,
    /// Stable across retries and replays; sent to the target so it can drop repeats.
    pub idempotency_key: String,
    /// A newer pending action with the same key replaces an older one (latest value wins).
    pub coalesce_key: Option<String>,
    /// Higher is delivered first.
    pub priority: i32,
    /// The action itself, as JSON text.
    pub payload: String,
    /// Not before this time (a hold), usually now.
    pub not_before: Timestamp,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueResult {
    /// Queued under this id; `replaced` is the pending action it superseded, if any.
    Queued { id: i64, replaced: Option<i64> },
    /// Already queued (same target and idempotency key).
    Duplicate,
}

/// The arguments of [`crate::Store::claim`].
#[derive(Clone, Debug)]
pub struct ClaimRequest<'a> {
    pub target: &'a str,
    pub limit: usize,
    pub in_flight_max: usize,
    pub lease_ms: i64,
    pub policy: RetryPolicy,
    pub now: Timestamp,
}

/// An action taken for delivery. `attempt` identifies this try in acks and failures.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedAction {
    pub id: i64,
    pub target: String,
    pub idempotency_key: String,
    pub coalesce_key: Option<String>,
    pub priority: i32,
    pub payload: String,
    pub attempt: i64,
    /// Attempts made since the action was queued or last replayed, this one included.
    pub attempts_in_budget: i64,
    pub correlation_id: Option<String>,
    /// When the action was queued.
    pub created_at: Timestamp,
}

/// The arguments of [`crate::Store::fail`].
#[derive(Clone, Debug)]
pub struct DeliveryFailure {
    pub id: i64,
    pub attempt: i64,
    pub error: String,
    pub decision: FailureDecision,
    pub now: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionStatus {
    Pending,
    InFlight,
    Delivered,
    Dead,
    Dropped,
    Superseded,
}

impl ActionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "pending",
            ActionStatus::InFlight => "in_flight",
            ActionStatus::Delivered => "delivered",
            ActionStatus::Dead => "dead",
            ActionStatus::Dropped => "dropped",
            ActionStatus::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => ActionStatus::Pending,
            "in_flight" => ActionStatus::InFlight,
            "delivered" => ActionStatus::Delivered,
            "dead" => ActionStatus::Dead,
            "dropped" => ActionStatus::Dropped,
            "superseded" => ActionStatus::Superseded,
            _ => return None,
        })
    }
}

/// An outbox action as stored, for operators (dead letters, traces).
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRecord {
    pub id: i64,
    pub target: String,
    pub idempotency_key: String,
    pub coalesce_key: Option<String>,
    pub priority: i32,
    pub payload: String,
    pub status: ActionStatus,
    pub attempts: i64,
    pub attempts_in_budget: i64,
    pub next_attempt_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_error: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub superseded_by: Option<i64>,
    pub drop_reason: Option<String>,
}

/// One delivery attempt of an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `in_flight`, `delivered`, `failed` or `lease_expired`.
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct DeadLetterQuery {
    pub target: Option<String>,
    pub after_id: i64,
    pub limit: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    Replayed,
    /// A newer action with the same coalescing key exists; replaying would send stale data.
    Superseded {
        by: i64,
    },
    NotFound,
    NotDead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropOutcome {
    Dropped,
    NotFound,
    NotDead,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxCount {
    pub target: String,
    pub status: ActionStatus,
    pub count: i64,
}

/// An API key as created: only a hash of its secret is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    /// The public key id embedded in the token.
    pub id: String,
    /// A unique name among keys that are not revoked.
    pub name: String,
    pub secret_sha256: Vec<u8>,
    /// Comma-separated scopes.
    pub scopes: String,
    /// Set for a key that may see only one channel's data.
    pub channel: Option<String>,
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key: NewApiKey,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCreateOutcome {
    Created,
    /// An active key already has this name.
    NameTaken,
}

/// Which idempotency record to look for, and what makes it the same request.
#[derive(Clone, Debug)]
pub struct IdempotencyLookup<'a> {
    /// The id of the API key making the request; idempotency keys are scoped per API key.
    pub api_key: &'a str,
    pub key: &'a str,
    /// A hash of the method, path and body: the same key with another request is refused.
    pub fingerprint: &'a [u8],
    /// Records created before this are forgotten (the retention window has passed).
    pub expired_before: Timestamp,
}

/// A response kept for replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What the store holds for an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing within the window: the request runs.
    Nothing,
    /// The same request was answered before: answer with this.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
}

/// One administrative or operational action, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// Who: an API key's name, `cli:<user>`, or `system`.
    pub actor: String,
    /// What, as `area.verb`: `key.create`, `dead_letter.replay`, `consumer.reset`…
    pub action: String,
    /// What it was done to: a key name, an action id, a consumer name.
    pub target: String,
    /// `ok`, or a short reason it was refused or failed.
    pub outcome: String,
    pub correlation_id: Option<String>,
    /// More context as JSON text.
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub after_id: i64,
    pub limit: usize,
}

/// Renders the response to an append so it can be kept under its idempotency key.
pub type RenderResponse = Box<dyn FnOnce(&AppendOutcome) -> StoredResponse + Send + Sync>;

/// An append that carries an idempotency key: in one transaction the store looks the key up,
/// and either answers with the kept response or appends and keeps the new response.
pub struct IdempotentAppend {
    pub api_key: String,
    pub key: String,
    pub fingerprint: Vec<u8>,
    pub expired_before: Timestamp,
    pub render: RenderResponse,
}

impl std::fmt::Debug for IdempotentAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotentAppend")
            .field("api_key", &self.api_key)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The outcome of [`crate::Store::append_idempotent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotentOutcome {
    /// Appended (or found to be duplicates); the response is kept.
    Appended(AppendOutcome),
    /// The key was answered before; nothing was appended.
    Recorded(Recorded),
}

/// The outcome of writing one catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogWrite {
    Created,
    Updated,
    /// Refused, changing nothing; each problem points at the member that caused it.
    Refused(Vec<crossdock_core::FieldError>),
    /// The entry it belongs to (a listing's channel) does not exist.
    ParentMissing,
}

/// The problem with a listing of a SKU that is not an item, at `pointer`.
pub(crate) fn not_an_item(
    pointer: String,
    sku: &crossdock_core::catalog::Sku,
) -> crossdock_core::FieldError {
    crossdock_core::FieldError::new(
        pointer,
        format!("{sku} is not an item; create it first (PUT /v1/items/{{sku}})"),
    )
}

/// The outcome of writing many items at once: all of them, or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BulkWrite {
    Written { created: usize, updated: usize },
    Refused(Vec<crossdock_core::FieldError>),
}

/// `(sku, location)`: one position of the ledger.
pub type PositionKey = (
    crossdock_core::catalog::Sku,
    crossdock_core::catalog::LocationId,
);

/// An inventory event that was kept but not applied to a location, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub seq: i64,
    pub sku: crossdock_core::catalog::Sku,
    pub location: crossdock_core::catalog::LocationId,
    pub source: String,
    pub reason: String,
}

/// What a channel listing shows: what the hub computed last, and what the channel last
/// acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityRow {
    pub channel: crossdock_core::catalog::ChannelId,
    pub channel_sku: crossdock_core::catalog::ChannelSku,
    pub sku: crossdock_core::catalog::Sku,
    pub available: i64,
    pub published: Option<i64>,
    /// The value last handed to the outbox for delivery.
    pub queued: Option<i64>,
}

/// A new value a listing may show. The store ranks its update against what the channel last
/// acknowledged: 0 zero-out, 1 decrease (or nothing known of what the channel shows), both due at
/// once, or 2 increase, due at `hold_until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityChange {
    pub channel: crossdock_core::catalog::ChannelId,
    pub channel_sku: crossdock_core::catalog::ChannelSku,
    pub sku: crossdock_core::catalog::Sku,
    pub available: i64,
    /// When an increase may be sent: the end of the channel's hold.
    pub hold_until: Timestamp,
}

/// A listing whose update is due: its value differs from the last one queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueListing {
    pub channel_sku: crossdock_core::catalog::ChannelSku,
    pub sku: crossdock_core::catalog::Sku,
    pub available: i64,
    pub published: Option<i64>,
    pub rank: i32,
    /// Names this value; queued only while it is still the listing's value.
    pub version: i64,
}

/// What a channel has due, and how busy its delivery target is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AvailabilityDue {
    /// Zero-outs first, then decreases, then increases whose hold is over; oldest first.
    pub listings: Vec<DueListing>,
    /// The target's actions pending or in flight.
    pub open: i64,
    /// When the next held increase becomes due, if one waits.
    pub next_due: Option<Timestamp>,
}

/// Builds the one outbox action that carries a batch of due listings to their channel; called
/// inside the transaction that marks them queued.
pub type FeedBuilder = Box<dyn FnOnce(&[DueListing]) -> crate::Result<NewAction> + Send>;

/// Everything one inventory batch changes, committed with the consumer's position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InventoryWrites {
    /// The first sequence number of the batch: deltas from here on are new.
    pub new_from_seq: i64,
    /// The new state of every position the batch changed.
    pub positions: Vec<PositionWrite>,
    pub divergences: Vec<Divergence>,
    /// Listings whose available changed; the channel feeder queues their updates.
    pub availability: Vec<AvailabilityChange>,
    /// Reservations a shipment of their order consumed. The store takes at most what the order
    /// still holds at that position, once per shipment event.
    pub converted: Vec<Conversion>,
}

/// A position as the engine writes it (its `reserved` is not written: the reservation
/// primitive owns it): its latest count and allocation, its on hand, and the deltas new in the
/// batch — those stored before stay, those the count includes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionWrite {
    pub key: PositionKey,
    pub count: Option<crossdock_core::inventory::Snapshot>,
    pub allocated: Option<crossdock_core::inventory::Snapshot>,
    pub on_hand: i64,
    pub new_deltas: Vec<crossdock_core::inventory::Delta>,
}

impl PositionWrite {
    /// What to write of `position` after a batch whose first event is `new_from_seq`.
    pub fn of(
        key: PositionKey,
        position: &crossdock_core::inventory::Position,
        new_from_seq: i64,
    ) -> PositionWrite {
        PositionWrite {
            key,
            count: position.count,
            allocated: position.allocated,
            on_hand: position.on_hand(),
            new_deltas: position.deltas.since(new_from_seq).to_vec(),
        }
    }
}

/// What a shipment of an order (the event at `seq`) consumed of what the order held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversion {
    pub seq: i64,
    pub order_id: String,
    pub line: ReservationLine,
}

/// The catalog as the inventory engine needs it, read at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogSnapshot {
    pub version: i64,
    pub locations: std::collections::BTreeMap<
        crossdock_core::catalog::LocationId,
        crossdock_core::catalog::Location,
    >,
    pub channels: std::collections::BTreeMap<
        crossdock_core::catalog::ChannelId,
        crossdock_core::catalog::Channel,
    >,
    /// `(channel, channel SKU, SKU)`.
    pub listings: Vec<(
        crossdock_core::catalog::ChannelId,
        crossdock_core::catalog::ChannelSku,
        crossdock_core::catalog::Sku,
    )>,
    pub kits: crossdock_core::catalog::Kits,
}

/// One line of a reservation: units of a stocked SKU held at a location.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReservationLine {
    pub sku: crossdock_core::catalog::Sku,
    pub location: crossdock_core::catalog::LocationId,
    pub quantity: i64,
}

/// Builds the event that records a reservation change in the log, from the lines it changed.
pub type ReservationEvent = Box<dyn FnOnce(&[ReservationLine]) -> crossdock_core::NewEvent + Send>;

/// A request to hold stock for an order: all lines or none.
pub struct ReserveRequest {
    pub(crate) order_id: String,
    /// Merged by position and in position order ([`merge_lines`]).
    pub(crate) lines: Vec<ReservationLine>,
    /// Appended in the same transaction when the reservation is made.
    pub(crate) event: crossdock_core::NewEvent,
    pub(crate) now: Timestamp,
}

impl ReserveRequest {
    /// A request for these lines (stocked SKUs only, kits expanded by the caller; lines of the
    /// same position are added up). Its event is built here, from the merged lines, so that the
    /// single writer only stores it.
    pub fn new(
        order_id: String,
        lines: Vec<ReservationLine>,
        now: Timestamp,
        event: impl FnOnce(&[ReservationLine]) -> crossdock_core::NewEvent,
    ) -> Self {
        let lines = merge_lines(lines);
        let event = event(&lines);
        ReserveRequest {
            order_id,
            lines,
            event,
            now,
        }
    }
}

impl std::fmt::Debug for ReserveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReserveRequest")
            .field("order_id", &self.order_id)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

/// A line that could not be held: what it needed and what was available to promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub sku: crossdock_core::catalog::Sku,
    pub location: crossdock_core::catalog::LocationId,
    pub needed: i64,
    pub atp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Held (these lines, merged by position), and the event appended at this sequence number.
    Reserved {
        seq: i64,
        lines: Vec<ReservationLine>,
    },
    /// The order already holds these lines; nothing changed.
    AlreadyReserved(Vec<ReservationLine>),
    /// Not enough stock for these lines; nothing was held.
    Short(Vec<Shortfall>),
}

/// An open reservation, for reads and explanations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: String,
    pub sku: crossdock_core::catalog::Sku,
    pub location: crossdock_core::catalog::LocationId,
    pub quantity: i64,
    pub created_at: Timestamp,
}

/// Merges lines of the same position and sorts them by position: the order locks are taken in.
pub fn merge_lines(lines: Vec<ReservationLine>) -> Vec<ReservationLine> {
    let mut merged: std::collections::BTreeMap<
        (
            crossdock_core::catalog::Sku,
            crossdock_core::catalog::LocationId,
        ),
        i64,
    > = std::collections::BTreeMap::new();
    for l in lines {
        let q = merged.entry((l.sku, l.location)).or_default();
        *q = q.saturating_add(l.quantity);
    }
    merged
        .into_iter()
        .map(|((sku, location), quantity)| ReservationLine {
            sku,
            location,
            quantity,
        })
        .collect()
}

/// Which control number series of a partner: ISA13 or GS06.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdiControl {
    Interchange,
    Group,
}

impl EdiControl {
    pub fn as_str(self) -> &'static str {
        match self {
            EdiControl::Interchange => "interchange",
            EdiControl::Group => "group",
        }
    }
}

/// The highest X12 control number (nine digits); series wrap back to 1 after it.
pub const EDI_CONTROL_MAX: u32 = 999_999_999;

/// Whether an inbound interchange was seen before (same sender, same ISA13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdiInbound {
    New,
    Duplicate {
        partner: String,
        inbox_id: Option<i64>,
        received_at: Timestamp,
    },
}

/// A functional group crossdock sent to a partner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdiGroupSent {
    pub partner: String,
    pub group_control: String,
    pub functional_id: String,
    pub interchange_control: String,
    pub sets: i64,
    pub sent_at: Timestamp,
}

/// A group sent, and what its 997 said (`status`: `sent` until one arrives, then `accepted`,
/// `accepted_with_errors`, `partial` or `rejected`).
#[derive(Clone, Debug, PartialEq)]
pub struct EdiGroupRecord {
    pub group: EdiGroupSent,
    pub status: String,
    pub ack_at: Option<Timestamp>,
    pub ack_detail: Option<serde_json::Value>,
}

/// What recording a received 997 did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdiAckOutcome {
    /// The group was known; `previous` is the status it had.
    Recorded { previous: String },
    /// No group with that control number was sent to the partner.
    UnknownGroup,
}

/// Which sent groups to list.
#[derive(Clone, Debug, Default)]
pub struct EdiGroupQuery {
    pub partner: Option<String>,
    pub status: Option<String>,
    /// Only groups sent before this time (for "still unacknowledged after an hour").
    pub sent_before: Option<Timestamp>,
    pub limit: usize,
}

/// The first of `count` consecutive numbers from a series at `next`, and the series' next
/// value after them; a run that would pass the nine-digit limit starts again at 1.
pub(crate) fn take_controls(next: Option<i64>, count: u32) -> (u32, i64) {
    let count = i64::from(count.max(1));
    let mut first = next.unwrap_or(1).max(1);
    if first + count - 1 > i64::from(EDI_CONTROL_MAX) {
        first = 1;
    }
    (u32::try_from(first).unwrap_or(1), first + count)
}

#[cfg(test)]
mod edi_tests {
    use super::*;

    #[test]
    fn control_number_series_run_on_and_wrap_at_nine_digits() {
        assert_eq!(take_controls(None, 1), (1, 2));
        assert_eq!(take_controls(Some(41), 3), (41, 44));
        assert_eq!(
            take_controls(Some(999_999_999), 1),
            (999_999_999, 1_000_000_000)
        );
        assert_eq!(take_controls(Some(1_000_000_000), 1), (1, 2));
        assert_eq!(take_controls(Some(999_999_998), 5), (1, 6));
    }
}

/// Where one kind of saga (orders, returns) is kept: both have the same shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SagaTable {
    pub table: &'static str,
    pub deliveries: &'static str,
    /// The deliveries table's column naming the saga.
    pub owner: &'static str,
}

pub(crate) const ORDERS: SagaTable = SagaTable {
    table: "orders",
    deliveries: "order_deliveries",
    owner: "order_id",
};

pub(crate) const RETURNS: SagaTable = SagaTable {
    table: "returns",
    deliveries: "return_deliveries",
    owner: "return_id",
};

/// An order (or a return: its channel and RMA number) to record, with the keys it is
/// deduplicated by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub id: String,
    pub channel: String,
    pub external_id: String,
    /// A hash of what was ordered: the same external id with other content is not a repeat.
    pub content_hash: String,
    /// The transport's delivery id (a webhook id, a file name and line), when there is one.
    pub delivery_id: Option<String>,
    pub status: String,
    pub until: Option<Timestamp>,
    /// The saga's record, as JSON.
    pub state: String,
    pub now: Timestamp,
}

/// An order's first hold and the actions that follow it, written in the same transaction as the
/// order itself (see [`crate::Store::order_take`]).
pub struct TakeHold {
    pub reserve: ReserveRequest,
    pub actions: Vec<NewAction>,
}

/// What [`crate::Store::order_take`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderTaken {
    /// Recorded, held and its actions queued; `seq` is the reservation event's.
    Held { seq: i64 },
    /// Nothing written: the order was taken before, or its stock is not there. Take it the
    /// ordinary way ([`crate::Store::order_create`]).
    NotHeld,
}

/// What recording an order did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderCreate {
    Created,
    /// Already taken (by this delivery id, or by its channel and external id): the order it is,
    /// and whether the content is the same.
    Duplicate {
        id: String,
        same_content: bool,
    },
}

/// An order as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    pub channel: String,
    pub external_id: String,
    pub status: String,
    pub until: Option<Timestamp>,
    pub state: String,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which orders to list, oldest update first.
#[derive(Clone, Debug, Default)]
pub struct OrderQuery {
    pub status: Option<String>,
    pub channel: Option<String>,
    /// Only orders not updated since this time ("stuck for an hour").
    pub updated_before: Option<Timestamp>,
    /// Only orders whose current state stops waiting at or before this time.
    pub due_before: Option<Timestamp>,
    pub limit: usize,
}

impl OrderQuery {
    /// The `WHERE` clause for the filters this query has: parameter 1 the status, 2 the
    /// channel, 3 the update time, 5 the deadline (see [`conditions`]).
    pub(crate) fn conditions(&self, param: impl Fn(usize, &str) -> String) -> String {
        conditions(
            &[
                (self.status.is_some(), 1, "text", "status = #"),
                (self.channel.is_some(), 2, "text", "channel = #"),
                (self.updated_before.is_some(), 3, "bigint", "updated_at < #"),
                (self.due_before.is_some(), 5, "bigint", "until <= #"),
            ],
            param,
        )
    }
}

/// A `WHERE` clause written for the filters a listing has: each `(given, parameter number, SQL
/// type, condition)` reads as its condition (`#` its parameter) when given, and as its
/// parameter being null otherwise; `param` writes a parameter as the backend does. Written so
/// because `(?1 IS NULL OR status = ?1)` is served by no index: the deadline sweep, every
/// second, read every order and return there was, and the inbox listed by status every
/// message kept.
pub(crate) fn conditions(
    filters: &[(bool, usize, &str, &str)],
    param: impl Fn(usize, &str) -> String,
) -> String {
    let terms: Vec<String> = filters
        .iter()
        .map(|(given, n, ty, condition)| {
            let p = param(*n, ty);
            if *given {
                condition.replace('#', &p)
            } else {
                format!("{p} IS NULL")
            }
        })
        .collect();
    terms.join(" AND ")
}

/// A line of money to post to the ERP: a shipped order line (a positive amount) or a received
/// return line (a negative one), recorded once by its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingLine {
    /// Stable for the fact it records (`shipment/<order>/<shipment>/<line>`, …): recording it
    /// again changes nothing.
    pub key: String,
    pub channel: String,
    pub currency: String,
    /// The business day it belongs to, `YYYY-MM-DD`.
    pub day: String,
    /// The order or return it comes from.
    pub source: String,
    pub units: i64,
    pub amount: Amount,
}

/// A journal batch: the lines of one channel, currency and business day gathered by one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingBatch {
    /// `<day>.<channel>.<currency>.<n>`: the n-th batch of that day, channel and currency; the
    /// ERP's idempotency key.
    pub key: String,
    pub channel: String,
    pub currency: String,
    pub day: String,
    pub lines: i64,
    pub units: i64,
    pub amount: Amount,
    /// `queued` (its `erp.journal.post` action is in the outbox) or `posted` (the ERP confirmed).
    pub status: String,
    /// The ERP's journal number, once confirmed.
    pub journal: Option<String>,
    pub action_id: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which journal batches to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct PostingQuery {
    pub status: Option<String>,
    pub channel: Option<String>,
    pub limit: usize,
}

/// Builds the outbox action posting a batch (the store queues it with the batch, in one
/// transaction).
pub type PostingActionBuilder = Box<dyn Fn(&PostingBatch) -> NewAction + Send>;

/// The batch key for the `n`-th batch of a day, channel and currency.
pub(crate) fn posting_batch_key(day: &str, channel: &str, currency: &str, n: i64) -> String {
    format!("{day}.{channel}.{currency}.{n}")
}

/// How many orders, returns or journal batches are in one status (for metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCount {
    /// `order`, `return` or `posting_batch`.
    pub kind: String,
    pub status: String,
    pub count: i64,
}

/// The query both backends count statuses with.
pub(crate) const STATUS_COUNTS: &str = "SELECT 'order', status, COUNT(*) FROM orders GROUP BY status \
     UNION ALL SELECT 'return', status, COUNT(*) FROM returns GROUP BY status \
     UNION ALL SELECT 'posting_batch', status, COUNT(*) FROM posting_batches GROUP BY status";
