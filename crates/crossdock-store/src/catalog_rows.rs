//! Turning stored catalog rows back into catalog types, the same way on both backends.

use crossdock_core::catalog::{
    Channel, Listing, Location, LocationId, LocationKind, OrderPolicy, Policy, Sku,
};

use crate::{Result, StoreError};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored {what}: {e}"))
}

pub(crate) fn location(name: String, kind: &str, authority: String) -> Result<Location> {
    let kind = match kind {
        "warehouse" => LocationKind::Warehouse,
        "3pl" => LocationKind::ThirdParty,
        "store" => LocationKind::Store,
        other => return Err(corrupt("location kind", other)),
    };
    Ok(Location {
        name,
        kind,
        authority,
    })
}

pub(crate) fn channel(
    kind: String,
    policy: &str,
    increase_hold_ms: i64,
    locations: Vec<String>,
) -> Result<Channel> {
    let stored: serde_json::Value =
        serde_json::from_str(policy).map_err(|e| corrupt("policy", e))?;
    let orders: OrderPolicy = match stored.get("orders") {
        Some(orders) => {
            serde_json::from_value(orders.clone()).map_err(|e| corrupt("order policy", e))?
        }
        None => OrderPolicy::default(),
    };
    let policy: Policy = serde_json::from_value(stored).map_err(|e| corrupt("policy", e))?;
    let locations = locations
        .iter()
        .map(|l| LocationId::parse(l).map_err(|e| corrupt("location id", e)))
        .collect::<Result<_>>()?;
    Ok(Channel {
        kind,
        locations,
        policy,
        increase_hold_ms,
        orders,
    })
}

pub(crate) fn listing(sku: &str) -> Result<Listing> {
    Ok(Listing {
        sku: Sku::parse(sku).map_err(|e| corrupt("SKU", e))?,
    })
}

/// The stored form of a channel's policies: the availability policy's members, and the order
/// policy under `orders` (one JSON column).
pub(crate) fn channel_policy(channel: &Channel) -> Result<String> {
    let mut stored =
        serde_json::to_value(channel.policy).map_err(|e| StoreError::Invalid(e.to_string()))?;
    if let Some(object) = stored.as_object_mut() {
        object.insert(
            "orders".into(),
            serde_json::to_value(channel.orders).map_err(|e| StoreError::Invalid(e.to_string()))?,
        );
    }
    Ok(stored.to_string())
}
