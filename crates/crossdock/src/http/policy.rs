//! The access policy of every route: who may call it, whether it takes an `Idempotency-Key`,
//! and whether it is deprecated. One table, read by the request envelope and by the OpenAPI
//! document, so a route cannot be served under rules other than the ones it documents.

use axum::http::Method;
use crossdock_core::access::Scope;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a key: health probes, the API description, problem pages.
    Public,
    /// A key holding this scope (or `admin`).
    Scope(Scope),
}

/// How a route treats the `Idempotency-Key` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Not a POST: the header is ignored.
    NotApplicable,
    /// A POST that honours the header when it is sent.
    Optional,
    /// A POST that refuses requests without it.
    Required,
}

/// A route that is going away: its responses carry `Deprecation`, `Sunset` and a `Link` to the
/// replacement's documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deprecation {
    /// When it was deprecated, in seconds since the epoch (`Deprecation: @<seconds>`).
    pub since_unix_s: i64,
    /// When it stops working, as an HTTP date (`Sunset`).
    pub sunset: &'static str,
    /// Where to read about the replacement.
    pub link: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    pub method: &'static str,
    /// The path as the router writes it, with `{name}` parameters.
    pub path: &'static str,
    pub access: Access,
    pub idempotency: Idempotency,
    /// The handler keeps its answer in the same transaction as its effect (see
    /// `http::idempotency`); otherwise the envelope keeps it after the handler.
    pub keeps_answer_with_effect: bool,
    pub deprecated: Option<Deprecation>,
}

const fn public(method: &'static str, path: &'static str) -> RoutePolicy {
    RoutePolicy {
        method,
        path,
        access: Access::Public,
        idempotency: Idempotency::NotApplicable,
        keeps_answer_with_effect: false,
        deprecated: None,
    }
}

const fn read(path: &'static str, scope: Scope) -> RoutePolicy {
    RoutePolicy {
        method: "GET",
        path,
        access: Access::Scope(scope),
        idempotency: Idempotency::NotApplicable,
        keeps_answer_with_effect: false,
        deprecated: None,
    }
}

const fn post(path: &'static str, scope: Scope) -> RoutePolicy {
    RoutePolicy {
        method: "POST",
        path,
        access: Access::Scope(scope),
        idempotency: Idempotency::Optional,
        keeps_answer_with_effect: false,
        deprecated: None,
    }
}

const fn put(path: &'static str, scope: Scope) -> RoutePolicy {
    RoutePolicy {
        method: "PUT",
        path,
        access: Access::Scope(scope),
        idempotency: Idempotency::NotApplicable,
        keeps_answer_with_effect: false,
        deprecated: None,
    }
}

const fn delete(path: &'static str, scope: Scope) -> RoutePolicy {
    RoutePolicy {
        method: "DELETE",
        path,
        access: Access::Scope(scope),
        idempotency: Idempotency::NotApplicable,
        keeps_answer_with_effect: false,
        deprecated: None,
    }
}

/// Every route crossdock serves. A route missing here is refused (fail closed) and a test fails.
pub const POLICIES: &[RoutePolicy] = &[
    public("GET", "/healthz"),
    public("GET", "/readyz"),
    public("GET", "/problems/{slug}"),
    public("GET", "/v1/openapi.json"),
    public("GET", "/docs"),
    read("/metrics", Scope::Ops),
    RoutePolicy {
        keeps_answer_with_effect: true,
        ..post("/v1/events", Scope::EventsWrite)
    },
    read("/v1/events", Scope::EventsRead),
    post("/v1/edi/{partner}", Scope::EventsWrite),
    post("/v1/orders", Scope::OrdersWrite),
    read("/v1/orders", Scope::OrdersRead),
    read("/v1/orders/{id}", Scope::OrdersRead),
    post("/v1/orders/{id}/cancel", Scope::OrdersWrite),
    post("/v1/orders/{id}/resume", Scope::OrdersWrite),
    post("/v1/returns", Scope::OrdersWrite),
    read("/v1/returns", Scope::OrdersRead),
    read("/v1/returns/{id}", Scope::OrdersRead),
    read("/v1/postings", Scope::OrdersRead),
    read("/v1/postings/{key}", Scope::OrdersRead),
    post("/v1/postings/run", Scope::Ops),
    read("/v1/edi/groups", Scope::Ops),
    read("/v1/consumers", Scope::Ops),
    read("/v1/sources", Scope::Ops),
    read("/v1/inbox", Scope::Ops),
    read("/v1/inbox/{id}", Scope::Ops),
    post("/v1/inbox/{id}/replay", Scope::Ops),
    read("/v1/dead-letters", Scope::Ops),
    read("/v1/dead-letters/{id}", Scope::Ops),
    post("/v1/dead-letters/{id}/replay", Scope::Ops),
    delete("/v1/dead-letters/{id}", Scope::Ops),
    read("/v1/audit", Scope::Admin),
    put("/v1/items", Scope::CatalogWrite),
    read("/v1/items", Scope::InventoryRead),
    put("/v1/items/{sku}", Scope::CatalogWrite),
    read("/v1/items/{sku}", Scope::InventoryRead),
    read("/v1/locations", Scope::InventoryRead),
    put("/v1/locations/{id}", Scope::CatalogWrite),
    read("/v1/locations/{id}", Scope::InventoryRead),
    read("/v1/channels", Scope::InventoryRead),
    put("/v1/channels/{id}", Scope::CatalogWrite),
    read("/v1/channels/{id}", Scope::InventoryRead),
    read("/v1/channels/{id}/listings", Scope::InventoryRead),
    put("/v1/channels/{id}/listings", Scope::CatalogWrite),
    put(
        "/v1/channels/{id}/listings/{channel_sku}",
        Scope::CatalogWrite,
    ),
    read(
        "/v1/channels/{id}/listings/{channel_sku}",
        Scope::InventoryRead,
    ),
    delete(
        "/v1/channels/{id}/listings/{channel_sku}",
        Scope::CatalogWrite,
    ),
    read("/v1/inventory/{sku}", Scope::InventoryRead),
    read("/v1/inventory/{sku}/explain", Scope::InventoryRead),
    read("/v1/divergences", Scope::Ops),
    post("/v1/reservations", Scope::InventoryWrite),
    delete("/v1/reservations/{order_id}", Scope::InventoryWrite),
];

/// The policy of a matched route. `HEAD` follows `GET`.
pub fn lookup(method: &Method, path: &str) -> Option<&'static RoutePolicy> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    POLICIES
        .iter()
        .find(|p| p.method == method && p.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_appears_once() {
        for (i, p) in POLICIES.iter().enumerate() {
            let again = POLICIES[i + 1..]
                .iter()
                .any(|q| q.method == p.method && q.path == p.path);
            assert!(!again, "{} {} is listed twice", p.method, p.path);
        }
    }

    #[test]
    fn head_follows_get_and_unknown_routes_have_no_policy() {
        assert_eq!(
            lookup(&Method::HEAD, "/v1/events").map(|p| p.access),
            Some(Access::Scope(Scope::EventsRead))
        );
        assert!(lookup(&Method::PATCH, "/v1/events").is_none());
    }
}
