//! API keys: minting (random secret, stored only as a SHA-256 hash), checking a presented
//! token, and the first admin key written to a file when the store has none.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use crossdock_core::Timestamp;
use crossdock_core::access::{KEY_ID_LEN, Scopes, Token, constant_time_eq};
use crossdock_store::{ApiKeyRecord, KeyCreateOutcome, NewApiKey, Store};
use sha2::{Digest, Sha256};

/// What a new key may do.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub name: String,
    pub scopes: Scopes,
    pub channel: Option<String>,
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
}

/// Key names: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        bail!("key names are 1 to 64 letters, digits, '-', '_' or '.'; got {name:?}");
    }
    Ok(())
}

pub fn secret_hash(token: &Token) -> Vec<u8> {
    Sha256::digest(token.secret().as_bytes()).to_vec()
}

/// Whether `token` is the key `record` describes, compared in constant time.
pub fn matches(record: &ApiKeyRecord, token: &Token) -> bool {
    constant_time_eq(&record.key.secret_sha256, &secret_hash(token))
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no secure randomness: {e}"))?;
    Ok(bytes)
}

/// Creates a key and returns its token, which is shown once and never stored.
pub async fn create(store: &Store, spec: &KeySpec, now: Timestamp) -> anyhow::Result<Token> {
    check_name(&spec.name)?;
    let id_bytes: [u8; KEY_ID_LEN / 2] = random_bytes()?;
    let key_id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = Token::new(&key_id, &random_bytes::<32>()?);
    let record = NewApiKey {
        id: key_id,
        name: spec.name.clone(),
        secret_sha256: secret_hash(&token),
        scopes: spec.scopes.to_string(),
        channel: spec.channel.clone(),
        rate_per_second: spec.rate_per_second,
        burst: spec.burst,
        created_at: now,
    };
    match store.key_create(record).await? {
        KeyCreateOutcome::Created => Ok(token),
        KeyCreateOutcome::NameTaken => bail!(
            "a key named {:?} exists; revoke it first or choose another name",
            spec.name
        ),
    }
}

/// When the store has no active key, creates an `admin` key and writes its token to `path`,
/// readable by its owner only. Returns whether it did.
pub async fn bootstrap_admin(store: &Store, path: &Path, now: Timestamp) -> anyhow::Result<bool> {
    let keys = store.keys_list().await?;
    if keys.iter().any(|k| k.revoked_at.is_none()) {
        return Ok(false);
    }
    let spec = KeySpec {
        name: "admin".into(),
        scopes: Scopes::parse("admin").map_err(anyhow::Error::msg)?,
        channel: None,
        rate_per_second: None,
        burst: None,
    };
    let token = match create(store, &spec, now).await {
        Ok(token) => token,
        // Another node created it at the same moment.
        Err(_)
            if store
                .keys_list()
                .await?
                .iter()
                .any(|k| k.revoked_at.is_none()) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    write_private(path, &token.expose())
        .with_context(|| format!("cannot write the admin key to {}", path.display()))?;
    Ok(true)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // A file that existed before keeps its mode; make sure it is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
