//! Who may do what: scopes, API key tokens, rate quotas and the token bucket that enforces them,
//! and idempotency keys. Pure: tokens are generated and hashed by the caller.

use std::fmt;

/// A permission an API key holds. `admin` holds them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    CatalogWrite,
    InventoryRead,
    InventoryWrite,
    OrdersRead,
    OrdersWrite,
    EventsRead,
    EventsWrite,
    Ops,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::CatalogWrite,
        Scope::InventoryRead,
        Scope::InventoryWrite,
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::EventsRead,
        Scope::EventsWrite,
        Scope::Ops,
        Scope::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::CatalogWrite => "catalog:write",
            Scope::InventoryRead => "inventory:read",
            Scope::InventoryWrite => "inventory:write",
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::EventsRead => "events:read",
            Scope::EventsWrite => "events:write",
            Scope::Ops => "ops",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {text:?}; scopes are {}", known.join(", "))
            })
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scopes(u16);

impl Scopes {
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Parses a comma-separated list such as `orders:read,orders:write`.
    pub fn parse(text: &str) -> Result<Scopes, String> {
        let mut bits = 0;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            bits |= Scope::parse(part)?.bit();
        }
        if bits == 0 {
            return Err("at least one scope is required".into());
        }
        Ok(Scopes(bits))
    }

    /// Whether a key with these scopes may act under `scope`; `admin` may do everything.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |s| self.0 & s.bit() != 0)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// The recognizable prefix of every crossdock API token, so secret scanners can find leaks.
pub const TOKEN_PREFIX: &str = "cdk_";
/// Characters of the public key id inside a token.
pub const KEY_ID_LEN: usize = 12;
/// Characters of the secret inside a token: 43 base64url characters carry 256 bits.
pub const SECRET_LEN: usize = 43;

/// An API token as presented: `cdk_<key id>_<secret>`. The key id finds the stored key; the
/// secret is compared (hashed, in constant time) with what the store holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    key_id: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// Builds a token from a key id (12 lowercase hex) and 32 random bytes.
    pub fn new(key_id: &str, secret_bytes: &[u8; 32]) -> Token {
        Token {
            key_id: key_id.to_owned(),
            secret: base64url(secret_bytes),
        }
    }

    /// Parses the value of an `Authorization: Bearer …` header's token.
    pub fn parse(text: &str) -> Result<Token, &'static str> {
        let rest = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or("is not a crossdock API token (they start with cdk_)")?;
        let (key_id, secret) = rest
            .split_once('_')
            .ok_or("is not a crossdock API token (cdk_<key id>_<secret>)")?;
        let id_ok = key_id.len() == KEY_ID_LEN
            && key_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let secret_ok = secret.len() == SECRET_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok || !secret_ok {
            return Err("is not a well-formed crossdock API token");
        }
        Ok(Token {
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret part, to be hashed by the caller.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The full token text. Shown once, when the key is created.
    pub fn expose(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.key_id, self.secret)
    }
}

/// Extracts the token from an `Authorization` header value (`Bearer <token>`).
pub fn bearer_token(header: &str) -> Result<Token, &'static str> {
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or("must be \"Bearer <token>\"")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("must use the Bearer scheme");
    }
    Token::parse(token.trim())
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// How many requests a key may make: a sustained rate and a burst on top of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

impl Quota {
    /// Parses `N/s` (or a bare `N`), the rate part of `keys create --rate`.
    pub fn parse_rate(text: &str) -> Result<u32, String> {
        let number = text.trim().strip_suffix("/s").unwrap_or(text.trim());
        match number.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{text:?} is not a rate such as 50/s")),
        }
    }

    fn interval_us(self) -> i64 {
        1_000_000 / i64::from(self.per_second.max(1))
    }
}

/// The state of one key's token bucket (GCRA: the theoretical arrival time of the next request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    tat_us: i64,
}

/// The outcome of [`Bucket::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Allowed; `remaining` more requests would be allowed right now.
    Allowed { remaining: u32, reset_s: u64 },
    /// Refused; try again after `retry_after_s` seconds.
    Limited { retry_after_s: u64 },
}

impl Bucket {
    /// Takes one request at time `now_us` (microseconds).
    pub fn take(&mut self, quota: Quota, now_us: i64) -> Admission {
        let interval = quota.interval_us();
        let tolerance = interval.saturating_mul(i64::from(quota.burst));
        let tat = self.tat_us.max(now_us);
        let next = tat.saturating_add(interval);
        if next - now_us > tolerance.saturating_add(interval) {
            let wait_us = next - now_us - tolerance - interval;
            return Admission::Limited {
                retry_after_s: seconds_up(wait_us).max(1),
            };
        }
        self.tat_us = next;
        let used = (next - now_us).div_euclid(interval.max(1));
        let capacity = i64::from(quota.burst) + 1;
        Admission::Allowed {
            remaining: u32::try_from((capacity - used).max(0)).unwrap_or(0),
            reset_s: seconds_up(next - now_us),
        }
    }
}

