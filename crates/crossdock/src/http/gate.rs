//! The gate every governed request passes: who is calling (API key), may they (scope), and how
//! often (a token bucket per key).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use crossdock_core::Timestamp;
use crossdock_core::access::{Admission, Bucket, Quota, Scope, Scopes, bearer_token};
use crossdock_store::{ApiKeyRecord, Store};

use super::problem::{self, Problem};
use crate::config::AuthConfig;
use crate::keys;

/// How long a looked-up key is trusted before it is read again; a revocation made by another
/// process or node takes effect within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Keys remembered at most (unknown key ids included, so guessing costs the store nothing).
const KEY_CACHE_ENTRIES_MAX: usize = 10_000;
/// Rate-limit buckets kept at most; beyond this the oldest are forgotten (they refill anyway).
const BUCKETS_MAX: usize = 100_000;

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Who is calling, as far as the API is concerned.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: String,
    pub name: String,
    pub scopes: Scopes,
    /// A key bound to a channel sees only that channel's data; another channel's is not found.
    pub channel: Option<String>,
    pub quota: Quota,
}

impl Caller {
    /// The caller when authentication is switched off for local development.
    pub fn anonymous_admin(quota: Quota) -> Caller {
        Caller {
            key_id: "anonymous".into(),
            name: "anonymous".into(),
            scopes: Scopes::of(&[Scope::Admin]),
            channel: None,
            quota,
        }
    }

    /// Whether this caller may see data belonging to `channel`.
    pub fn sees_channel(&self, channel: &str) -> bool {
        self.channel.as_deref().is_none_or(|own| own == channel)
    }
}

pub struct Gate {
    enabled: bool,
    default_quota: Quota,
    keys: Mutex<HashMap<String, (Option<ApiKeyRecord>, Instant)>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

fn unauthorized(detail: &str, invalid_token: bool) -> Problem {
    let challenge = if invalid_token {
        "Bearer realm=\"crossdock\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"crossdock\""
    };
    Problem::new(problem::UNAUTHORIZED, detail).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    )
}

impl Gate {
    pub fn new(config: &AuthConfig) -> Gate {
        Gate {
            enabled: config.enabled,
            default_quota: Quota {
                per_second: config.rate_per_second,
                burst: config.burst,
            },
            keys: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Identifies the caller from `Authorization: Bearer <token>`.
    pub async fn authenticate(
        &self,
        store: &Store,
        headers: &HeaderMap,
    ) -> Result<Caller, Problem> {
        if !self.enabled {
            return Ok(Caller::anonymous_admin(self.default_quota));
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "no API key: send Authorization: Bearer <token>",
                false,
            ));
        };
        let token = value
            .to_str()
            .map_err(|_| "is not visible ASCII")
            .and_then(bearer_token)
            .map_err(|why| unauthorized(&format!("the Authorization header {why}"), true))?;
        let record = self.key(store, token.key_id()).await?;
        let record = match record {
            Some(r) if keys::matches(&r, &token) => r,
            _ => return Err(unauthorized("the API key is not valid", true)),
        };
        if record.revoked_at.is_some() {
            return Err(unauthorized("the API key is revoked", true));
        }
        let scopes = Scopes::parse(&record.key.scopes).map_err(|e| {
            tracing::error!(key = %record.key.name, error = %e, "stored key has unreadable scopes");
            unauthorized("the API key is not valid", true)
        })?;
        Ok(Caller {
            key_id: record.key.id,
            name: record.key.name,
            scopes,
            channel: record.key.channel,
            quota: Quota {
                per_second: record
                    .key
                    .rate_per_second
                    .unwrap_or(self.default_quota.per_second),
                burst: record.key.burst.unwrap_or(self.default_quota.burst),
            },
        })
    }

    async fn key(&self, store: &Store, id: &str) -> Result<Option<ApiKeyRecord>, Problem> {
        let cached = self.keys.lock().ok().and_then(|cache| {
            cache
                .get(id)
                .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
                .map(|(record, _)| record.clone())
        });
        if let Some(record) = cached {
            return Ok(record);
        }
        let record = store.key_get(id).await?;
        if let Ok(mut cache) = self.keys.lock() {
            if cache.len() >= KEY_CACHE_ENTRIES_MAX {
                cache.clear();
            }
            cache.insert(id.to_owned(), (record.clone(), Instant::now()));
        }
        Ok(record)
    }

    /// Forgets a key at once (after it is revoked through this process).
    pub fn forget(&self, id: &str) {
        if let Ok(mut cache) = self.keys.lock() {
            cache.remove(id);
        }
    }

    /// Takes one request from the caller's budget. The headers describe the budget either way.
    pub fn admit(
        &self,
        caller: &Caller,
        now: Timestamp,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Problem> {
        if !self.enabled {
            return Ok(Vec::new());
        }
        let quota = caller.quota;
        let admission = match self.buckets.lock() {
            Ok(mut buckets) => {
                if buckets.len() >= BUCKETS_MAX && !buckets.contains_key(&caller.key_id) {
                    buckets.clear();
                }
                buckets
                    .entry(caller.key_id.clone())
                    .or_default()
                    .take(quota, now.unix_micros())
            }
            Err(_) => Admission::Allowed {
                remaining: 0,
                reset_s: 0,
            },
        };
        let policy = format!("\"key\";q={};w=1", quota.per_second);
        let mut headers = vec![(RATELIMIT_POLICY, header_value(&policy))];
        match admission {
            Admission::Allowed { remaining, reset_s } => {
                headers.push((
                    RATELIMIT,
                    header_value(&format!("\"key\";r={remaining};t={reset_s}")),
                ));
                Ok(headers)
            }
            Admission::Limited { retry_after_s } => {
                headers.push((
                    RATELIMIT,
                    header_value(&format!("\"key\";r=0;t={retry_after_s}")),
                ));
                let mut problem = Problem::new(
                    problem::RATE_LIMITED,
                    format!(
                        "key {:?} may make {} requests per second with a burst of {}; retry in {retry_after_s} s",
                        caller.name, quota.per_second, quota.burst
                    ),
                )
                .retry_after(retry_after_s);
                for (name, value) in headers {
                    problem = problem.with_header(name, value);
                }
                Err(problem)
            }
        }
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_bound_caller_sees_only_its_channel() {
        let mut caller = Caller::anonymous_admin(Quota {
            per_second: 1,
            burst: 0,
        });
        assert!(caller.sees_channel("amazon-us"));
        caller.channel = Some("shopify-eu".into());
        assert!(caller.sees_channel("shopify-eu"));
        assert!(!caller.sees_channel("amazon-us"));
    }
}
