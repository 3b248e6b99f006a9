//! The audit trail: every administrative or operational action, who did it, to what, and how
//! it ended. Recording never fails the action it describes; a failure to record is logged.

use crossdock_core::Timestamp;
use crossdock_store::{AuditEntry, Store};

/// The actor name for actions taken from the command line: `cli:<user>`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// One action to record.
#[derive(Debug)]
pub struct Action<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub correlation_id: Option<&'a str>,
    pub detail: Option<serde_json::Value>,
}

pub async fn record(store: &Store, now: Timestamp, a: Action<'_>) {
    let entry = AuditEntry {
        at: now,
        actor: a.actor.to_owned(),
        action: a.action.to_owned(),
        target: a.target.to_owned(),
        outcome: a.outcome.to_owned(),
        correlation_id: a.correlation_id.map(str::to_owned),
        detail: a.detail.map(|d| d.to_string()),
    };
    if let Err(e) = store.audit_append(entry).await {
        tracing::error!(error = %e, action = a.action, target = a.target, "cannot record an audit entry");
    }
}
