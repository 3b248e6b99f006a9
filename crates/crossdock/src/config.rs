//! Configuration: defaults in code, then `crossdock.toml`, then `CROSSDOCK_<SECTION>__<KEY>`
//! environment variables, then command-line flags. Unknown keys are errors at every layer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use crossdock_core::RetryPolicy;
use crossdock_store::{Durability, StoreOptions};
use serde::{Deserialize, Serialize};

/// The prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "CROSSDOCK_";
/// The configuration file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "crossdock.toml";

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub events: EventsConfig,
    pub outbox: OutboxConfig,
    pub auth: AuthConfig,
    /// Delivery targets by name.
    pub targets: BTreeMap<String, TargetConfig>,
    /// Routes from the event log to targets.
    pub subscriptions: Vec<SubscriptionConfig>,
    /// EDI trading partners, by id (the `{partner}` of `POST /v1/edi/{partner}`).
    pub edi: BTreeMap<String, EdiPartnerConfig>,
    pub postings: PostingsConfig,
}

/// Financial posting: shipped lines and received returns gathered into journal batches for the
/// ERP.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostingsConfig {
    /// Seconds between runs; 0 posts only on demand (`crossdock postings run`,
    /// `POST /v1/postings/run`).
    pub interval_s: u64,
    /// The business day's offset from UTC in minutes (`-300`: days end at midnight UTC−5).
    pub day_offset_minutes: i32,
    /// The target the `erp.journal.post` actions are queued for.
    pub target: String,
}

impl Default for PostingsConfig {
    fn default() -> Self {
        PostingsConfig {
            interval_s: 900,
            day_offset_minutes: 0,
            target: "erp".into(),
        }
    }
}

/// One EDI trading partner: where its stock is and how its item ids map to our SKUs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdiPartnerConfig {
    /// The location (our id) the partner's stock reports are about.
    pub location: String,
    /// Item id qualifiers that carry our SKU, in order of preference.
    #[serde(default = "defaults::sku_qualifiers")]
    pub sku_qualifiers: Vec<String>,
    /// The QTY01 qualifier of on-hand stock in the partner's 846s.
    #[serde(default = "defaults::on_hand_qualifier")]
    pub on_hand_qualifier: String,
    /// The partner's warehouse ids (N1 WH/SF N104) and the locations they are.
    #[serde(default)]
    pub warehouses: BTreeMap<String, String>,
    /// Answer every functional group with a 997 (queued for target `edi-<partner>`).
    #[serde(default = "defaults::yes")]
    pub acknowledge: bool,
    /// The channel (our id) the partner's purchase orders (850s) are orders of; without it 850s
    /// are recorded as `edi.850.received` events only.
    #[serde(default)]
    pub channel: Option<String>,
    /// The ship-to country of 850s whose N4 names none (ISO 3166 code, such as `US`).
    #[serde(default)]
    pub country: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// The largest request body accepted, on every route.
    pub body_bytes_max: usize,
    /// A request that takes longer is answered 503 and its work, if any, still completes.
    pub request_timeout_ms: u64,
    /// Requests handled at once; beyond this, 503 with `Retry-After`.
    pub in_flight_requests_max: usize,
    /// How long a shutdown waits for requests and deliveries in flight.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            body_bytes_max: 4 * 1024 * 1024,
            request_timeout_ms: 30_000,
            in_flight_requests_max: 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityConfig {
    Full,
    Normal,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A SQLite file path or a `postgres://` URL.
    pub database: String,
    pub durability: DurabilityConfig,
    pub group_commit_events_max: usize,
    pub connections_max: u32,
    pub write_queue_max: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let defaults = StoreOptions::new("crossdock.db");
        StoreConfig {
            database: defaults.database,
            durability: DurabilityConfig::Full,
            group_commit_events_max: defaults.group_commit_events_max,
            connections_max: defaults.connections_max,
            write_queue_max: defaults.write_queue_max,
        }
    }
}

