//! Turning stored catalog rows back into catalog types, the same way on both backends.

use crossdock_core::catalog::{Channel, Listing, Location, LocationId, LocationKind, Policy, Sku};

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
    let policy: Policy = serde_json::from_str(policy).map_err(|e| corrupt("policy", e))?;
    let locations = locations
        .iter()
        .map(|l| LocationId::parse(l).map_err(|e| corrupt("location id", e)))
        .collect::<Result<_>>()?;
    Ok(Channel {
        kind,
        locations,
        policy,
        increase_hold_ms,
    })
}

pub(crate) fn listing(sku: &str) -> Result<Listing> {
    Ok(Listing {
        sku: Sku::parse(sku).map_err(|e| corrupt("SKU", e))?,
    })
}
