//! The catalog: items (kits as component lists), locations, channels with their availability
//! policy, and listings that map a channel's SKU to ours. Parsed and validated here, once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::FieldError;
use crate::json::{Fields, QUANTITY_ABS_MAX};

const SKU_LEN_MAX: usize = 128;
const ID_LEN_MAX: usize = 64;
const TEXT_LEN_MAX: usize = 500;
/// Components of one kit at most.
pub const KIT_COMPONENTS_MAX: usize = 100;
/// Locations of one channel at most.
pub const CHANNEL_LOCATIONS_MAX: usize = 100;

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal, $len_max:expr, $allowed:expr) => {
        $(#[$doc])*
        ///
        /// Shared, not copied: the engine hands the same identifier to many rows and listings,
        /// and a clone is a reference count.
        #[derive(Clone, Debug, Eq, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }

        /// Equal texts; one shared identifier is equal without reading its text.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(|text| $name(text.into()))
            }
        }

        impl $name {
            /// Accepts an identifier, or says what is wrong with it.
            pub fn parse(text: &str) -> Result<Self, String> {
                let allowed: fn(char) -> bool = $allowed;
                if text.is_empty() {
                    return Err(format!("a {} must not be empty", $what));
                }
                if text.chars().count() > $len_max {
                    return Err(format!("a {} is at most {} characters", $what, $len_max));
                }
                if text.trim() != text {
                    return Err(format!("a {} must not start or end with spaces", $what));
                }
                if let Some(c) = text.chars().find(|c| !allowed(*c)) {
                    return Err(format!("a {} must not contain {:?}", $what, c));
                }
                Ok($name(text.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// Our stock-keeping unit: 1 to 128 printable characters.
    Sku, "SKU", SKU_LEN_MAX, |c| !c.is_control()
);
identifier!(
    /// A channel's own SKU for a listing: 1 to 128 printable characters.
    ChannelSku, "channel SKU", SKU_LEN_MAX, |c| !c.is_control()
);
identifier!(
    /// A location id: letters, digits, `-`, `_`, `.`.
    LocationId, "location id", ID_LEN_MAX, |c| c.is_ascii_alphanumeric() || "-_.".contains(c)
);
identifier!(
    /// A channel id: letters, digits, `-`, `_`, `.`.
    ChannelId, "channel id", ID_LEN_MAX, |c| c.is_ascii_alphanumeric() || "-_.".contains(c)
);

/// One component of a kit: so many units of another item per kit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub sku: Sku,
    pub quantity: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub description: Option<String>,
    /// The base unit quantities are counted in, such as `each`.
    pub unit: String,
    /// Empty for a stocked item; the components of a kit otherwise.
    pub components: Vec<Component>,
}

impl Item {
    pub fn is_kit(&self) -> bool {
        !self.components.is_empty()
    }

    /// Reads an item body (`{"description", "unit", "components": [{"sku", "quantity"}]}`).
    pub fn from_json(value: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<Item> {
        let before = errors.len();
        let mut f = Fields::new(value, at, errors);
        let description = f.string("description", false, TEXT_LEN_MAX);
        let unit = f.string("unit", false, 32).unwrap_or_else(|| "each".into());
        let components = f
            .array("components", false, KIT_COMPONENTS_MAX, |v, at, errors| {
                let mut c = Fields::new(v, at, errors);
                let sku = c.string("sku", true, SKU_LEN_MAX);
                let quantity = c.int("quantity", true, 1, QUANTITY_ABS_MAX);
                let at_sku = c.pointer("sku");
                c.finish();
                let sku = match sku.map(|s| Sku::parse(&s)) {
                    Some(Ok(sku)) => sku,
                    Some(Err(why)) => {
                        errors.push(FieldError::new(at_sku, why));
                        return None;
                    }
                    None => return None,
                };
                Some(Component {
                    sku,
                    quantity: quantity?,
                })
            })
            .unwrap_or_default();
        let at_components = f.pointer("components");
        f.finish();
        let mut seen = BTreeSet::new();
        for c in &components {
            if !seen.insert(&c.sku) {
                errors.push(FieldError::new(
                    at_components.clone(),
                    format!("lists {} twice; give its total quantity once", c.sku),
                ));
            }
        }
        (errors.len() == before).then_some(Item {
            description,
            unit,
            components,
        })
    }
}

/// A kit that would contain itself, as the path that closes the loop (`A → B → A`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KitCycle(pub Vec<Sku>);

impl fmt::Display for KitCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(Sku::as_str).collect();
        write!(f, "kit cycle: {}", names.join(" → "))
    }
}

/// Looks for a cycle through `root` in the kit graph, where `components_of` gives each kit's
/// component SKUs (with `root`'s new definition already in place).
pub fn find_kit_cycle(root: &Sku, components_of: &dyn Fn(&Sku) -> Vec<Sku>) -> Option<KitCycle> {
    fn visit(
        sku: &Sku,
        root: &Sku,
        components_of: &dyn Fn(&Sku) -> Vec<Sku>,
        path: &mut Vec<Sku>,
        done: &mut BTreeSet<Sku>,
    ) -> bool {
        for child in components_of(sku) {
            if &child == root {
                path.push(child);
                return true;
            }
            if done.contains(&child) || path.contains(&child) {
                continue;
            }
            path.push(child.clone());
            if visit(&child, root, components_of, path, done) {
                return true;
            }
            path.pop();
            done.insert(child);
        }
        false
    }
    let mut path = vec![root.clone()];
    let mut done = BTreeSet::new();
    visit(root, root, components_of, &mut path, &mut done).then_some(KitCycle(path))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    Warehouse,
    #[serde(rename = "3pl")]
    ThirdParty,
    Store,
}

impl LocationKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            LocationKind::Warehouse => "warehouse",
            LocationKind::ThirdParty => "3pl",
            LocationKind::Store => "store",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    pub kind: LocationKind,
    /// The system whose events set this location's on-hand: an event `source`, such as
    /// `/wms/east`. Events from other sources are kept but not applied.
    pub authority: String,
}

