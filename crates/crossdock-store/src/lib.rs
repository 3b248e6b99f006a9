//! crossdock's persistence: the inbox, the event log, consumer positions and projections, the
//! outbox with its attempts and dead letters. One API, two backends: an embedded SQLite file (the
//! default) and PostgreSQL (for several nodes). This is the only crate that writes SQL.
//!
//! Every time value crosses this API as a [`Timestamp`] supplied by the caller: the store never
//! reads the clock, so tests drive time explicitly.

/// The inbox columns both backends select, in the order their row readers expect.
macro_rules! inbox_columns {
    () => {
        "id, source, protocol, headers, body, received_at, status, error, attempts, processed_at, correlation_id"
    };
}

/// The API key columns both backends select, in the order their row readers expect.
macro_rules! key_columns {
    () => {
        "id, name, secret_sha256, scopes, channel, rate_per_second, burst, created_at, revoked_at"
    };
}

/// The audit columns both backends select, in the order their row readers expect.
macro_rules! audit_columns {
    () => {
        "id, at, actor, action, target, outcome, correlation_id, detail"
    };
}

/// The outbox columns both backends select, in the order their row readers expect.
macro_rules! action_columns {
    () => {
        "id, target, idempotency_key, coalesce_key, priority, payload, status, attempts, \
         attempts - attempts_base, next_attempt_at, created_at, updated_at, last_error, correlation_id, \
         causation_id, superseded_by, drop_reason"
    };
}

pub mod baseline;
mod catalog_rows;
mod migrate;
mod model;
mod pg;
mod sqlite;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crossdock_core::activity::{ActivityDelta, ActivityEntry, ActivityKey};
use crossdock_core::catalog::{
    Channel, ChannelId, ChannelSku, Item, Listing, Location, LocationId, Sku,
};
use crossdock_core::inventory::Position;
use crossdock_core::{NewEvent, RetryPolicy, StoredEvent, Timestamp};

pub use migrate::MigrationReport;
pub use model::*;

/// How hard a commit works to survive a power failure (SQLite only; PostgreSQL follows its own
/// `synchronous_commit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is synced to disk before it is acknowledged (`synchronous=FULL`).
    Full,
    /// Commits survive a crash of crossdock but the last ones may be lost in a power failure
    /// (`synchronous=NORMAL` in WAL mode).
    Normal,
}

/// Where and how to open the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A SQLite file path (`crossdock.db`, `sqlite://path`) or a `postgres://…` URL.
    pub database: String,
    pub durability: Durability,
    /// Appends waiting together are committed together, up to this many events per commit.
    pub group_commit_events_max: usize,
    /// Read connections (SQLite) or pool size (PostgreSQL).
    pub connections_max: u32,
    /// Write requests waiting for the writer before callers are made to wait.
    pub write_queue_max: usize,
}

impl StoreOptions {
    pub fn new(database: impl Into<String>) -> Self {
        StoreOptions {
            database: database.into(),
            durability: Durability::Full,
            group_commit_events_max: 10_000,
            connections_max: 8,
            write_queue_max: 4096,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database.starts_with("postgres://") || self.database.starts_with("postgresql://")
    }
}

/// What went wrong in the store. Clonable because one failed group commit fails many callers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the database cannot be reached or failed: {0}")]
    Unavailable(String),
    #[error(
        "the database schema is at version {found}, newer than this crossdock knows ({known}); upgrade crossdock"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "migrations are not applied: the schema is at version {found} of {known}; run `crossdock migrate`"
    )]
    NotMigrated { found: i64, known: i64 },
    #[error("consumer {name} was expected at position {expected} but is at {actual}")]
    PositionMoved {
        name: String,
        expected: i64,
        actual: i64,
    },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    #[error("invalid request to the store: {0}")]
    Invalid(String),
    /// A write refused by a catalog rule; the store's methods turn it into their refusal value.
    #[error("refused: {}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Refused(Vec<crossdock_core::FieldError>),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(pg::PgStore),
}

/// The handle every part of crossdock uses to reach storage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// Catalog writes made through this handle (and its clones), so a cache of the catalog can
    /// tell its own writes without asking the database.
    catalog_writes: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish()
    }
}