impl StoreConfig {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            database: self.database.clone(),
            durability: match self.durability {
                DurabilityConfig::Full => Durability::Full,
                DurabilityConfig::Normal => Durability::Normal,
            },
            group_commit_events_max: self.group_commit_events_max,
            connections_max: self.connections_max,
            write_queue_max: self.write_queue_max,
        }
    }

    /// The database location with any password replaced, for logs.
    pub fn database_redacted(&self) -> String {
        redact_url(&self.database)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub batch_events_max: usize,
    pub event_data_bytes_max: usize,
    /// The most events one feed page returns.
    pub feed_limit_max: usize,
    /// The longest a feed request may wait for new events (`wait_ms`).
    pub feed_wait_ms_max: u64,
    /// Keep the bodies of rejected event requests in the inbox, for operators to inspect.
    pub keep_rejected: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            batch_events_max: 1000,
            event_data_bytes_max: 256 * 1024,
            feed_limit_max: 1000,
            feed_wait_ms_max: 30_000,
            keep_rejected: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The longest a delivery worker sleeps before looking for due work it was not told about
    /// (actions queued by another node, or by the CLI).
    pub poll_interval_ms: u64,
    /// A delivery not finished within its lease is presumed lost and retried.
    pub lease_ms: i64,
    /// Delivered, superseded and dropped actions are deleted after this many hours.
    pub retention_hours: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            poll_interval_ms: 1000,
            lease_ms: 60_000,
            retention_hours: 7 * 24,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Off only for local development (`serve --no-auth`): every caller is then an admin.
    pub enabled: bool,
    /// Where the first admin key is written, readable by its owner only, when the store has no
    /// keys yet.
    pub admin_key_file: String,
    /// Requests per second per key, unless the key says otherwise.
    pub rate_per_second: u32,
    /// Requests a key may make at once beyond its rate.
    pub burst: u32,
    /// How long a response is kept for replay under its `Idempotency-Key`.
    pub idempotency_ttl_hours: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            admin_key_file: "crossdock-admin-key".into(),
            rate_per_second: 100,
            burst: 200,
            idempotency_ttl_hours: 24,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// HTTP POST of each action to a URL.
    Webhook,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub kind: TargetKind,
    pub url: String,
    #[serde(default = "defaults::attempts_max")]
    pub attempts_max: u32,
    #[serde(default = "defaults::backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    #[serde(default = "defaults::in_flight_max")]
    pub in_flight_max: usize,
    /// Deliveries started per second, at most (0: unlimited).
    #[serde(default = "defaults::rate_per_second")]
    pub rate_per_second: u32,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Extra request headers, such as an API key. Values are secrets: never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl TargetConfig {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts_max: self.attempts_max,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
        }
    }
}