/// Whole seconds, rounded up, in a non-negative number of microseconds.
fn seconds_up(micros: i64) -> u64 {
    u64::try_from(micros.max(0))
        .unwrap_or(0)
        .div_ceil(1_000_000)
}

/// The longest `Idempotency-Key` accepted.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters (the draft standard's
/// structured-field string, with or without its quotes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(header: &str) -> Result<IdempotencyKey, &'static str> {
        let text = header.trim();
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        if text.is_empty() {
            return Err("must not be empty");
        }
        if text.len() > IDEMPOTENCY_KEY_LEN_MAX {
            return Err("must be at most 255 characters");
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err("must be visible ASCII characters without quotes or backslashes");
        }
        Ok(IdempotencyKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scopes_parse_and_admin_allows_everything() {
        let s = Scopes::parse("orders:read, events:write").unwrap();
        assert!(s.allows(Scope::OrdersRead) && s.allows(Scope::EventsWrite));
        assert!(!s.allows(Scope::Ops));
        assert_eq!(s.to_string(), "orders:read,events:write");
        let admin = Scopes::parse("admin").unwrap();
        assert!(Scope::ALL.iter().all(|s| admin.allows(*s)));
        assert!(
            Scopes::parse("orders:delete")
                .unwrap_err()
                .contains("unknown scope")
        );
        assert!(Scopes::parse(" , ").is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_lookalikes() {
        let token = Token::new("0123456789ab", &[7u8; 32]);
        let text = token.expose();
        assert!(text.starts_with("cdk_0123456789ab_"));
        assert_eq!(text.len(), 4 + 12 + 1 + 43);
        assert_eq!(bearer_token(&format!("Bearer {text}")).unwrap(), token);
        assert_eq!(bearer_token(&format!("bearer  {text} ")).unwrap(), token);
        assert!(format!("{token:?}").contains("redacted"));
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer cdk_",
            "Bearer ghp_0123456789ab_xxx",
            "Bearer cdk_0123456789AB_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "Bearer cdk_0123456789ab_short",
        ] {
            assert!(bearer_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let quota = Quota {
            per_second: 10,
            burst: 5,
        };
        let mut bucket = Bucket::default();
        let allowed = (0..20)
            .filter(|_| matches!(bucket.take(quota, 0), Admission::Allowed { .. }))
            .count();
        assert_eq!(allowed, 6, "one plus a burst of five at the same instant");
        assert!(matches!(
            bucket.take(quota, 0),
            Admission::Limited { retry_after_s: 1 }
        ));
        // A tenth of a second later, one more request fits.
        assert!(matches!(
            bucket.take(quota, 100_000),
            Admission::Allowed { .. }
        ));
        assert!(matches!(
            bucket.take(quota, 100_000),
            Admission::Limited { .. }
        ));
        // After a quiet second the whole burst is back.
        let later = 5_000_000;
        let again = (0..20)
            .filter(|_| matches!(bucket.take(quota, later), Admission::Allowed { .. }))
            .count();
        assert_eq!(again, 6);
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_text() {
        assert_eq!(
            IdempotencyKey::parse("\"abc-1\"").unwrap().as_str(),
            "abc-1"
        );
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    proptest! {
        #[test]
        fn header_parsers_never_panic(s in ".*") {
            let _ = bearer_token(&s);
            let _ = Token::parse(&s);
            let _ = IdempotencyKey::parse(&s);
            let _ = Scopes::parse(&s);
            let _ = Quota::parse_rate(&s);
        }

        #[test]
        fn the_bucket_never_admits_more_than_rate_times_time_plus_burst(
            per_second in 1u32..1000, burst in 0u32..100, steps in proptest::collection::vec(0i64..50_000, 1..300)
        ) {
            let quota = Quota { per_second, burst };
            let mut bucket = Bucket::default();
            let mut now = 0;
            let mut admitted = 0i64;
            for step in steps {
                now += step;
                if matches!(bucket.take(quota, now), Admission::Allowed { .. }) {
                    admitted += 1;
                }
            }
            let interval = quota.interval_us();
            prop_assert!(admitted <= now / interval + i64::from(burst) + 1);
        }
    }
}
