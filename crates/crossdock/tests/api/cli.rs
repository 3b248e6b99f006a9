//! The command line, run as a user would: the real binary against a fresh database.

use std::process::Command;

use crossdock_core::{FailureDecision, RetryPolicy, Timestamp};
use crossdock_store::testkit::TestDb;
use crossdock_store::{ClaimRequest, DeliveryFailure, NewAction};

crate::backend_tests!(
    keys_are_created_listed_and_revoked_and_each_step_is_audited,
    migrate_applies_the_schema_once,
    dlq_commands_list_replay_and_drop,
    replay_moves_a_consumer_and_names_unknown_ones,
);

/// Runs `crossdock ARGS --database DB` in an empty directory; returns (success, stdout, stderr).
fn crossdock(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(args)
        .args(["--database", &db.url])
        .current_dir(dir.path())
        .env("CROSSDOCK_LOG", "warn")
        .output()
        .expect("run crossdock");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn keys_are_created_listed_and_revoked_and_each_step_is_audited(db: TestDb) {
    let (ok, token, err) = crossdock(
        &db,
        &[
            "keys",
            "create",
            "--name",
            "shopify-eu",
            "--scopes",
            "orders:read,orders:write",
            "--channel",
            "shopify-eu",
            "--rate",
            "20/s",
            "--burst",
            "40",
        ],
    );
    assert!(ok, "{err}");
    let token = token.trim();
    assert!(token.starts_with("cdk_") && token.len() == 60, "{token}");
    assert!(err.contains("shown once"), "{err}");
    let (ok, _, err) = crossdock(
        &db,
        &["keys", "create", "--name", "shopify-eu", "--scopes", "ops"],
    );
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, err) = crossdock(
        &db,
        &["keys", "create", "--name", "x", "--scopes", "orders:delete"],
    );
    assert!(!ok && err.contains("unknown scope"), "{err}");
    let (ok, _, err) = crossdock(
        &db,
        &["keys", "create", "--name", "bad name", "--scopes", "ops"],
    );
    assert!(!ok && err.contains("key names"), "{err}");
    let (ok, list, _) = crossdock(&db, &["keys", "list"]);
    assert!(ok);
    assert!(
        list.contains("shopify-eu")
            && list.contains("orders:read,orders:write")
            && list.contains("20/s"),
        "{list}"
    );
    assert!(!list.contains(&token[17..]), "the list shows a secret");
    let (ok, out, err) = crossdock(&db, &["keys", "revoke", "shopify-eu"]);
    assert!(ok && out.contains("revoked"), "{err}");
    let (ok, _, err) = crossdock(&db, &["keys", "revoke", "shopify-eu"]);
    assert!(!ok && err.contains("no active key"), "{err}");
    let store = db.open().await;
    let audit = store
        .audit_list(crossdock_store::AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(actions, vec!["key.create", "key.revoke"]);
    assert!(audit[0].entry.actor.starts_with("cli:"));
    assert!(
        !audit[0]
            .entry
            .detail
            .as_deref()
            .unwrap_or("")
            .contains(&token[17..])
    );
    store.close().await;
}

async fn migrate_applies_the_schema_once(db: TestDb) {
    let (ok, out, err) = crossdock(&db, &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("applied migration 1 (foundation)"), "{out}");
    let (ok, out, _) = crossdock(&db, &["migrate"]);
    assert!(ok);
    // Each backend numbers its own schema steps.
    let version = if db.url.starts_with("postgres") {
        9
    } else {
        11
    };
    assert!(
        out.contains(&format!("schema is current (version {version})")),
        "{out}"
    );
}

async fn dlq_commands_list_replay_and_drop(db: TestDb) {
    let store = db.open().await;
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
    let actions = (1..=2)
        .map(|i| NewAction {
            target: "erp".into(),
            idempotency_key: format!("invoice-{i}"),
            coalesce_key: None,
            priority: 0,
            payload: format!(r#"{{"invoice":{i}}}"#),
            not_before: now,
            correlation_id: None,
            causation_id: None,
        })
        .collect();
    store.enqueue(actions, now).await.unwrap();
    let claim = ClaimRequest {
        target: "erp",
        limit: 10,
        in_flight_max: 10,
        lease_ms: 1000,
        policy: RetryPolicy::default(),
        now,
    };
    let mut ids = Vec::new();
    for a in store.claim(claim).await.unwrap() {
        ids.push(a.id);
        let failure = DeliveryFailure {
            id: a.id,
            attempt: a.attempt,
            error: "HTTP 400: unknown customer".into(),
            decision: FailureDecision::DeadLetter,
            now,
        };
        store.fail(failure).await.unwrap();
    }
    store.close().await;
    ids.sort_unstable();

    let (ok, out, err) = crossdock(&db, &["dlq", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("invoice-1") && out.contains("unknown customer"),
        "{out}"
    );
    let (ok, out, err) = crossdock(&db, &["dlq", "replay", &ids[0].to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("pending again"), "{out}");
    let (ok, _, err) = crossdock(&db, &["dlq", "replay", &ids[0].to_string()]);
    assert!(!ok && err.contains("not in the dead-letter queue"), "{err}");
    let (ok, _, err) = crossdock(&db, &["dlq", "drop", &ids[1].to_string()]);
    assert!(!ok && err.contains("--reason"), "{err}");
    let (ok, out, err) = crossdock(
        &db,
        &[
            "dlq",
            "drop",
            &ids[1].to_string(),
            "--reason",
            "customer merged",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("dropped"), "{out}");
    let (ok, out, _) = crossdock(&db, &["dlq", "list"]);
    assert!(ok && out.contains("empty"), "{out}");
}

async fn replay_moves_a_consumer_and_names_unknown_ones(db: TestDb) {
    let store = db.open().await;
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
    store
        .reset_consumer("source_activity", 42, now)
        .await
        .unwrap();
    store.close().await;
    let (ok, out, err) = crossdock(
        &db,
        &["replay", "--consumer", "source_activity", "--from", "10"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("moved from 42 to 10"), "{out}");
    let store = db.open().await;
    let query = crossdock_store::AuditQuery {
        action: Some("consumer.reset".into()),
        limit: 10,
        ..Default::default()
    };
    let audit = store.audit_list(query).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry.target, "source_activity");
    store.close().await;
    let (ok, _, err) = crossdock(&db, &["replay", "--consumer", "nobody", "--from", "0"]);
    assert!(
        !ok && err.contains("known consumers: source_activity"),
        "{err}"
    );
    let (ok, _, err) = crossdock(&db, &["replay", "--consumer", "source_activity"]);
    assert!(!ok && err.contains("--from SEQ"), "{err}");
    let (ok, out, err) = crossdock(
        &db,
        &["replay", "--consumer", "source_activity", "--rebuild"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("state cleared"), "{out}");
    let (ok, _, err) = crossdock(
        &db,
        &[
            "replay",
            "--consumer",
            "source_activity",
            "--from-time",
            "noon",
        ],
    );
    assert!(!ok && err.contains("RFC 3339"), "{err}");
}

#[test]
fn config_check_names_unknown_keys_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let run = |file: &str| {
        std::fs::write(dir.path().join("crossdock.toml"), file).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .args(["config", "check"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run("[server]\nlisen = \"127.0.0.1:1\"\n");
    assert!(!ok && err.contains("unknown field `lisen`"), "{err}");
    let (ok, out, err) = run(
        "[store]\ndatabase = \"postgres://app:hunter2@db/crossdock\"\n\
         [targets.crm]\nkind = \"webhook\"\nurl = \"https://crm.example/hook\"\n\
         headers = { authorization = \"Bearer s3cret\" }\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("crossdock.toml (valid)"), "{out}");
    assert!(!out.contains("hunter2") && !out.contains("s3cret"), "{out}");
}

fn edi(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .arg("edi")
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("CROSSDOCK_LOG", "warn")
        .output()
        .expect("run crossdock edi");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn own_sample(id: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../testdata/x12/{id}.edi"))
        .display()
        .to_string()
}

#[test]
fn edi_commands_parse_validate_and_acknowledge_files() {
    let (ok, out, err) = edi(&["validate", &own_sample("856")]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("1 sets, 27 segments; 0 errors, 0 warnings"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.edi");
    let text = std::fs::read_to_string(own_sample("850")).unwrap();
    std::fs::write(&broken, text.replace("SE*14*0001~", "SE*15*0001~")).unwrap();
    let (ok, out, err) = edi(&["validate", broken.to_str().unwrap()]);
    assert!(!ok, "validate fails on a wrong count");
    assert!(
        out.contains("set 1 (ST02 0001), segment 14 SE, element 01")
            && out.contains("expected 14, found `15`"),
        "{out}"
    );
    assert!(err.contains("1 errors"), "{err}");

    let (ok, out, err) = edi(&["parse", "--json", &own_sample("850")]);
    assert!(ok, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["set"], "850");
    assert_eq!(first["document"]["number"], "PO-48213");
    assert_eq!(first["document"]["lines"][1]["quantity"], "6");

    let ack = dir.path().join("997.edi");
    let (ok, _, err) = edi(&[
        "ack",
        &own_sample("850"),
        "--control",
        "42",
        "-o",
        ack.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let written = std::fs::read_to_string(&ack).unwrap();
    assert!(written.contains("*000000042*"), "{written}");
    assert!(
        written.contains("AK1*PO*101~") && written.contains("AK9*A*1*1*1~"),
        "{written}"
    );
    let (ok, out, _) = edi(&["validate", ack.to_str().unwrap()]);
    assert!(ok, "the 997 written is valid: {out}");

    let (ok, _, err) = edi(&["validate", "/nonexistent/file.edi"]);
    assert!(!ok);
    assert!(err.contains("cannot open /nonexistent/file.edi"), "{err}");
}