mod defaults {
    pub fn attempts_max() -> u32 {
        8
    }
    pub fn backoff_base_ms() -> u64 {
        500
    }
    pub fn backoff_max_ms() -> u64 {
        300_000
    }
    pub fn in_flight_max() -> usize {
        4
    }
    pub fn rate_per_second() -> u32 {
        50
    }
    pub fn timeout_ms() -> u64 {
        10_000
    }
    pub fn sku_qualifiers() -> Vec<String> {
        ["VP", "VN", "SK", "BP"].map(String::from).to_vec()
    }
    pub fn on_hand_qualifier() -> String {
        "17".into()
    }
    pub fn yes() -> bool {
        true
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    pub name: String,
    /// The target (a key of `[targets]`) that receives the matching events.
    pub target: String,
    /// Event types to send; an entry ending in `*` matches a prefix. Empty: every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// Event sources to send, matched the same way. Empty: every source.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// Values given on the command line, which win over everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub database: Option<String>,
    pub listen: Option<String>,
}

impl Config {
    /// Loads the effective configuration: file (if any), environment, flags, then validation.
    pub fn load(
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> anyhow::Result<(Config, Option<PathBuf>)> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_from(file, &env, overrides)
    }

    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> anyhow::Result<(Config, Option<PathBuf>)> {
        let (mut table, used) = match file {
            Some(path) => (read_table(path)?, Some(path.to_owned())),
            None if Path::new(DEFAULT_FILE).exists() => (
                read_table(Path::new(DEFAULT_FILE))?,
                Some(PathBuf::from(DEFAULT_FILE)),
            ),
            None => (toml::Table::new(), None),
        };
        apply_env(&mut table, env)?;
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("invalid configuration: {}", e.message().trim())
                })?;
        if let Some(database) = &overrides.database {
            config.store.database.clone_from(database);
        }
        if let Some(listen) = &overrides.listen {
            config.server.listen.clone_from(listen);
        }
        config.validate()?;
        Ok((config, used))
    }

    /// Checks what types alone cannot: ranges, references between sections, addresses.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.server.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "server.listen: {:?} is not an address such as 127.0.0.1:8080",
                self.server.listen
            ));
        }
        let positive = [
            ("server.body_bytes_max", self.server.body_bytes_max as u64),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            (
                "server.in_flight_requests_max",
                self.server.in_flight_requests_max as u64,
            ),
            (
                "store.group_commit_events_max",
                self.store.group_commit_events_max as u64,
            ),
            (
                "store.connections_max",
                u64::from(self.store.connections_max),
            ),
            ("store.write_queue_max", self.store.write_queue_max as u64),
            (
                "events.batch_events_max",
                self.events.batch_events_max as u64,
            ),
            (
                "events.event_data_bytes_max",
                self.events.event_data_bytes_max as u64,
            ),
            ("events.feed_limit_max", self.events.feed_limit_max as u64),
            ("outbox.poll_interval_ms", self.outbox.poll_interval_ms),
            (
                "outbox.lease_ms",
                u64::try_from(self.outbox.lease_ms).unwrap_or(0),
            ),
            ("auth.rate_per_second", u64::from(self.auth.rate_per_second)),
            (
                "auth.idempotency_ttl_hours",
                u64::from(self.auth.idempotency_ttl_hours),
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                problems.push(format!("{name}: must be greater than 0"));
            }
        }
        if self.store.database.trim().is_empty() {
            problems.push("store.database: must name a SQLite file or a postgres:// URL".into());
        }
        for (name, target) in &self.targets {
            if !valid_name(name) {
                problems.push(format!(
                    "targets.{name}: names are 1 to 64 letters, digits, '-' or '_'"
                ));
            }
            if !(target.url.starts_with("http://") || target.url.starts_with("https://")) {
                problems.push(format!(
                    "targets.{name}.url: must start with http:// or https://"
                ));
            }
            if target.attempts_max == 0 {
                problems.push(format!("targets.{name}.attempts_max: must be at least 1"));
            }
            if target.in_flight_max == 0 {
                problems.push(format!("targets.{name}.in_flight_max: must be at least 1"));
            }
            if target.backoff_base_ms > target.backoff_max_ms {
                problems.push(format!(
                    "targets.{name}.backoff_base_ms: must not exceed backoff_max_ms"
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, sub) in self.subscriptions.iter().enumerate() {
            if !valid_name(&sub.name) {
                problems.push(format!(
                    "subscriptions[{i}].name: names are 1 to 64 letters, digits, '-' or '_'"
                ));
            }
            if !seen.insert(&sub.name) {
                problems.push(format!(
                    "subscriptions[{i}].name: {:?} is used twice",
                    sub.name
                ));
            }
            if !self.targets.contains_key(&sub.target) {
                problems.push(format!(
                    "subscriptions[{i}].target: no target named {:?} in [targets]",
                    sub.target
                ));
            }
        }
        for (name, partner) in &self.edi {
            if !valid_name(name) {
                problems.push(format!(
                    "edi.{name}: partner ids are 1 to 64 letters, digits, '-' or '_'"
                ));
            }
            if name == "groups" {
                problems.push(
                    "edi.groups: the id is taken by GET /v1/edi/groups; choose another".into(),
                );
            }
            let locations = std::iter::once(("location".to_string(), &partner.location)).chain(
                partner
                    .warehouses
                    .iter()
                    .map(|(w, l)| (format!("warehouses.{w}"), l)),
            );
            for (key, location) in locations {
                if let Err(why) = crossdock_core::catalog::LocationId::parse(location) {
                    problems.push(format!("edi.{name}.{key}: {location:?} {why}"));
                }
            }
            if let Some(channel) = &partner.channel
                && let Err(why) = crossdock_core::catalog::ChannelId::parse(channel)
            {
                problems.push(format!("edi.{name}.channel: {channel:?} {why}"));
            }
            if partner.sku_qualifiers.is_empty() {
                problems.push(format!("edi.{name}.sku_qualifiers: name at least one"));
            }
        }
        if !(-1440..=1440).contains(&self.postings.day_offset_minutes) {
            problems.push(
                "postings.day_offset_minutes: must be within a day of UTC (-1440 to 1440)".into(),
            );
        }
        if !valid_name(&self.postings.target) {
            problems.push("postings.target: names are 1 to 64 letters, digits, '-' or '_'".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("invalid configuration:\n  {}", problems.join("\n  "))
        }
    }

    /// The configuration as TOML with every secret replaced, for `config check`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store.database = self.store.database_redacted();
        for target in shown.targets.values_mut() {
            for value in target.headers.values_mut() {
                *value = "<redacted>".into();
            }
            target.url = redact_url(&target.url);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e))
}

/// Applies `CROSSDOCK_<SECTION>__<KEY>[__<KEY>…]=value`. Variables without `__` (such as
/// `CROSSDOCK_LOG`) are not configuration and are left alone.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> anyhow::Result<()> {
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !path.contains("__") {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            bail!("environment variable {name}: empty key between '__'");
        }
        let (last, parents) = keys
            .split_last()
            .map_or((String::new(), &[][..]), |(l, p)| (l.clone(), p));
        let mut node = &mut *table;
        for key in parents {
            let entry = node
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry
                .as_table_mut()
                .with_context(|| format!("environment variable {name}: {key} is not a section"))?;
        }
        node.insert(last, env_value(value));
    }
    Ok(())
}