/// Calls the same method on whichever backend this store has.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &*$self.backend {
            Backend::Sqlite(b) => b.$method($($arg),*).await,
            Backend::Postgres(b) => b.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(options: &StoreOptions) -> Result<Store> {
        let store = Store::connect(options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database without touching its schema.
    pub async fn connect(options: &StoreOptions) -> Result<Store> {
        let backend = if options.is_postgres() {
            Backend::Postgres(pg::PgStore::connect(options).await?)
        } else {
            Backend::Sqlite(sqlite::SqliteStore::open(options).await?)
        };
        Ok(Store {
            catalog_writes: Arc::default(),
            backend: Arc::new(backend),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Applies every migration this build knows and the database lacks.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        dispatch!(self.migrate())
    }

    /// Succeeds when the database answers and its schema is exactly what this build expects.
    pub async fn check_ready(&self) -> Result<()> {
        dispatch!(self.check_ready())
    }

    /// Waits for queued writes to finish and closes connections.
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    // ---- inbox ----

    /// Keeps an inbound message exactly as received. Returns its inbox id.
    pub async fn inbox_put(&self, message: InboxMessage) -> Result<i64> {
        dispatch!(self.inbox_put(message))
    }

    /// Records what became of an inbox message.
    pub async fn inbox_mark(
        &self,
        id: i64,
        status: InboxStatus,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<bool> {
        dispatch!(self.inbox_mark(id, status, error, now))
    }

    pub async fn inbox_list(&self, query: InboxQuery) -> Result<Vec<InboxRecord>> {
        dispatch!(self.inbox_list(query))
    }

    pub async fn inbox_get(&self, id: i64) -> Result<Option<InboxRecord>> {
        dispatch!(self.inbox_get(id))
    }

    // ---- event log ----

    /// Appends events, skipping any whose `(source, id)` is already in the log. Returns once the
    /// events are durable; concurrent callers share commits.
    pub async fn append(&self, events: Vec<NewEvent>, now: Timestamp) -> Result<AppendOutcome> {
        if events.is_empty() {
            return Ok(AppendOutcome::default());
        }
        dispatch!(self.append(events, now))
    }

    /// Appends under an idempotency key: in one transaction, answers with the response kept for
    /// the key if there is one (appending nothing), or appends and keeps the new response. The
    /// effect and its kept answer are durable together.
    pub async fn append_idempotent(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
        request: IdempotentAppend,
    ) -> Result<IdempotentOutcome> {
        dispatch!(self.append_idempotent(events, now, request))
    }

    /// Events with `seq > after`, in order, at most `limit` of them.
    pub async fn read_events(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        dispatch!(self.read_events(after, limit))
    }

    /// The highest sequence number in the log (0 when empty).
    pub async fn head_seq(&self) -> Result<i64> {
        dispatch!(self.head_seq())
    }

    /// The highest sequence number recorded strictly before `time` (0 if none).
    pub async fn seq_before(&self, time: Timestamp) -> Result<i64> {
        dispatch!(self.seq_before(time))
    }

    // ---- consumers and projections ----

    pub async fn consumers(&self) -> Result<Vec<ConsumerPosition>> {
        dispatch!(self.consumers())
    }

    /// The consumer's position, registering it at 0 if it is new.
    pub async fn consumer_position(&self, name: &str, now: Timestamp) -> Result<i64> {
        dispatch!(self.consumer_position(name, now))
    }

    /// Moves a consumer to `position`; it re-applies everything after it.
    pub async fn reset_consumer(&self, name: &str, position: i64, now: Timestamp) -> Result<()> {
        dispatch!(self.reset_consumer(name, position, now))
    }

    /// Applies a projection's changes and moves its position from `from` to `to` in one
    /// transaction. Fails with [`StoreError::PositionMoved`] (changing nothing) when the consumer
    /// is no longer at `from`, so a batch is applied once even if two runners race.
    pub async fn commit_projection(
        &self,
        name: &str,
        from: i64,
        to: i64,
        writes: ProjectionWrites,
        now: Timestamp,
    ) -> Result<()> {
        dispatch!(self.commit_projection(name, from, to, writes, now))
    }

    /// Clears a projection's state and sets its position to 0, in one transaction, so that it
    /// is rebuilt from the whole log.
    pub async fn clear_projection(&self, projection: Projection, now: Timestamp) -> Result<()> {
        dispatch!(self.clear_projection(projection, now))
    }

    pub async fn source_activity(&self) -> Result<Vec<(ActivityKey, ActivityEntry)>> {
        dispatch!(self.source_activity())
    }

    // ---- outbox ----

    /// Queues actions for delivery. An action whose `(target, idempotency_key)` is already queued
    /// is a no-op; one with a coalescing key replaces the pending action with the same key.
    pub async fn enqueue(
        &self,
        actions: Vec<NewAction>,
        now: Timestamp,
    ) -> Result<Vec<EnqueueResult>> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.enqueue(actions, now))
    }

    /// Takes up to `limit` due actions of one target for delivery, keeping at most
    /// `in_flight_max` in flight for that target and never two with the same coalescing key.
    /// Actions whose lease expired count as a failed attempt first.
    pub async fn claim(&self, claim: ClaimRequest<'_>) -> Result<Vec<ClaimedAction>> {
        dispatch!(self.claim(claim))
    }

    /// Records a successful delivery. `false` if the lease was lost meanwhile.
    pub async fn ack(&self, id: i64, attempt: i64, now: Timestamp) -> Result<bool> {
        dispatch!(self.ack(id, attempt, now))
    }

    /// Records a failed delivery and schedules a retry or dead-letters it.
    pub async fn fail(&self, failure: DeliveryFailure) -> Result<bool> {
        dispatch!(self.fail(failure))
    }

    /// The earliest `next_attempt_at` among pending actions of a target.
    pub async fn next_due(&self, target: &str) -> Result<Option<Timestamp>> {
        dispatch!(self.next_due(target))
    }

    /// Counts of open actions (pending, in flight, dead) by target and status.
    pub async fn outbox_counts(&self) -> Result<Vec<OutboxCount>> {
        dispatch!(self.outbox_counts())
    }

    pub async fn action(&self, id: i64) -> Result<Option<ActionRecord>> {
        dispatch!(self.action(id))
    }

    /// The action a target knows by this idempotency key (until it is purged).
    pub async fn action_by_key(&self, target: &str, key: &str) -> Result<Option<ActionRecord>> {
        dispatch!(self.action_by_key(target, key))
    }

    pub async fn attempts(&self, id: i64) -> Result<Vec<AttemptRecord>> {
        dispatch!(self.attempts(id))
    }

    /// Deletes delivered, superseded and dropped actions last touched before `before`.
    pub async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<u64> {
        dispatch!(self.purge_finished(before, limit))
    }

    // ---- dead letters ----

    pub async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<ActionRecord>> {
        dispatch!(self.dead_letters(query))
    }

    /// Puts a dead letter back to pending with a fresh attempt budget and the same idempotency
    /// key, unless a newer action with the same coalescing key has replaced it.
    pub async fn replay_dead_letter(&self, id: i64, now: Timestamp) -> Result<ReplayOutcome> {
        dispatch!(self.replay_dead_letter(id, now))
    }

    // ---- catalog ----
    //
    // A catalog write that changes what listings show takes the event recording that change
    // (`recorded`): it is appended to the log in the write's own transaction, when the write
    // takes effect, so the engine learns of every such write even across a crash.

    /// Creates or replaces an item; refused (changing nothing) for an unknown component or a kit
    /// cycle.
    pub async fn item_put(
        &self,
        sku: Sku,
        item: Item,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<CatalogWrite> {
        match self.items_put(vec![(sku, item)], now, recorded).await? {
            BulkWrite::Written { created: 1, .. } => Ok(CatalogWrite::Created),
            BulkWrite::Written { .. } => Ok(CatalogWrite::Updated),
            // A single item's problems point into its own body, not into a batch.
            BulkWrite::Refused(errors) => Ok(CatalogWrite::Refused(
                errors
                    .into_iter()
                    .map(|mut e| {
                        if let Some(rest) = e.pointer.strip_prefix("/0") {
                            e.pointer = rest.to_owned();
                        }
                        e
                    })
                    .collect(),
            )),
        }
    }

    /// Creates or replaces many items in one transaction: all of them, or none. Kits may name
    /// components defined in the same batch.
    pub async fn items_put(
        &self,
        items: Vec<(Sku, Item)>,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<BulkWrite> {
        let written = dispatch!(self.items_put(items, now, recorded));
        self.catalog_written();
        written
    }

    pub async fn item_get(&self, sku: &Sku) -> Result<Option<Item>> {
        dispatch!(self.item_get(sku))
    }

    /// Up to `limit` items by SKU, those after `after` (all when `None`), with their components.
    pub async fn items_after(&self, after: Option<Sku>, limit: usize) -> Result<Vec<(Sku, Item)>> {
        dispatch!(self.items_after(after, limit))
    }

    pub async fn location_put(
        &self,
        id: LocationId,
        location: Location,
        now: Timestamp,
    ) -> Result<CatalogWrite> {
        let written = dispatch!(self.location_put(id, location, now));
        self.catalog_written();
        written
    }

    pub async fn location_get(&self, id: &LocationId) -> Result<Option<Location>> {
        dispatch!(self.location_get(id))
    }

    /// Creates or replaces a channel; refused when it names an unknown location.
    pub async fn channel_put(
        &self,
        id: ChannelId,
        channel: Channel,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<CatalogWrite> {
        let written = dispatch!(self.channel_put(id, channel, now, recorded));
        self.catalog_written();
        written
    }

    pub async fn channel_get(&self, id: &ChannelId) -> Result<Option<Channel>> {
        dispatch!(self.channel_get(id))
    }

    /// Maps a channel's SKU to ours; `ParentMissing` for an unknown channel, refused for an
    /// unknown SKU.
    pub async fn listing_put(
        &self,
        channel: ChannelId,
        channel_sku: ChannelSku,
        listing: Listing,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<CatalogWrite> {
        let listings = vec![(channel_sku, listing)];
        let at = |_| "/sku".to_owned();
        let written = dispatch!(self.listings_put(channel, listings, now, at, recorded));
        self.catalog_written();
        Ok(match written? {
            None => CatalogWrite::ParentMissing,
            Some(BulkWrite::Refused(errors)) => CatalogWrite::Refused(errors),
            Some(BulkWrite::Written { created: 1, .. }) => CatalogWrite::Created,
            Some(BulkWrite::Written { .. }) => CatalogWrite::Updated,
        })
    }

    /// Creates or replaces many listings of one channel in one transaction: all of them, or
    /// none (`Refused`, each problem pointing at its entry). `None`: no such channel.
    pub async fn listings_put(
        &self,
        channel: ChannelId,
        listings: Vec<(ChannelSku, Listing)>,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<Option<BulkWrite>> {
        let at = |i| format!("/{i}/sku");
        let written = dispatch!(self.listings_put(channel, listings, now, at, recorded));
        self.catalog_written();
        written
    }

    pub async fn listing_get(
        &self,
        channel: &ChannelId,
        channel_sku: &ChannelSku,
    ) -> Result<Option<Listing>> {
        dispatch!(self.listing_get(channel, channel_sku))
    }

    /// Removes a listing; `false` if there was none.
    pub async fn listing_delete(
        &self,
        channel: &ChannelId,
        channel_sku: &ChannelSku,
    ) -> Result<bool> {
        let written = dispatch!(self.listing_delete(channel, channel_sku));
        self.catalog_written();
        written
    }

    // ---- inventory ----

    /// Which of these shipment events have consumed reservations of their order already.
    pub async fn conversions_recorded(&self, seqs: Vec<i64>) -> Result<BTreeSet<i64>> {
        dispatch!(self.conversions_recorded(seqs))
    }

    /// What the hub holds for orders at each position of these SKUs (positions holding nothing
    /// are left out).
    pub async fn reserved_totals(&self, skus: Vec<Sku>) -> Result<BTreeMap<PositionKey, i64>> {
        dispatch!(self.reserved_totals(skus))
    }

    /// The ledger positions of these SKUs at every location that has one.
    pub async fn positions(&self, skus: Vec<Sku>) -> Result<BTreeMap<PositionKey, Position>> {
        dispatch!(self.positions(skus))
    }

    /// Holds stock for an order: every line or none, never beyond what is available to promise
    /// at the moment (on hand, less allocations and other reservations), and records the event
    /// in the log in the same transaction. An order that holds stock already changes nothing.
    pub async fn reserve(&self, request: ReserveRequest) -> Result<ReserveOutcome> {
        dispatch!(self.reserve(request))
    }

    /// Releases everything an order holds (cancelled, shipped, or handed to the warehouse),
    /// recording the event in the same transaction. Returns what was released (nothing: no
    /// event).
    pub async fn release(
        &self,
        order_id: String,
        event: ReservationEvent,
        now: Timestamp,
    ) -> Result<Vec<ReservationLine>> {
        dispatch!(self.release(order_id, event, now))
    }

    /// The open reservations of these SKUs.
    pub async fn reservations(&self, skus: Vec<Sku>) -> Result<Vec<Reservation>> {
        dispatch!(self.reservations(skus))
    }

    /// The `(source, id)` of the events at these sequence numbers (those still in the log).
    pub async fn event_ids(&self, seqs: Vec<i64>) -> Result<BTreeMap<i64, (String, String)>> {
        dispatch!(self.event_ids(seqs))
    }

    /// Which of these SKUs are items in the catalog.
    pub async fn items_known(&self, skus: Vec<Sku>) -> Result<BTreeSet<Sku>> {
        dispatch!(self.items_known(skus))
    }

    /// The catalog as the inventory engine reads it.
    pub async fn catalog_snapshot(&self) -> Result<CatalogSnapshot> {
        dispatch!(self.catalog_snapshot())
    }

    /// Bumped by every catalog write: a cached snapshot older than this is stale.
    /// How many catalog writes this handle (and its clones) has made; a cache that saw the same
    /// count has seen every catalog change made by this process.
    pub fn catalog_writes(&self) -> u64 {
        self.catalog_writes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn catalog_written(&self) {
        self.catalog_writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub async fn catalog_version(&self) -> Result<i64> {
        dispatch!(self.catalog_version())
    }

    /// What each listing of these SKUs shows.
    pub async fn channel_availability(&self, skus: Vec<Sku>) -> Result<Vec<AvailabilityRow>> {
        dispatch!(self.channel_availability(skus))
    }

    /// Records the quantities a channel acknowledged for its listings. A listing whose value
    /// still differs and is now an increase over what the channel shows waits `hold_ms` from now.
    pub async fn availability_published(
        &self,
        channel: &ChannelId,
        shown: Vec<(ChannelSku, i64)>,
        hold_ms: i64,
        now: Timestamp,
    ) -> Result<()> {
        dispatch!(self.availability_published(channel, shown, hold_ms, now))
    }

    /// The listings of a channel whose updates are due now and that no open action of `target`
    /// carries (at most `limit`), and how many of `target`'s actions are open.
    pub async fn availability_due(
        &self,
        channel: &ChannelId,
        target: &str,
        limit: usize,
        now: Timestamp,
    ) -> Result<AvailabilityDue> {
        dispatch!(self.availability_due(channel, target, limit, now))
    }

    /// In one transaction: unless `target` already has `open_max` actions open, takes up to
    /// `limit` of the channel's due listings that no open action carries, enqueues the action
    /// `build` makes for them and marks them queued by it at the values it carries. Returns what
    /// was due (`listings` empty or `open >= open_max`: nothing was queued).
    pub async fn feed_availability(
        &self,
        channel: &ChannelId,
        target: &str,
        limit: usize,
        now: Timestamp,
        open_max: i64,
        build: FeedBuilder,
    ) -> Result<AvailabilityDue> {
        dispatch!(self.feed_availability(channel, target, limit, now, open_max, build))
    }

    /// Instead of replaying a dead-lettered channel availability batch (whose values may be
    /// stale by now): makes the listings it still carries due again, so the feeder sends their
    /// current values, and drops the dead letter with `reason`, in one transaction.
    pub async fn refresh_dead_availability(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<DropOutcome> {
        dispatch!(self.refresh_dead_availability(id, reason, now))
    }

    /// Inventory events kept but not applied (not from the location's authority), newest last.
    pub async fn divergences(&self, after_seq: i64, limit: usize) -> Result<Vec<Divergence>> {
        dispatch!(self.divergences(after_seq, limit))
    }

    // ---- API keys ----

    // ---- orders ----

    /// Records an order unless it was taken before — by its delivery id, or by its channel and
    /// external id — and says which order it is then. One commit: concurrent deliveries of the
    /// same order create it once.
    pub async fn order_create(&self, order: NewOrder) -> Result<OrderCreate> {
        dispatch!(self.saga_create(ORDERS, order))
    }

    /// A new order recorded (in the state its hold reaches), held and its actions queued, in one
    /// commit — the common case of taking an order. When it was taken before or its stock is
    /// not there, nothing is written (`NotHeld`): the caller takes it with
    /// [`Store::order_create`] and routes it further.
    pub async fn order_take(&self, order: NewOrder, hold: TakeHold) -> Result<OrderTaken> {
        dispatch!(self.order_take(order, hold))
    }

    pub async fn order_get(&self, id: &str) -> Result<Option<OrderRow>> {
        dispatch!(self.saga_get(ORDERS, id))
    }

    /// Saves an order's saga state if it is still at `version`, and queues the actions its step
    /// asked for in the same transaction; false (nothing saved or queued) when another step
    /// saved first (read it again and decide again).
    #[allow(clippy::too_many_arguments)]
    pub async fn order_save(
        &self,
        id: &str,
        version: i64,
        status: &str,
        until: Option<Timestamp>,
        state: &str,
        actions: Vec<NewAction>,
        now: Timestamp,
    ) -> Result<bool> {
        dispatch!(self.saga_save(ORDERS, id, version, status, until, state, actions, now))
    }

    /// Orders by status, channel and age, least recently updated first.
    pub async fn orders(&self, query: OrderQuery) -> Result<Vec<OrderRow>> {
        dispatch!(self.sagas(ORDERS, query))
    }

    // ---- returns ----

    /// Records a return unless its channel and RMA number (or delivery id) were seen before; the
    /// same contract as [`Store::order_create`].
    pub async fn return_create(&self, ret: NewOrder) -> Result<OrderCreate> {
        dispatch!(self.saga_create(RETURNS, ret))
    }

    pub async fn return_get(&self, id: &str) -> Result<Option<OrderRow>> {
        dispatch!(self.saga_get(RETURNS, id))
    }

    /// Saves a return's saga state if it is still at `version`.
    pub async fn return_save(
        &self,
        id: &str,
        version: i64,
        status: &str,
        until: Option<Timestamp>,
        state: &str,
        now: Timestamp,
    ) -> Result<bool> {
        dispatch!(self.saga_save(RETURNS, id, version, status, until, state, Vec::new(), now))
    }

    /// Returns by status, channel and age, least recently updated first.
    pub async fn returns(&self, query: OrderQuery) -> Result<Vec<OrderRow>> {
        dispatch!(self.sagas(RETURNS, query))
    }

    // ---- financial posting ----

    /// Records lines to post (shipped order lines, received return lines); a key recorded
    /// before is passed over. Returns how many were new.
    pub async fn posting_lines_add(
        &self,
        lines: Vec<PostingLine>,
        now: Timestamp,
    ) -> Result<usize> {
        dispatch!(self.posting_lines_add(lines, now))
    }

    /// Gathers every line in no batch yet into one journal batch per channel, currency and day,
    /// with control totals, and queues each batch's action (built by `build`) in the same
    /// transaction. A line is never in two batches; a second run finds nothing the first took.
    pub async fn postings_run(
        &self,
        build: PostingActionBuilder,
        now: Timestamp,
    ) -> Result<Vec<PostingBatch>> {
        dispatch!(self.postings_run(build, now))
    }

    /// Marks a batch posted with the ERP's journal number; false when it was already posted (or
    /// there is no such batch).
    pub async fn posting_confirm(&self, key: &str, journal: &str, now: Timestamp) -> Result<bool> {
        dispatch!(self.posting_confirm(key, journal, now))
    }

    pub async fn posting_batch(&self, key: &str) -> Result<Option<PostingBatch>> {
        dispatch!(self.posting_batch(key))
    }

    /// Journal batches, newest first.
    pub async fn postings(&self, query: PostingQuery) -> Result<Vec<PostingBatch>> {
        dispatch!(self.postings(query))
    }

    /// Orders, returns and journal batches counted by status.
    pub async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        dispatch!(self.status_counts())
    }

    /// The lines of one batch.
    pub async fn posting_lines(&self, batch: &str) -> Result<Vec<PostingLine>> {
        dispatch!(self.posting_lines(batch))
    }

    // ---- EDI partners ----

    /// Takes `count` consecutive control numbers (ISA13 or GS06) from a partner's series and
    /// returns the first; a series wraps from 999,999,999 to 1. Never the same number twice,
    /// across nodes too.
    pub async fn edi_controls(&self, partner: &str, kind: EdiControl, count: u32) -> Result<u32> {
        dispatch!(self.edi_controls(partner, kind, count))
    }

    /// Records an inbound interchange by sender and ISA13, or says when it was seen before.
    pub async fn edi_inbound(
        &self,
        sender: &str,
        control: &str,
        partner: &str,
        inbox_id: Option<i64>,
        now: Timestamp,
    ) -> Result<EdiInbound> {
        dispatch!(self.edi_inbound(sender, control, partner, inbox_id, now))
    }

    /// Records functional groups sent, awaiting their 997s.
    pub async fn edi_groups_sent(&self, groups: Vec<EdiGroupSent>) -> Result<()> {
        dispatch!(self.edi_groups_sent(groups))
    }

    /// Records a partner's 997 for a group we sent.
    pub async fn edi_ack_received(
        &self,
        partner: &str,
        group_control: &str,
        status: &str,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Result<EdiAckOutcome> {
        dispatch!(self.edi_ack_received(partner, group_control, status, detail, now))
    }

    /// Groups sent, oldest first, with their acknowledgment status.
    pub async fn edi_groups(&self, query: EdiGroupQuery) -> Result<Vec<EdiGroupRecord>> {
        dispatch!(self.edi_groups(query))
    }

    pub async fn key_create(&self, key: NewApiKey) -> Result<KeyCreateOutcome> {
        dispatch!(self.key_create(key))
    }

    pub async fn key_get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        dispatch!(self.key_get(id))
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn keys_list(&self) -> Result<Vec<ApiKeyRecord>> {
        dispatch!(self.keys_list())
    }

    /// Revokes the active key with this name; returns its id, or `None` if there is none.
    pub async fn key_revoke(&self, name: &str, now: Timestamp) -> Result<Option<String>> {
        dispatch!(self.key_revoke(name, now))
    }

    // ---- idempotency ----

    /// What is kept for an idempotency key.
    pub async fn idempotency_lookup(&self, lookup: IdempotencyLookup<'_>) -> Result<Recorded> {
        dispatch!(self.idempotency_lookup(lookup))
    }

    /// Keeps a response under its idempotency key, replacing an expired record.
    pub async fn idempotency_keep(
        &self,
        lookup: IdempotencyLookup<'_>,
        response: StoredResponse,
        now: Timestamp,
    ) -> Result<()> {
        dispatch!(self.idempotency_keep(lookup, response, now))
    }

    /// Deletes idempotency records created before `before`.
    pub async fn purge_idempotency(&self, before: Timestamp, limit: usize) -> Result<u64> {
        dispatch!(self.purge_idempotency(before, limit))
    }

    // ---- audit ----

    pub async fn audit_append(&self, entry: AuditEntry) -> Result<i64> {
        dispatch!(self.audit_append(entry))
    }

    /// Audit records matching the query, oldest first, after `after_id`.
    pub async fn audit_list(&self, query: AuditQuery) -> Result<Vec<AuditRecord>> {
        dispatch!(self.audit_list(query))
    }

    /// Gives up on a dead letter for good, recording why.
    pub async fn drop_dead_letter(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<DropOutcome> {
        dispatch!(self.drop_dead_letter(id, reason, now))
    }
}

/// Helper for backends: the retry decision for an action whose lease ran out.
pub(crate) fn lease_expired_decision(
    policy: &RetryPolicy,
    attempts_in_budget: i64,
    now: Timestamp,
) -> crossdock_core::FailureDecision {
    let made = u32::try_from(attempts_in_budget.max(0)).unwrap_or(u32::MAX);
    // The worker vanished mid-delivery; retry promptly rather than after a backoff.
    match policy.after_failure(made, false, now, 0.0) {
        crossdock_core::FailureDecision::RetryAt(_) => {
            crossdock_core::FailureDecision::RetryAt(now)
        }
        dead => dead,
    }
}

/// The projection state a batch changes, by projection.
#[derive(Clone, Debug, PartialEq)]
pub enum ProjectionWrites {
    /// A consumer with no state of its own: only its position moves.
    None,
    SourceActivity(ActivityDelta),
    Inventory(Box<InventoryWrites>),
}

impl ProjectionWrites {
    /// Whether committing these writes makes channel updates due (the feeder should look).
    pub fn changes_availability(&self) -> bool {
        matches!(self, ProjectionWrites::Inventory(w) if !w.availability.is_empty())
    }
}

/// The projections whose state lives in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    SourceActivity,
    Inventory,
}

impl Projection {
    pub const fn consumer_name(self) -> &'static str {
        match self {
            Projection::SourceActivity => "source_activity",
            Projection::Inventory => "inventory",
        }
    }

    pub fn from_consumer_name(name: &str) -> Option<Projection> {
        match name {
            "source_activity" => Some(Projection::SourceActivity),
            "inventory" => Some(Projection::Inventory),
            _ => None,
        }
    }
}

#[cfg(feature = "testkit")]
pub mod testkit;