impl Location {
    pub fn from_json(value: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<Location> {
        let before = errors.len();
        let mut f = Fields::new(value, at, errors);
        let name = f.string("name", true, TEXT_LEN_MAX);
        let kind = f.string("kind", true, 16);
        let authority = f.string("authority", true, 1024);
        let at_kind = f.pointer("kind");
        f.finish();
        let kind = match kind.as_deref() {
            Some("warehouse") => Some(LocationKind::Warehouse),
            Some("3pl") => Some(LocationKind::ThirdParty),
            Some("store") => Some(LocationKind::Store),
            Some(other) => {
                errors.push(FieldError::new(
                    at_kind,
                    format!("must be warehouse, 3pl or store, not {other:?}"),
                ));
                None
            }
            None => None,
        };
        if errors.len() > before {
            return None;
        }
        Some(Location {
            name: name?,
            kind: kind?,
            authority: authority?,
        })
    }

    /// Whether events from `source` may set this location's on-hand.
    pub fn is_authoritative(&self, source: &str) -> bool {
        source == self.authority
            || source
                .strip_prefix(self.authority.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// How a channel's available quantity is derived from the ATP of its locations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Show this share of the ATP, rounded down (0 to 100).
    pub percent: Option<i64>,
    /// Hold back this many units.
    pub buffer: Option<i64>,
    /// Below this, show 0 ("end when").
    pub min_to_show: Option<i64>,
    /// Never show more than this.
    pub max: Option<i64>,
    /// Show this fixed quantity (never more than the ATP) instead of a share.
    pub fixed: Option<i64>,
}

impl Policy {
    pub fn from_json(value: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<Policy> {
        let before = errors.len();
        let mut f = Fields::new(value, at, errors);
        let policy = Policy {
            percent: f.int("percent", false, 0, 100),
            buffer: f.int("buffer", false, 0, QUANTITY_ABS_MAX),
            min_to_show: f.int("min_to_show", false, 0, QUANTITY_ABS_MAX),
            max: f.int("max", false, 0, QUANTITY_ABS_MAX),
            fixed: f.int("fixed", false, 0, QUANTITY_ABS_MAX),
        };
        f.finish();
        (errors.len() == before).then_some(policy)
    }
}

/// How a channel's orders are taken when no location can ship one whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPolicy {
    /// Wait for stock (true, the default) or reject the order and tell the channel.
    pub backorder: bool,
    /// When no one location can ship an order whole, hold its lines across the channel's
    /// locations (each line whole at one location; false, the default, keeps an order together).
    #[serde(default)]
    pub split: bool,
}

impl Default for OrderPolicy {
    fn default() -> Self {
        OrderPolicy {
            backorder: true,
            split: false,
        }
    }
}

impl OrderPolicy {
    pub fn from_json(value: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<OrderPolicy> {
        let before = errors.len();
        let mut f = Fields::new(value, at, errors);
        let backorder = f.bool("backorder");
        let split = f.bool("split");
        f.finish();
        (errors.len() == before).then(|| OrderPolicy {
            backorder: backorder.unwrap_or(true),
            split: split.unwrap_or(false),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// `shopify`, `amazon`, `edi`, `api`, or another system name.
    pub kind: String,
    /// The locations whose stock the channel may sell, in priority order.
    pub locations: Vec<LocationId>,
    pub policy: Policy,
    /// How long an increase waits before it is sent, so orders already taken are seen first.
    pub increase_hold_ms: i64,
    /// How its orders are taken.
    #[serde(default)]
    pub orders: OrderPolicy,
}

impl Channel {
    pub fn from_json(value: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<Channel> {
        let before = errors.len();
        let mut f = Fields::new(value, at, errors);
        let kind = f.string("kind", true, 32);
        let locations = f.array(
            "locations",
            true,
            CHANNEL_LOCATIONS_MAX,
            |v, at, errors| match v.as_str().map(LocationId::parse) {
                Some(Ok(id)) => Some(id),
                Some(Err(why)) => {
                    errors.push(FieldError::new(at, why));
                    None
                }
                None => {
                    errors.push(FieldError::new(at, "must be a location id (a string)"));
                    None
                }
            },
        );
        let policy = f.object("policy", false, Policy::from_json);
        let hold = f.int("increase_hold_ms", false, 0, 24 * 3600 * 1000);
        let orders = f.object("orders", false, OrderPolicy::from_json);
        let at_locations = f.pointer("locations");
        f.finish();
        if let Some(locations) = &locations {
            let unique: BTreeSet<&LocationId> = locations.iter().collect();
            if unique.len() != locations.len() {
                errors.push(FieldError::new(at_locations, "lists a location twice"));
            }
        }
        if errors.len() > before {
            return None;
        }
        Some(Channel {
            kind: kind?,
            locations: locations?,
            policy: policy.unwrap_or_default(),
            increase_hold_ms: hold.unwrap_or(0),
            orders: orders.unwrap_or_default(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub sku: Sku,
}

impl Listing {
    pub fn from_json(value: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<Listing> {
        let mut f = Fields::new(value, at, errors);
        let sku = f.string("sku", true, SKU_LEN_MAX);
        let at_sku = f.pointer("sku");
        f.finish();
        match Sku::parse(&sku?) {
            Ok(sku) => Some(Listing { sku }),
            Err(why) => {
                errors.push(FieldError::new(at_sku, why));
                None
            }
        }
    }
}

/// Kit definitions by SKU, for cycle checks and availability.
pub type Kits = BTreeMap<Sku, Vec<Component>>;

/// Checks a batch of item definitions against the catalog: every component must be a known
/// item (stored, or defined in the batch), and no kit may contain itself. `stored` gives the
/// stored components of SKUs reachable from the batch (a batch definition replaces its stored
/// one); `pointer` names each batch entry in problems (`""` for one item, `/3` in a bulk write).
pub fn check_items(
    batch: &[(Sku, Item)],
    known: &BTreeSet<Sku>,
    stored: &Kits,
    pointer: &dyn Fn(usize) -> String,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let defined: BTreeMap<&Sku, &Item> = batch.iter().map(|(s, i)| (s, i)).collect();
    for (i, (_, item)) in batch.iter().enumerate() {
        for (j, c) in item.components.iter().enumerate() {
            if !known.contains(&c.sku) && !defined.contains_key(&c.sku) {
                errors.push(FieldError::new(
                    format!("{}/components/{j}/sku", pointer(i)),
                    format!(
                        "{} is not an item; create it first (PUT /v1/items/{{sku}})",
                        c.sku
                    ),
                ));
            }
        }
    }
    let components_of = |sku: &Sku| -> Vec<Sku> {
        match defined.get(sku) {
            Some(item) => item.components.iter().map(|c| c.sku.clone()).collect(),
            None => stored
                .get(sku)
                .map(|cs| cs.iter().map(|c| c.sku.clone()).collect())
                .unwrap_or_default(),
        }
    };
    for (i, (sku, item)) in batch.iter().enumerate() {
        if !item.is_kit() {
            continue;
        }
        if let Some(cycle) = find_kit_cycle(sku, &components_of) {
            errors.push(FieldError::new(
                format!("{}/components", pointer(i)),
                cycle.to_string(),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(value: Value) -> Result<Item, Vec<String>> {
        let mut errors = Vec::new();
        Item::from_json(&value, "", &mut errors)
            .ok_or_else(|| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn items_and_kits_parse_with_defaults() {
        let plain = item(json!({"description": "Red mug"})).unwrap();
        assert_eq!((plain.unit.as_str(), plain.is_kit()), ("each", false));
        let kit = item(
            json!({"components": [{"sku": "MUG", "quantity": 2}, {"sku": "BOX", "quantity": 1}]}),
        )
        .unwrap();
        assert_eq!(
            kit.components[0],
            Component {
                sku: Sku::parse("MUG").unwrap(),
                quantity: 2
            }
        );
    }

    #[test]
    fn bad_items_name_each_problem() {
        let errors = item(json!({
            "unit": "",
            "components": [{"sku": "A", "quantity": 0}, {"sku": "", "quantity": 1.5}, {"sku": "A", "quantity": 2}],
            "colour": "red"
        }))
        .unwrap_err();
        for expected in [
            "/unit: must not be empty",
            "/components/0/quantity: must be from 1 to",
            "/components/1/sku: must not be empty",
            "/components/1/quantity: must be a whole number",
            "/colour: is not a known member",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "missing {expected} in {errors:#?}"
            );
        }
    }

    #[test]
    fn identifiers_refuse_what_would_confuse_a_path_or_a_log() {
        assert!(Sku::parse("ABC-123/XL blue").is_ok());
        assert!(Sku::parse(" ABC").is_err());
        assert!(Sku::parse("A\u{0}B").is_err());
        assert!(Sku::parse(&"x".repeat(129)).is_err());
        assert!(LocationId::parse("wh-east.1").is_ok());
        assert!(LocationId::parse("../etc").is_err());
        assert!(ChannelId::parse("shop'; DROP").is_err());
    }

    #[test]
    fn kit_cycles_are_found_and_named() {
        let graph: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
            ("A", vec!["B", "C"]),
            ("B", vec!["D"]),
            ("D", vec!["A"]),
            ("C", vec![]),
        ]);
        let components_of = |s: &Sku| -> Vec<Sku> {
            graph.get(s.as_str()).map_or(Vec::new(), |v| {
                v.iter().map(|c| Sku::parse(c).unwrap()).collect()
            })
        };
        let cycle = find_kit_cycle(&Sku::parse("A").unwrap(), &components_of).unwrap();
        assert_eq!(cycle.to_string(), "kit cycle: A → B → D → A");
        assert!(find_kit_cycle(&Sku::parse("C").unwrap(), &components_of).is_none());
        let self_loop = |_: &Sku| vec![Sku::parse("S").unwrap()];
        assert_eq!(
            find_kit_cycle(&Sku::parse("S").unwrap(), &self_loop)
                .unwrap()
                .to_string(),
            "kit cycle: S → S"
        );
    }

    #[test]
    fn channels_and_locations_parse_and_check_authority() {
        let mut errors = Vec::new();
        let channel = Channel::from_json(
            &json!({"kind": "shopify", "locations": ["east", "west"], "policy": {"percent": 80, "buffer": 2}, "increase_hold_ms": 5000}),
            "",
            &mut errors,
        )
        .unwrap();
        assert_eq!(channel.policy.percent, Some(80));
        let bad = Channel::from_json(
            &json!({"kind": "x", "locations": ["a", "a"], "policy": {"percent": 120}}),
            "",
            &mut errors,
        );
        assert!(bad.is_none());
        assert!(errors.iter().any(|e| e.pointer == "/policy/percent"));
        assert!(errors.iter().any(|e| e.pointer == "/locations"));
        let mut errors = Vec::new();
        let loc = Location::from_json(
            &json!({"name": "East", "kind": "3pl", "authority": "/wms/east"}),
            "",
            &mut errors,
        )
        .unwrap();
        assert!(loc.is_authoritative("/wms/east") && loc.is_authoritative("/wms/east/dock-2"));
        assert!(!loc.is_authoritative("/wms/eastern") && !loc.is_authoritative("/erp"));
    }
}
