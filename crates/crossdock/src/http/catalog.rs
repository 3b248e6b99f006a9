//! The catalog routes: items (and kits), locations, channels with their availability policy,
//! listings. A key bound to a channel sees and changes only that channel: any other channel is
//! not found.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use crossdock_core::FieldError;
use crossdock_core::catalog::{
    Channel, ChannelId, ChannelSku, Item, Listing, Location, LocationId, Sku,
};
use crossdock_store::{BulkWrite, CatalogWrite};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::gate::Caller;
use super::openapi::ProblemBody;
use super::problem::{self, Problem};
use super::{RequestContext, json};
use crate::app::AppState;
use crate::runtime::inventory as engine;

/// Items in one bulk write at most.
pub const BULK_ITEMS_MAX: usize = 10_000;

/// Parses a JSON request body, saying where it breaks.
pub(super) fn body_json(body: Result<Bytes, BytesRejection>) -> Result<Value, Problem> {
    let bytes = body.map_err(|e| Problem::new(problem::BODY_TOO_LARGE, e.body_text()))?;
    json_of(&bytes)
}

/// A body read as JSON, or the problem with it (not UTF-8, not JSON).
pub(super) fn json_of(bytes: &[u8]) -> Result<Value, Problem> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Problem::new(
            problem::NOT_UTF8,
            format!(
                "the body is not valid UTF-8 (first invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    serde_json::from_str(text).map_err(|e| {
        Problem::new(
            problem::MALFORMED_JSON,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

pub(super) fn refused(errors: Vec<FieldError>) -> Problem {
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    Problem::new(problem::INVALID_BODY, first).with_errors(errors)
}

pub(super) fn parse_path<T>(
    name: &str,
    text: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, Problem> {
    parse(text).map_err(|why| Problem::parameter(&format!("/path/{name}"), why))
}

/// The channel a path names, if the caller may see it; another channel's is "not found".
fn visible_channel(caller: &Caller, id: &str) -> Result<ChannelId, Problem> {
    let id = parse_path("id", id, ChannelId::parse)?;
    if caller.sees_channel(id.as_str()) {
        Ok(id)
    } else {
        Err(Problem::not_found(format!("there is no channel {id}")))
    }
}

fn written(outcome: &CatalogWrite) -> StatusCode {
    match outcome {
        CatalogWrite::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    }
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    ctx: &RequestContext,
    action: &str,
    target: &str,
    outcome: &str,
) {
    crate::audit::record(
        &state.store,
        state.clock.now(),
        crate::audit::Action {
            actor: &caller.name,
            action,
            target,
            outcome,
            correlation_id: Some(ctx.correlation_id.as_str()),
            detail: None,
        },
    )
    .await;
}

#[derive(Serialize, ToSchema)]
pub(super) struct ComponentView {
    sku: String,
    /// Units of the component in one kit.
    quantity: i64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ItemView {
    sku: String,
    description: Option<String>,
    unit: String,
    /// The components of a kit; empty for a stocked item.
    components: Vec<ComponentView>,
}

impl ItemView {
    fn of(sku: &Sku, item: Item) -> Self {
        ItemView {
            sku: sku.to_string(),
            description: item.description,
            unit: item.unit,
            components: item
                .components
                .into_iter()
                .map(|c| ComponentView {
                    sku: c.sku.to_string(),
                    quantity: c.quantity,
                })
                .collect(),
        }
    }
}

/// Creates or replaces an item. A kit lists its components; every component must be an item,
/// and no kit may contain itself, directly or through other kits.
#[utoipa::path(put, path = "/v1/items/{sku}", tag = "catalog",
    params(("sku" = String, Path, description = "Our SKU")),
    request_body(content = Object, description = "`{\"description\", \"unit\", \"components\": [{\"sku\", \"quantity\"}]}`"),
    responses(
        (status = 201, description = "Created", body = ItemView),
        (status = 200, description = "Replaced", body = ItemView),
        (status = 400, description = "Malformed JSON or SKU", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid item, unknown component or kit cycle", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn put_item(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(sku): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let sku = parse_path("sku", &sku, Sku::parse)?;
    let value = body_json(body)?;
    let mut errors = Vec::new();
    let item = Item::from_json(&value, "", &mut errors).ok_or_else(|| refused(errors))?;
    let now = state.clock.now();
    // A kit's components may have changed, or a kit may have become a plain item.
    let change = engine::catalog_change(std::slice::from_ref(&sku), &[], now);
    let outcome = state
        .store
        .item_put(sku.clone(), item.clone(), now, change)
        .await?;
    if let CatalogWrite::Refused(errors) = outcome {
        return Err(refused(errors));
    }
    engine::catalog_recorded(&state).await;
    audit(&state, &caller, &ctx, "item.put", sku.as_str(), "ok").await;
    Ok(json(written(&outcome), &ItemView::of(&sku, item)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct BulkView {
    created: usize,
    updated: usize,
}

/// Reads a bulk request: an array of 1 to [`BULK_ITEMS_MAX`] entries, each keyed by its member
/// `key` (parsed, and unique in the request) with the rest of it read by `body`. Every problem
/// is reported at its entry (`/{i}/...`); nothing is returned unless all entries are valid.
fn bulk_entries<K, T>(
    value: &Value,
    what: &str,
    key: &str,
    parse_key: impl Fn(&str) -> Result<K, String>,
    body: impl Fn(&Value, &str, &mut Vec<FieldError>) -> Option<T>,
) -> Result<Vec<(K, T)>, Problem>
where
    K: Ord + Clone + std::fmt::Display,
{
    let Some(entries) = value.as_array() else {
        return Err(refused(vec![FieldError::new(
            "/",
            format!("must be an array of {what}"),
        )]));
    };
    if entries.is_empty() || entries.len() > BULK_ITEMS_MAX {
        return Err(refused(vec![FieldError::new(
            "/",
            format!(
                "must hold 1 to {BULK_ITEMS_MAX} {what}, not {}",
                entries.len()
            ),
        )]));
    }
    let mut errors = Vec::new();
    let mut read = Vec::with_capacity(entries.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("/{i}");
        let mut fields = entry.clone();
        let id = take_key(&mut fields, &at, key, &parse_key, &mut seen, &mut errors);
        let entry = body(&fields, &at, &mut errors);
        if let (Some(id), Some(entry)) = (id, entry) {
            read.push((id, entry));
        }
    }
    if !errors.is_empty() {
        return Err(refused(errors));
    }
    Ok(read)
}

/// Takes the member `name` that keys a bulk entry out of it (the rest is the entry's body),
/// parsed; a missing, malformed or repeated key is an error at `{at}/{name}`.
fn take_key<K: Ord + Clone + std::fmt::Display>(
    fields: &mut Value,
    at: &str,
    name: &str,
    parse: impl Fn(&str) -> Result<K, String>,
    seen: &mut std::collections::BTreeSet<K>,
    errors: &mut Vec<FieldError>,
) -> Option<K> {
    let pointer = format!("{at}/{name}");
    let key = fields
        .as_object_mut()
        .and_then(|o| o.remove(name))
        .and_then(|v| v.as_str().map(str::to_owned));
    let key = match key.as_deref().map(parse) {
        Some(Ok(key)) => key,
        Some(Err(why)) => {
            errors.push(FieldError::new(pointer, why));
            return None;
        }
        None => {
            errors.push(FieldError::new(pointer, "is required (a string)"));
            return None;
        }
    };
    if !seen.insert(key.clone()) {
        errors.push(FieldError::new(pointer, format!("{key} appears twice")));
    }
    Some(key)
}

/// Creates or replaces up to 10,000 items in one transaction: all of them, or none. Each entry
/// is an item with its `sku`; kits may name components defined in the same request.
#[utoipa::path(put, path = "/v1/items", tag = "catalog",
    request_body(content = Vec<Object>, description = "`[{\"sku\", \"description\", \"unit\", \"components\"}]`"),
    responses(
        (status = 200, description = "Every item written", body = BulkView),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "An entry is invalid; nothing was written", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn put_items(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let value = body_json(body)?;
    let items = bulk_entries(&value, "items", "sku", Sku::parse, Item::from_json)?;
    let count = items.len();
    // Kits, and items that were kits: their numbers change with their components.
    let known = state.catalog.get(&state.store).await?;
    let kits: Vec<Sku> = items
        .iter()
        .filter(|(sku, item)| !item.components.is_empty() || known.snapshot.kits.contains_key(sku))
        .map(|(sku, _)| sku.clone())
        .collect();
    let now = state.clock.now();
    let change = engine::catalog_change(&kits, &[], now);
    match state.store.items_put(items, now, change).await? {
        BulkWrite::Written { created, updated } => {
            engine::catalog_recorded(&state).await;
            audit(
                &state,
                &caller,
                &ctx,
                "items.put",
                &format!("{count} items"),
                "ok",
            )
            .await;
            Ok(json(StatusCode::OK, &BulkView { created, updated }))
        }
        BulkWrite::Refused(errors) => Err(refused(errors)),
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ItemList {
    items: Vec<ItemView>,
    /// Pass as `after` for the next page; absent on the last.
    next_after: Option<String>,
}

/// Items by SKU, a page at a time: `?after=` the last SKU of the page before, `?limit=` (1 to
/// 1000, default 100).
#[utoipa::path(get, path = "/v1/items", tag = "catalog",
    params(
        ("after" = Option<String>, Query, description = "Only SKUs after this one"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "The items", body = ItemList),
        (status = 400, description = "Bad parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn list_items(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    let query = super::query::Query::parse(uri.query(), &["after", "limit"])?;
    let limit = query.int("limit", 100, 1, 1000)? as usize;
    let after = query
        .text("after")
        .map(|text| Sku::parse(text).map_err(|why| Problem::parameter("/query/after", why)))
        .transpose()?;
    // One more than asked says whether there is a next page.
    let items = state.store.items_after(after, limit + 1).await?;
    let (items, next_after) = page(items, limit, |(sku, _)| sku.to_string());
    let items = items
        .into_iter()
        .map(|(sku, item)| ItemView::of(&sku, item))
        .collect();
    Ok(json(StatusCode::OK, &ItemList { items, next_after }))
}

/// The first `limit` of `rows` (read one more than that), and the key of the last of them when
/// there is a next page: what the caller passes as `after` to get it.
fn page<T>(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let next_after = (rows.len() > limit).then(|| key(&rows[limit - 1]));
    rows.truncate(limit);
    (rows, next_after)
}

/// One item.
#[utoipa::path(get, path = "/v1/items/{sku}", tag = "catalog",
    params(("sku" = String, Path, description = "Our SKU")),
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 404, description = "No such item", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_item(
    State(state): State<Arc<AppState>>,
    Path(sku): Path<String>,
) -> Result<Response, Problem> {
    let sku = parse_path("sku", &sku, Sku::parse)?;
    let item = state
        .store
        .item_get(&sku)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no item {sku}")))?;
    Ok(json(StatusCode::OK, &ItemView::of(&sku, item)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct LocationView {
    id: String,
    name: String,
    /// `warehouse`, `3pl` or `store`.
    kind: String,
    /// The event source whose events set this location's on-hand.
    authority: String,
}

impl LocationView {
    fn of(id: &LocationId, l: Location) -> Self {
        LocationView {
            id: id.to_string(),
            name: l.name,
            kind: l.kind.as_str().into(),
            authority: l.authority,
        }
    }
}

/// Creates or replaces a location.
#[utoipa::path(put, path = "/v1/locations/{id}", tag = "catalog",
    params(("id" = String, Path, description = "The location id")),
    request_body(content = Object, description = "`{\"name\", \"kind\": \"warehouse\"|\"3pl\"|\"store\", \"authority\": \"<event source>\"}`"),
    responses(
        (status = 201, description = "Created", body = LocationView),
        (status = 200, description = "Replaced", body = LocationView),
        (status = 422, description = "Invalid location", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn put_location(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = parse_path("id", &id, LocationId::parse)?;
    let value = body_json(body)?;
    let mut errors = Vec::new();
    let location = Location::from_json(&value, "", &mut errors).ok_or_else(|| refused(errors))?;
    let outcome = state
        .store
        .location_put(id.clone(), location.clone(), state.clock.now())
        .await?;
    audit(&state, &caller, &ctx, "location.put", id.as_str(), "ok").await;
    Ok(json(written(&outcome), &LocationView::of(&id, location)))
}

/// One location.
#[utoipa::path(get, path = "/v1/locations/{id}", tag = "catalog",
    params(("id" = String, Path, description = "The location id")),
    responses(
        (status = 200, description = "The location", body = LocationView),
        (status = 404, description = "No such location", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_location(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_path("id", &id, LocationId::parse)?;
    let location = state
        .store
        .location_get(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no location {id}")))?;
    Ok(json(StatusCode::OK, &LocationView::of(&id, location)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct LocationList {
    locations: Vec<LocationView>,
}

/// Every location, by id.
#[utoipa::path(get, path = "/v1/locations", tag = "catalog",
    responses((status = 200, description = "The locations", body = LocationList)))]
pub(super) async fn list_locations(
    State(state): State<Arc<AppState>>,
) -> Result<Response, Problem> {
    let catalog = state.catalog.get(&state.store).await?;
    let locations = catalog
        .snapshot
        .locations
        .iter()
        .map(|(id, l)| LocationView::of(id, l.clone()))
        .collect();
    Ok(json(StatusCode::OK, &LocationList { locations }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct PolicyView {
    percent: Option<i64>,
    buffer: Option<i64>,
    min_to_show: Option<i64>,
    max: Option<i64>,
    fixed: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ChannelView {
    id: String,
    kind: String,
    /// In priority order.
    locations: Vec<String>,
    policy: PolicyView,
    increase_hold_ms: i64,
    /// `backorder`: orders no location can ship whole wait for stock (true) or are rejected.
    #[schema(value_type = Object)]
    orders: crossdock_core::catalog::OrderPolicy,
}

impl ChannelView {
    fn of(id: &ChannelId, c: Channel) -> Self {
        ChannelView {
            id: id.to_string(),
            kind: c.kind,
            locations: c.locations.iter().map(ToString::to_string).collect(),
            policy: PolicyView {
                percent: c.policy.percent,
                buffer: c.policy.buffer,
                min_to_show: c.policy.min_to_show,
                max: c.policy.max,
                fixed: c.policy.fixed,
            },
            increase_hold_ms: c.increase_hold_ms,
            orders: c.orders,
        }
    }
}

/// Creates or replaces a channel: its kind, the locations it sells from (in priority order),
/// its availability policy, and how long increases wait.
#[utoipa::path(put, path = "/v1/channels/{id}", tag = "catalog",
    params(("id" = String, Path, description = "The channel id")),
    request_body(content = Object, description = "`{\"kind\", \"locations\": [..], \"policy\": {\"percent\", \"buffer\", \"min_to_show\", \"max\", \"fixed\"}, \"increase_hold_ms\", \"orders\": {\"backorder\"}}`"),
    responses(
        (status = 201, description = "Created", body = ChannelView),
        (status = 200, description = "Replaced", body = ChannelView),
        (status = 404, description = "A key bound to another channel", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid channel or unknown location", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn put_channel(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = visible_channel(&caller, &id)?;
    let value = body_json(body)?;
    let mut errors = Vec::new();
    let channel = Channel::from_json(&value, "", &mut errors).ok_or_else(|| refused(errors))?;
    let now = state.clock.now();
    // Its locations or policy may have changed what every one of its listings shows.
    let change = engine::catalog_change(&[], std::slice::from_ref(&id), now);
    let outcome = state
        .store
        .channel_put(id.clone(), channel.clone(), now, change)
        .await?;
    if let CatalogWrite::Refused(errors) = outcome {
        return Err(refused(errors));
    }
    engine::catalog_recorded(&state).await;
    audit(&state, &caller, &ctx, "channel.put", id.as_str(), "ok").await;
    Ok(json(written(&outcome), &ChannelView::of(&id, channel)))
}

/// One channel.
#[utoipa::path(get, path = "/v1/channels/{id}", tag = "catalog",
    params(("id" = String, Path, description = "The channel id")),
    responses(
        (status = 200, description = "The channel", body = ChannelView),
        (status = 404, description = "No such channel (or the key is bound to another)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_channel(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = visible_channel(&caller, &id)?;
    let channel = state
        .store
        .channel_get(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no channel {id}")))?;
    Ok(json(StatusCode::OK, &ChannelView::of(&id, channel)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct ListingView {
    channel: String,
    channel_sku: String,
    sku: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ChannelList {
    channels: Vec<ChannelView>,
}

/// Every channel the caller may see (a key bound to a channel sees that one), by id.
#[utoipa::path(get, path = "/v1/channels", tag = "catalog",
    responses((status = 200, description = "The channels", body = ChannelList)))]
pub(super) async fn list_channels(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Problem> {
    let catalog = state.catalog.get(&state.store).await?;
    let channels = catalog
        .snapshot
        .channels
        .iter()
        .filter(|(id, _)| caller.sees_channel(id.as_str()))
        .map(|(id, c)| ChannelView::of(id, c.clone()))
        .collect();
    Ok(json(StatusCode::OK, &ChannelList { channels }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct ListingList {
    listings: Vec<ListingView>,
    /// Pass as `after` for the next page; absent on the last.
    next_after: Option<String>,
}

/// A channel's listings by channel SKU, a page at a time: `?after=` the last channel SKU of the
/// page before, `?limit=` (1 to 1000, default 100).
#[utoipa::path(get, path = "/v1/channels/{id}/listings", tag = "catalog",
    params(
        ("id" = String, Path, description = "The channel id"),
        ("after" = Option<String>, Query, description = "Only channel SKUs after this one"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "The listings", body = ListingList),
        (status = 404, description = "No such channel", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn list_listings(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    let id = visible_channel(&caller, &id)?;
    let query = super::query::Query::parse(uri.query(), &["after", "limit"])?;
    let limit = query.int("limit", 100, 1, 1000)? as usize;
    let after = query.text("after").unwrap_or("");
    let catalog = state.catalog.get(&state.store).await?;
    if !catalog.snapshot.channels.contains_key(&id) {
        return Err(Problem::not_found(format!("there is no channel {id}")));
    }
    let listed: Vec<&(ChannelId, ChannelSku, Sku)> = catalog
        .channel_listings(&id, after)
        .iter()
        .take(limit + 1)
        .collect();
    let (listed, next_after) = page(listed, limit, |(_, channel_sku, _)| channel_sku.to_string());
    let listings = listed
        .into_iter()
        .map(|(channel, channel_sku, sku)| ListingView {
            channel: channel.to_string(),
            channel_sku: channel_sku.to_string(),
            sku: sku.to_string(),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &ListingList {
            listings,
            next_after,
        },
    ))
}

/// Creates or replaces up to 10,000 listings of a channel in one transaction: all of them, or
/// none. Each entry maps a `channel_sku` to our `sku`.
#[utoipa::path(put, path = "/v1/channels/{id}/listings", tag = "catalog",
    params(("id" = String, Path, description = "The channel id")),
    request_body(content = Vec<Object>, description = "`[{\"channel_sku\", \"sku\"}]`"),
    responses(
        (status = 200, description = "Every listing written", body = BulkView),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such channel", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "An entry is invalid; nothing was written", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn put_listings(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = visible_channel(&caller, &id)?;
    let value = body_json(body)?;
    let listings = bulk_entries(
        &value,
        "listings",
        "channel_sku",
        ChannelSku::parse,
        Listing::from_json,
    )?;
    let count = listings.len();
    let skus: Vec<Sku> = listings
        .iter()
        .map(|(_, l)| l.sku.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let now = state.clock.now();
    // Each listing shows its SKU's number from now on.
    let change = engine::catalog_change(&skus, &[], now);
    match state
        .store
        .listings_put(id.clone(), listings, now, change)
        .await?
    {
        None => Err(Problem::not_found(format!("there is no channel {id}"))),
        Some(BulkWrite::Refused(errors)) => Err(refused(errors)),
        Some(BulkWrite::Written { created, updated }) => {
            engine::catalog_recorded(&state).await;
            let target = format!("{id}: {count} listings");
            audit(&state, &caller, &ctx, "listings.put", &target, "ok").await;
            Ok(json(StatusCode::OK, &BulkView { created, updated }))
        }
    }
}

/// Maps a channel's SKU to ours.
#[utoipa::path(put, path = "/v1/channels/{id}/listings/{channel_sku}", tag = "catalog",
    params(
        ("id" = String, Path, description = "The channel id"),
        ("channel_sku" = String, Path, description = "The channel's own SKU"),
    ),
    request_body(content = Object, description = "`{\"sku\"}`"),
    responses(
        (status = 201, description = "Created", body = ListingView),
        (status = 200, description = "Replaced", body = ListingView),
        (status = 404, description = "No such channel", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Unknown SKU", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn put_listing(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, channel_sku)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = visible_channel(&caller, &id)?;
    let channel_sku = parse_path("channel_sku", &channel_sku, ChannelSku::parse)?;
    let value = body_json(body)?;
    let mut errors = Vec::new();
    let listing = Listing::from_json(&value, "", &mut errors).ok_or_else(|| refused(errors))?;
    let now = state.clock.now();
    // The listing shows its SKU's number from now on.
    let change = engine::catalog_change(std::slice::from_ref(&listing.sku), &[], now);
    let outcome = state
        .store
        .listing_put(
            id.clone(),
            channel_sku.clone(),
            listing.clone(),
            now,
            change,
        )
        .await?;
    match outcome {
        CatalogWrite::Refused(errors) => return Err(refused(errors)),
        CatalogWrite::ParentMissing => {
            return Err(Problem::not_found(format!("there is no channel {id}")));
        }
        _ => {}
    }
    engine::catalog_recorded(&state).await;
    let target = format!("{id}/{channel_sku}");
    audit(&state, &caller, &ctx, "listing.put", &target, "ok").await;
    let view = ListingView {
        channel: id.to_string(),
        channel_sku: channel_sku.to_string(),
        sku: listing.sku.to_string(),
    };
    Ok(json(written(&outcome), &view))
}

/// One listing.
#[utoipa::path(get, path = "/v1/channels/{id}/listings/{channel_sku}", tag = "catalog",
    params(
        ("id" = String, Path, description = "The channel id"),
        ("channel_sku" = String, Path, description = "The channel's own SKU"),
    ),
    responses(
        (status = 200, description = "The listing", body = ListingView),
        (status = 404, description = "No such listing", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_listing(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, channel_sku)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = visible_channel(&caller, &id)?;
    let channel_sku = parse_path("channel_sku", &channel_sku, ChannelSku::parse)?;
    let listing = state
        .store
        .listing_get(&id, &channel_sku)
        .await?
        .ok_or_else(|| Problem::not_found(format!("channel {id} has no listing {channel_sku}")))?;
    let view = ListingView {
        channel: id.to_string(),
        channel_sku: channel_sku.to_string(),
        sku: listing.sku.to_string(),
    };
    Ok(json(StatusCode::OK, &view))
}

/// Removes a listing.
#[utoipa::path(delete, path = "/v1/channels/{id}/listings/{channel_sku}", tag = "catalog",
    params(
        ("id" = String, Path, description = "The channel id"),
        ("channel_sku" = String, Path, description = "The channel's own SKU"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such listing", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn delete_listing(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, channel_sku)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = visible_channel(&caller, &id)?;
    let channel_sku = parse_path("channel_sku", &channel_sku, ChannelSku::parse)?;
    if !state.store.listing_delete(&id, &channel_sku).await? {
        return Err(Problem::not_found(format!(
            "channel {id} has no listing {channel_sku}"
        )));
    }
    audit(
        &state,
        &caller,
        &ctx,
        "listing.delete",
        &format!("{id}/{channel_sku}"),
        "ok",
    )
    .await;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}