fn env_value(text: &str) -> toml::Value {
    if let Ok(b) = text.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Ok(i) = text.parse::<i64>() {
        toml::Value::Integer(i)
    } else {
        toml::Value::String(text.to_owned())
    }
}

/// Replaces the password of a URL (`scheme://user:secret@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crossdock.toml");
        std::fs::write(&path, file).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load_from(Some(&path), &env, &Overrides::default()).map(|(c, _)| c)
    }

    #[test]
    fn defaults_apply_when_the_file_is_empty() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.store.database, "crossdock.db");
        assert_eq!(config.events.batch_events_max, 1000);
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_both() {
        let config = load(
            "[server]\nlisten = \"0.0.0.0:9000\"\n",
            &[
                ("CROSSDOCK_SERVER__LISTEN", "127.0.0.1:9100"),
                ("CROSSDOCK_EVENTS__BATCH_EVENTS_MAX", "50"),
                ("CROSSDOCK_LOG", "debug"),
                ("CROSSDOCK_TEST_POSTGRES_URL", "postgres://x"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:9100");
        assert_eq!(config.events.batch_events_max, 50);
        let overrides = Overrides {
            listen: Some("127.0.0.1:1".into()),
            database: Some("postgres://u:p@h/db".into()),
        };
        let (config, _) = Config::load_from(None, &[], &overrides).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:1");
        assert_eq!(config.store.database_redacted(), "postgres://u:***@h/db");
    }

    #[test]
    fn unknown_keys_are_errors_in_the_file_and_in_the_environment() {
        let err = load("[server]\nlisten_addr = \"x\"\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_addr`"),
            "{err}"
        );
        let err = load("", &[("CROSSDOCK_SERVR__LISTEN", "x")]).unwrap_err();
        assert!(err.to_string().contains("unknown field `servr`"), "{err}");
    }

    #[test]
    fn validation_names_every_problem() {
        let err = load(
            "[server]\nlisten = \"nowhere\"\n[events]\nbatch_events_max = 0\n\
             [targets.crm]\nkind = \"webhook\"\nurl = \"ftp://x\"\n\
             [[subscriptions]]\nname = \"s\"\ntarget = \"erp\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "server.listen",
            "events.batch_events_max: must be greater than 0",
            "targets.crm.url",
            "subscriptions[0].target: no target named \"erp\"",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in {err}");
        }
    }

    #[test]
    fn secrets_are_redacted_when_shown() {
        let config = load(
            "[targets.crm]\nkind = \"webhook\"\nurl = \"https://u:pw@crm.example/hook\"\n\
             headers = { authorization = \"Bearer s3cret\" }\n",
            &[],
        )
        .unwrap();
        let shown = config.to_redacted_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains(":pw@"),
            "{shown}"
        );
    }
}
