//! The store conformance suite: every test runs unchanged against SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};

use crossdock_core::activity::ActivityDelta;
use crossdock_core::{FailureDecision, NewEvent, RetryPolicy, Timestamp};
use crossdock_store::testkit::TestDb;
use crossdock_store::*;

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crossdock_store::testkit::TestDb::sqlite();
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crossdock_store::testkit::TestDb::postgres().await else {
                        return;
                    };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

store_tests!(
    appended_events_read_back_exactly_in_sequence,
    duplicate_appends_change_nothing,
    a_large_batch_keeps_every_event_once_and_in_order,
    duplicates_are_still_detected_after_reopening,
    concurrent_appenders_never_duplicate_an_event_or_a_sequence_number,
    a_reader_following_the_log_never_skips_a_late_commit,
    migrations_are_idempotent_and_readiness_checks_the_schema,
    the_inbox_keeps_raw_bytes_and_their_fate,
    a_projection_batch_applies_once_even_when_runners_race,
    a_listing_value_follows_its_sku_when_remapped,
    due_listings_keep_their_place_and_stop_being_due_once_queued,
    a_catalog_write_records_its_change_with_it_or_not_at_all,
    a_rebuilt_projection_equals_the_live_one,
    positions_can_be_found_by_time,
    enqueue_is_idempotent_and_coalescing_keeps_the_newest,
    claims_respect_priority_and_the_in_flight_limit,
    a_coalesced_action_waits_while_its_predecessor_is_in_flight,
    failures_back_off_then_dead_letter_with_their_history,
    dead_letters_replay_once_or_drop_with_a_reason,
    a_newer_delivery_resolves_older_dead_letters,
    an_expired_lease_counts_as_a_failed_attempt,
    finished_actions_are_purged,
    keys_keep_hashes_and_names_are_unique_among_active_keys,
    an_idempotent_append_keeps_its_answer_with_its_effect,
    idempotency_records_are_kept_for_their_window_only,
    the_audit_log_filters_by_actor_action_and_time,
    edi_control_numbers_are_never_handed_out_twice,
    a_repeated_interchange_is_recognized_by_sender_and_control_number,
    received_997s_settle_the_groups_we_sent,
    an_order_is_taken_once_however_often_and_concurrently_it_arrives,
    order_saves_never_overwrite_a_newer_step,
    returns_are_kept_apart_from_orders_and_taken_once,
    posting_runs_put_each_line_in_exactly_one_batch,
    racing_posting_runs_never_post_a_line_twice,
);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_800_000_000_000_000 + seconds * 1_000_000)
}

fn event(source: &str, id: &str) -> NewEvent {
    NewEvent::new(
        id,
        source,
        "inventory.adjusted",
        Some(&serde_json::json!({"sku": "A-1", "delta": -1, "id": id})),
    )
    .unwrap()
}

fn events(source: &str, range: std::ops::Range<usize>) -> Vec<NewEvent> {
    range.map(|i| event(source, &format!("e-{i}"))).collect()
}

async fn appended_events_read_back_exactly_in_sequence(db: &TestDb) {
    let store = db.open().await;
    let batch = vec![
        event("/wms", "1")
            .with_subject("A-1")
            .unwrap()
            .with_time(at(-5)),
        event("/wms", "2").with_causation("1"),
    ];
    let outcome = store.append(batch.clone(), at(0)).await.unwrap();
    assert_eq!(
        outcome.results,
        vec![AppendResult::Appended(1), AppendResult::Appended(2)]
    );
    assert_eq!(outcome.seq_range(), Some((1, 2)));
    let read = store.read_events(0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].event, batch[0]);
    assert_eq!(read[1].event, batch[1]);
    assert_eq!(read[0].recorded_at, at(0));
    assert_eq!(store.read_events(1, 10).await.unwrap()[0].seq, 2);
    assert_eq!(store.read_events(0, 1).await.unwrap().len(), 1);
    assert_eq!(store.head_seq().await.unwrap(), 2);
}

async fn duplicate_appends_change_nothing(db: &TestDb) {
    let store = db.open().await;
    store.append(events("/a", 0..3), at(0)).await.unwrap();
    // The same ids again, one new id, and a repeat inside the batch itself.
    let mut again = events("/a", 1..4);
    again.push(event("/a", "e-3"));
    let outcome = store.append(again, at(1)).await.unwrap();
    assert!(
        matches!(
            outcome.results[..],
            [AppendResult::Duplicate, AppendResult::Duplicate, AppendResult::Appended(seq), AppendResult::Duplicate]
                if seq > 3
        ),
        "{:?}",
        outcome.results
    );
    // The same id from another source is another event.
    let other = store.append(events("/b", 0..1), at(2)).await.unwrap();
    assert_eq!(other.appended(), 1);
    let all = store.read_events(0, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[3].recorded_at, at(1));
}

async fn a_large_batch_keeps_every_event_once_and_in_order(db: &TestDb) {
    let store = db.open().await;
    let padding = "p".repeat(1000);
    let big = |i: usize| {
        let data = serde_json::json!({"n": i, "padding": padding});
        NewEvent::new(
            &format!("big-{i}"),
            "/bulk",
            "inventory.counted",
            Some(&data),
        )
        .unwrap()
    };
    store
        .append((0..500).map(big).collect(), at(0))
        .await
        .unwrap();
    // 2,000 events of about 1 KiB, a quarter of them already in the log.
    let outcome = store
        .append((0..2000).map(big).collect(), at(1))
        .await
        .unwrap();
    assert_eq!((outcome.appended(), outcome.duplicates()), (1500, 500));
    let all = store.read_events(0, 5000).await.unwrap();
    assert_eq!(all.len(), 2000);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.event.id(), format!("big-{i}"));
    }
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
}

async fn duplicates_are_still_detected_after_reopening(db: &TestDb) {
    {
        let store = db.open().await;
        store.append(events("/a", 0..10), at(0)).await.unwrap();
        store.close().await;
    }
    let store = db.open().await;
    let outcome = store.append(events("/a", 5..15), at(1)).await.unwrap();
    assert_eq!(outcome.duplicates(), 5);
    let (first, last) = outcome.seq_range().unwrap();
    assert!(first > 10 && last - first == 4, "{first}..{last}");
    assert_eq!(store.read_events(10, 100).await.unwrap().len(), 5);
}

async fn concurrent_appenders_never_duplicate_an_event_or_a_sequence_number(db: &TestDb) {
    let store = db.open().await;
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut appended = 0;
            for round in 0..10 {
                // Every writer sends the same shared events plus its own.
                let mut batch = events("/shared", round * 20..round * 20 + 20);
                batch.extend(events(&format!("/w{writer}"), round * 5..round * 5 + 5));
                appended += store.append(batch, at(0)).await.unwrap().appended();
            }
            appended
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 200 + 16 * 50);
    let all = store.read_events(0, 10_000).await.unwrap();
    assert_eq!(all.len(), total);
    // Strictly increasing; SQLite numbers without gaps, PostgreSQL may skip the numbers it
    // planned for events that turned out to be duplicates.
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let keys: BTreeSet<(String, String)> = all
        .iter()
        .map(|e| (e.event.source().to_owned(), e.event.id().to_owned()))
        .collect();
    assert_eq!(keys.len(), total);
}

async fn a_reader_following_the_log_never_skips_a_late_commit(db: &TestDb) {
    let store = db.open().await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..25 {
                    let batch = events(&format!("/w{w}"), round * 4..round * 4 + 4);
                    store.append(batch, at(0)).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = 0;
            while seen.len() < 800 {
                for e in store.read_events(last, 50).await.unwrap() {
                    last = e.seq;
                    seen.push(e.seq);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen, (1..=800).collect::<Vec<i64>>());
}

async fn migrations_are_idempotent_and_readiness_checks_the_schema(db: &TestDb) {
    let bare = Store::connect(&db.options()).await.unwrap();
    assert!(matches!(
        bare.check_ready().await,
        Err(StoreError::NotMigrated { found: 0, .. })
    ));
    let first = bare.migrate().await.unwrap();
    assert!(!first.applied.is_empty());
    let second = bare.migrate().await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(first.version, second.version);
    bare.check_ready().await.unwrap();
}

async fn the_inbox_keeps_raw_bytes_and_their_fate(db: &TestDb) {
    let store = db.open().await;
    let body = vec![0xff, 0x00, b'{', 0xfe];
    let id = store
        .inbox_put(InboxMessage {
            source: "api".into(),
            protocol: "http+cloudevents".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.clone(),
            received_at: at(0),
            status: InboxStatus::Received,
            error: None,
            correlation_id: Some("c-1".into()),
        })
        .await
        .unwrap();
    assert!(
        store
            .inbox_mark(id, InboxStatus::Rejected, Some("not UTF-8".into()), at(1))
            .await
            .unwrap()
    );
    let record = store.inbox_get(id).await.unwrap().unwrap();
    assert_eq!(record.message.body, body);
    assert_eq!(record.message.status, InboxStatus::Rejected);
    assert_eq!(record.message.error.as_deref(), Some("not UTF-8"));
    assert_eq!(record.message.headers[0].1, "application/json");
    assert_eq!(record.processed_at, Some(at(1)));
    let rejected = store
        .inbox_list(InboxQuery {
            status: Some(InboxStatus::Rejected),
            after_id: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1);
    let processed = store
        .inbox_list(InboxQuery {
            status: Some(InboxStatus::Processed),
            after_id: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert!(processed.is_empty());
    assert!(store.inbox_get(id + 100).await.unwrap().is_none());
}

fn activity_of(events: &[crossdock_core::StoredEvent]) -> ActivityDelta {
    let mut delta = ActivityDelta::default();
    for e in events {
        delta.apply(e);
    }
    delta
}

async fn a_projection_batch_applies_once_even_when_runners_race(db: &TestDb) {
    let store = db.open().await;
    store.append(events("/a", 0..10), at(0)).await.unwrap();
    let name = Projection::SourceActivity.consumer_name();
    assert_eq!(store.consumer_position(name, at(0)).await.unwrap(), 0);
    let batch = store.read_events(0, 10).await.unwrap();
    let delta = activity_of(&batch);
    store
        .commit_projection(
            name,
            0,
            10,
            ProjectionWrites::SourceActivity(delta.clone()),
            at(1),
        )
        .await
        .unwrap();
    // A second runner that read the same batch loses and changes nothing.
    let late = store
        .commit_projection(name, 0, 10, ProjectionWrites::SourceActivity(delta), at(2))
        .await;
    assert_eq!(
        late,
        Err(StoreError::PositionMoved {
            name: name.into(),
            expected: 0,
            actual: 10
        })
    );
    let consumers = store.consumers().await.unwrap();
    assert_eq!(consumers.len(), 1);
    assert_eq!(
        (consumers[0].position, consumers[0].updated_at),
        (10, at(1))
    );
    let activity = store.source_activity().await.unwrap();
    assert_eq!(activity.len(), 1);
    assert_eq!((activity[0].1.first_seq, activity[0].1.last_seq), (1, 10));
}

async fn a_rebuilt_projection_equals_the_live_one(db: &TestDb) {
    let store = db.open().await;
    let name = Projection::SourceActivity.consumer_name();
    // Live: apply in small batches while events keep arriving from several sources.
    for round in 0..6 {
        for source in ["/wms", "/erp", "/shopify"] {
            store
                .append(events(source, round * 7..round * 7 + 7), at(round as i64))
                .await
                .unwrap();
        }
        let from = store.consumer_position(name, at(0)).await.unwrap();
        let batch = store.read_events(from, 5).await.unwrap();
        let to = batch.last().map_or(from, |e| e.seq);
        store
            .commit_projection(
                name,
                from,
                to,
                ProjectionWrites::SourceActivity(activity_of(&batch)),
                at(0),
            )
            .await
            .unwrap();
    }
    let drain = |store: Store| async move {
        loop {
            let from = store.consumer_position(name, at(0)).await.unwrap();
            let batch = store.read_events(from, 13).await.unwrap();
            let Some(last) = batch.last() else { break };
            store
                .commit_projection(
                    name,
                    from,
                    last.seq,
                    ProjectionWrites::SourceActivity(activity_of(&batch)),
                    at(0),
                )
                .await
                .unwrap();
        }
    };
    drain(store.clone()).await;
    let live = store.source_activity().await.unwrap();
    assert_eq!(live.len(), 3);

    // Re-applying from the middle changes nothing: the projection is idempotent.
    store.reset_consumer(name, 40, at(9)).await.unwrap();
    drain(store.clone()).await;
    assert_eq!(store.source_activity().await.unwrap(), live);

    // A full rebuild from an empty state gives the same state.
    store
        .clear_projection(Projection::SourceActivity, at(10))
        .await
        .unwrap();
    assert!(store.source_activity().await.unwrap().is_empty());
    drain(store.clone()).await;
    assert_eq!(store.source_activity().await.unwrap(), live);
}

async fn positions_can_be_found_by_time(db: &TestDb) {
    let store = db.open().await;
    store.append(events("/a", 0..3), at(0)).await.unwrap();
    store.append(events("/a", 3..5), at(10)).await.unwrap();
    assert_eq!(store.seq_before(at(0)).await.unwrap(), 0);
    assert_eq!(store.seq_before(at(5)).await.unwrap(), 3);
    assert_eq!(store.seq_before(at(11)).await.unwrap(), 5);
}

fn action(key: &str, coalesce: Option<&str>, priority: i32) -> NewAction {
    NewAction {
        target: "webhook:crm".into(),
        idempotency_key: key.into(),
        coalesce_key: coalesce.map(Into::into),
        priority,
        payload: format!(r#"{{"key":"{key}"}}"#),
        not_before: at(0),
        correlation_id: Some("corr".into()),
        causation_id: None,
    }
}

fn claim_request(limit: usize, in_flight_max: usize, now: Timestamp) -> ClaimRequest<'static> {
    ClaimRequest {
        target: "webhook:crm",
        limit,
        in_flight_max,
        lease_ms: 30_000,
        policy: POLICY,
        now,
    }
}

/// Records a failed delivery of `claimed`; `true` if the store accepted it.
async fn fail(
    store: &Store,
    claimed: &ClaimedAction,
    error: impl Into<String>,
    decision: FailureDecision,
    now: Timestamp,
) -> bool {
    let failure = DeliveryFailure {
        id: claimed.id,
        attempt: claimed.attempt,
        error: error.into(),
        decision,
        now,
    };
    store.fail(failure).await.unwrap()
}

const POLICY: RetryPolicy = RetryPolicy {
    attempts_max: 3,
    backoff_base_ms: 1000,
    backoff_max_ms: 10_000,
};

async fn enqueue_is_idempotent_and_coalescing_keeps_the_newest(db: &TestDb) {
    let store = db.open().await;
    let first = store
        .enqueue(
            vec![action("k1", Some("sku:A"), 0), action("k2", None, 0)],
            at(0),
        )
        .await
        .unwrap();
    let EnqueueResult::Queued {
        id: k1,
        replaced: None,
    } = first[0]
    else {
        panic!("{first:?}");
    };
    let again = store
        .enqueue(vec![action("k1", Some("sku:A"), 0)], at(1))
        .await
        .unwrap();
    assert_eq!(again, vec![EnqueueResult::Duplicate]);
    let newer = store
        .enqueue(vec![action("k3", Some("sku:A"), 0)], at(2))
        .await
        .unwrap();
    let EnqueueResult::Queued { id: k3, replaced } = newer[0] else {
        panic!("{newer:?}");
    };
    assert_eq!(replaced, Some(k1));
    let old = store.action(k1).await.unwrap().unwrap();
    assert_eq!(
        (old.status, old.superseded_by),
        (ActionStatus::Superseded, Some(k3))
    );
    let claimed = store.claim(claim_request(10, 10, at(3))).await.unwrap();
    let keys: BTreeSet<String> = claimed.iter().map(|a| a.idempotency_key.clone()).collect();
    assert_eq!(keys, BTreeSet::from(["k2".to_owned(), "k3".to_owned()]));
}

async fn claims_respect_priority_and_the_in_flight_limit(db: &TestDb) {
    let store = db.open().await;
    let mut batch: Vec<NewAction> = (0..5)
        .map(|i| action(&format!("low{i}"), None, 0))
        .collect();
    batch.push(action("high", None, 10));
    let mut later = action("later", None, 100);
    later.not_before = at(60);
    batch.push(later);
    store.enqueue(batch, at(0)).await.unwrap();
    let first = store.claim(claim_request(10, 3, at(1))).await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(first[0].idempotency_key, "high");
    assert!(
        first
            .iter()
            .all(|a| a.attempt == 1 && a.correlation_id.as_deref() == Some("corr"))
    );
    assert!(
        store
            .claim(claim_request(10, 3, at(1)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .ack(first[0].id, first[0].attempt, at(2))
            .await
            .unwrap()
    );
    // Acknowledging twice, or with a stale attempt number, is refused.
    assert!(
        !store
            .ack(first[0].id, first[0].attempt, at(2))
            .await
            .unwrap()
    );
    let next = store.claim(claim_request(10, 3, at(2))).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].idempotency_key, "later");
    // Two low-priority actions are still due; the earliest due time is the past one.
    assert_eq!(store.next_due("webhook:crm").await.unwrap(), Some(at(0)));
    let counts: BTreeMap<String, i64> = store
        .outbox_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.status.as_str().to_owned(), c.count))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([("in_flight".into(), 3), ("pending".into(), 3)])
    );
}

async fn a_coalesced_action_waits_while_its_predecessor_is_in_flight(db: &TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![action("v1", Some("sku:A"), 0)], at(0))
        .await
        .unwrap();
    let first = store.claim(claim_request(10, 10, at(1))).await.unwrap();
    assert_eq!(first.len(), 1);
    store
        .enqueue(vec![action("v2", Some("sku:A"), 0)], at(2))
        .await
        .unwrap();
    // v2 must not overtake v1, or the target could end on the older value.
    assert!(
        store
            .claim(claim_request(10, 10, at(3)))
            .await
            .unwrap()
            .is_empty()
    );
    // v1 fails and would retry, but v2 is newer: v1 is superseded instead.
    assert!(
        fail(
            &store,
            &first[0],
            "503",
            FailureDecision::RetryAt(at(4)),
            at(4)
        )
        .await
    );
    assert_eq!(
        store.action(first[0].id).await.unwrap().unwrap().status,
        ActionStatus::Superseded
    );
    let second = store.claim(claim_request(10, 10, at(5))).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].idempotency_key, "v2");
}

async fn failures_back_off_then_dead_letter_with_their_history(db: &TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![action("k", None, 0)], at(0))
        .await
        .unwrap();
    let mut now = at(0);
    let mut id = 0;
    for attempt in 1..=3u32 {
        let claimed = store.claim(claim_request(1, 1, now)).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        id = claimed[0].id;
        let decision = POLICY.after_failure(attempt, false, now, 0.0);
        let failure = DeliveryFailure {
            id,
            attempt: claimed[0].attempt,
            error: format!("HTTP 503 on attempt {attempt}"),
            decision,
            now,
        };
        store.fail(failure).await.unwrap();
        if let FailureDecision::RetryAt(next) = decision {
            // Not due before its backoff has passed.
            assert!(
                store
                    .claim(claim_request(1, 1, next.plus_millis(-1)))
                    .await
                    .unwrap()
                    .is_empty()
            );
            now = next;
        }
    }
    let dead = store
        .dead_letters(DeadLetterQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 503 on attempt 3"));
    let history = store.attempts(id).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(
        history
            .iter()
            .all(|a| a.outcome == "failed" && a.finished_at.is_some())
    );
    assert_eq!(history[0].error.as_deref(), Some("HTTP 503 on attempt 1"));
    let other_target = store
        .dead_letters(DeadLetterQuery {
            target: Some("erp".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other_target.is_empty());
}

async fn dead_letters_replay_once_or_drop_with_a_reason(db: &TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![action("a", None, 0), action("b", None, 0)], at(0))
        .await
        .unwrap();
    for claimed in store.claim(claim_request(10, 10, at(0))).await.unwrap() {
        fail(
            &store,
            &claimed,
            "400 bad request",
            FailureDecision::DeadLetter,
            at(1),
        )
        .await;
    }
    let dead = store
        .dead_letters(DeadLetterQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let (a, b) = (dead[0].id, dead[1].id);
    assert_eq!(
        store.replay_dead_letter(a, at(2)).await.unwrap(),
        ReplayOutcome::Replayed
    );
    assert_eq!(
        store.replay_dead_letter(a, at(2)).await.unwrap(),
        ReplayOutcome::NotDead
    );
    assert_eq!(
        store.replay_dead_letter(999, at(2)).await.unwrap(),
        ReplayOutcome::NotFound
    );
    let replayed = store.claim(claim_request(10, 10, at(3))).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].idempotency_key, "a");
    assert_eq!(
        replayed[0].attempts_in_budget, 1,
        "a replay gets a fresh attempt budget"
    );
    assert!(
        store
            .ack(replayed[0].id, replayed[0].attempt, at(4))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .drop_dead_letter(b, "customer deleted", at(5))
            .await
            .unwrap(),
        DropOutcome::Dropped
    );
    assert_eq!(
        store.drop_dead_letter(b, "again", at(5)).await.unwrap(),
        DropOutcome::NotDead
    );
    let dropped = store.action(b).await.unwrap().unwrap();
    assert_eq!(
        (dropped.status, dropped.drop_reason.as_deref()),
        (ActionStatus::Dropped, Some("customer deleted"))
    );
    assert!(
        store
            .dead_letters(DeadLetterQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_newer_delivery_resolves_older_dead_letters(db: &TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![action("v1", Some("sku:A"), 0)], at(0))
        .await
        .unwrap();
    let c = store
        .claim(claim_request(1, 1, at(0)))
        .await
        .unwrap()
        .remove(0);
    fail(&store, &c, "timeout", FailureDecision::DeadLetter, at(1)).await;
    store
        .enqueue(vec![action("v2", Some("sku:A"), 0)], at(2))
        .await
        .unwrap();
    // Replaying v1 now would send a stale value after v2: it is superseded instead.
    assert_eq!(
        store.replay_dead_letter(c.id, at(3)).await.unwrap(),
        ReplayOutcome::Superseded { by: c.id + 1 }
    );

    store
        .enqueue(vec![action("w1", Some("sku:B"), 0)], at(4))
        .await
        .unwrap();
    let claimed = store.claim(claim_request(10, 10, at(4))).await.unwrap();
    let (w1, v2): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|a| a.idempotency_key == "w1");
    let (w1, v2) = (w1[0].clone(), v2[0].clone());
    assert!(store.ack(v2.id, v2.attempt, at(4)).await.unwrap());
    fail(&store, &w1, "timeout", FailureDecision::DeadLetter, at(5)).await;
    store
        .enqueue(vec![action("w2", Some("sku:B"), 0)], at(6))
        .await
        .unwrap();
    let claimed = store.claim(claim_request(10, 10, at(7))).await.unwrap();
    for a in claimed {
        store.ack(a.id, a.attempt, at(8)).await.unwrap();
    }
    assert_eq!(
        store.action(w1.id).await.unwrap().unwrap().status,
        ActionStatus::Superseded
    );
    assert!(
        store
            .dead_letters(DeadLetterQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_expired_lease_counts_as_a_failed_attempt(db: &TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![action("k", None, 0)], at(0))
        .await
        .unwrap();
    let first = store
        .claim(claim_request(1, 1, at(0)))
        .await
        .unwrap()
        .remove(0);
    // The worker vanished; 30 s later the lease is gone and another worker takes over.
    let second = store
        .claim(claim_request(1, 1, at(31)))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((second.id, second.attempt), (first.id, 2));
    // The first worker wakes up late: its acknowledgement is refused.
    assert!(!store.ack(first.id, first.attempt, at(32)).await.unwrap());
    assert!(store.ack(second.id, second.attempt, at(32)).await.unwrap());
    let history = store.attempts(first.id).await.unwrap();
    let outcomes: Vec<&str> = history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["lease_expired", "delivered"]);
}

async fn finished_actions_are_purged(db: &TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![action("a", None, 0), action("b", None, 0)], at(0))
        .await
        .unwrap();
    let claimed = store
        .claim(claim_request(1, 1, at(0)))
        .await
        .unwrap()
        .remove(0);
    store.ack(claimed.id, claimed.attempt, at(1)).await.unwrap();
    assert_eq!(store.purge_finished(at(1), 100).await.unwrap(), 0);
    assert_eq!(store.purge_finished(at(2), 100).await.unwrap(), 1);
    assert!(store.action(claimed.id).await.unwrap().is_none());
    assert!(store.attempts(claimed.id).await.unwrap().is_empty());
    assert_eq!(store.outbox_counts().await.unwrap().len(), 1);
}

fn new_key(id: &str, name: &str) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        name: name.into(),
        secret_sha256: vec![7; 32],
        scopes: "orders:read,orders:write".into(),
        channel: Some("shopify-eu".into()),
        rate_per_second: Some(5),
        burst: None,
        created_at: at(0),
    }
}

async fn keys_keep_hashes_and_names_are_unique_among_active_keys(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(
        store
            .key_create(new_key("aaaaaaaaaaaa", "shop"))
            .await
            .unwrap(),
        KeyCreateOutcome::Created
    );
    assert_eq!(
        store
            .key_create(new_key("bbbbbbbbbbbb", "shop"))
            .await
            .unwrap(),
        KeyCreateOutcome::NameTaken
    );
    let got = store.key_get("aaaaaaaaaaaa").await.unwrap().unwrap();
    assert_eq!(got.key, new_key("aaaaaaaaaaaa", "shop"));
    assert_eq!(got.revoked_at, None);
    assert_eq!(
        store.key_revoke("shop", at(5)).await.unwrap().as_deref(),
        Some("aaaaaaaaaaaa")
    );
    assert_eq!(store.key_revoke("shop", at(6)).await.unwrap(), None);
    // The name is free again once its key is revoked.
    assert_eq!(
        store
            .key_create(new_key("bbbbbbbbbbbb", "shop"))
            .await
            .unwrap(),
        KeyCreateOutcome::Created
    );
    let all = store.keys_list().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].revoked_at, Some(at(5)));
    assert!(store.key_get("cccccccccccc").await.unwrap().is_none());
}

fn lookup<'a>(
    api_key: &'a str,
    key: &'a str,
    fingerprint: &'a [u8],
    now: Timestamp,
) -> IdempotencyLookup<'a> {
    IdempotencyLookup {
        api_key,
        key,
        fingerprint,
        expired_before: now.plus_millis(-24 * 3600 * 1000),
    }
}

fn idempotent(api_key: &str, key: &str, fingerprint: &[u8], now: Timestamp) -> IdempotentAppend {
    IdempotentAppend {
        api_key: api_key.into(),
        key: key.into(),
        fingerprint: fingerprint.to_vec(),
        expired_before: now.plus_millis(-24 * 3600 * 1000),
        render: Box::new(|outcome: &AppendOutcome| StoredResponse {
            status: 202,
            content_type: Some("application/json".into()),
            body: format!("accepted {}", outcome.appended()).into_bytes(),
        }),
    }
}

async fn an_idempotent_append_keeps_its_answer_with_its_effect(db: &TestDb) {
    let store = db.open().await;
    let first = store
        .append_idempotent(
            events("/erp", 0..3),
            at(0),
            idempotent("key-a", "k1", b"body", at(0)),
        )
        .await
        .unwrap();
    assert!(
        matches!(&first, IdempotentOutcome::Appended(o) if o.appended() == 3),
        "{first:?}"
    );
    let kept = StoredResponse {
        status: 202,
        content_type: Some("application/json".into()),
        body: b"accepted 3".to_vec(),
    };
    assert_eq!(
        store
            .idempotency_lookup(lookup("key-a", "k1", b"body", at(1)))
            .await
            .unwrap(),
        Recorded::Replay(kept.clone())
    );
    // The same request again is answered from the record and appends nothing, even new events.
    let again = store
        .append_idempotent(
            events("/erp", 5..6),
            at(2),
            idempotent("key-a", "k1", b"body", at(2)),
        )
        .await
        .unwrap();
    assert_eq!(again, IdempotentOutcome::Recorded(Recorded::Replay(kept)));
    let other_body = store
        .append_idempotent(
            events("/erp", 5..6),
            at(2),
            idempotent("key-a", "k1", b"other", at(2)),
        )
        .await
        .unwrap();
    assert_eq!(other_body, IdempotentOutcome::Recorded(Recorded::Mismatch));
    assert_eq!(store.head_seq().await.unwrap(), 3);
    // Idempotency keys belong to one API key.
    let other_key = store
        .append_idempotent(
            events("/erp", 5..6),
            at(3),
            idempotent("key-b", "k1", b"other", at(3)),
        )
        .await
        .unwrap();
    assert!(matches!(other_key, IdempotentOutcome::Appended(_)));
    assert_eq!(
        store
            .idempotency_lookup(lookup("key-a", "k2", b"body", at(3)))
            .await
            .unwrap(),
        Recorded::Nothing
    );
}

async fn idempotency_records_are_kept_for_their_window_only(db: &TestDb) {
    let store = db.open().await;
    let response = StoredResponse {
        status: 409,
        content_type: None,
        body: b"conflict".to_vec(),
    };
    store
        .idempotency_keep(lookup("key-a", "k", b"a", at(0)), response.clone(), at(0))
        .await
        .unwrap();
    let hours = |h: i64| at(h * 3600);
    assert_eq!(
        store
            .idempotency_lookup(lookup("key-a", "k", b"a", hours(23)))
            .await
            .unwrap(),
        Recorded::Replay(response)
    );
    assert_eq!(
        store
            .idempotency_lookup(lookup("key-a", "k", b"b", hours(23)))
            .await
            .unwrap(),
        Recorded::Mismatch
    );
    // After the window the key is new again, whatever the body, and a new answer replaces the old.
    assert_eq!(
        store
            .idempotency_lookup(lookup("key-a", "k", b"b", hours(25)))
            .await
            .unwrap(),
        Recorded::Nothing
    );
    let replaced = store
        .append_idempotent(
            events("/erp", 0..1),
            hours(25),
            idempotent("key-a", "k", b"b", hours(25)),
        )
        .await
        .unwrap();
    assert!(matches!(replaced, IdempotentOutcome::Appended(_)));
    assert!(matches!(
        store
            .idempotency_lookup(lookup("key-a", "k", b"b", hours(26)))
            .await
            .unwrap(),
        Recorded::Replay(_)
    ));
    assert_eq!(store.purge_idempotency(hours(24), 100).await.unwrap(), 0);
    assert_eq!(store.purge_idempotency(hours(50), 100).await.unwrap(), 1);
}

async fn the_audit_log_filters_by_actor_action_and_time(db: &TestDb) {
    let store = db.open().await;
    for (i, (actor, action)) in [
        ("admin", "key.create"),
        ("ops-bot", "dead_letter.replay"),
        ("admin", "dead_letter.drop"),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .audit_append(AuditEntry {
                at: at(i as i64 * 10),
                actor: actor.into(),
                action: action.into(),
                target: format!("t{i}"),
                outcome: "ok".into(),
                correlation_id: Some(format!("c{i}")),
                detail: None,
            })
            .await
            .unwrap();
    }
    let by_admin = store
        .audit_list(AuditQuery {
            actor: Some("admin".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_admin
            .iter()
            .map(|r| r.entry.target.as_str())
            .collect::<Vec<_>>(),
        vec!["t0", "t2"]
    );
    let drops = store
        .audit_list(AuditQuery {
            action: Some("dead_letter.drop".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(drops.len(), 1);
    let window = store
        .audit_list(AuditQuery {
            since: Some(at(5)),
            until: Some(at(20)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].entry.correlation_id.as_deref(), Some("c1"));
    let page = store
        .audit_list(AuditQuery {
            after_id: by_admin[0].id,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
}

async fn edi_control_numbers_are_never_handed_out_twice(db: &TestDb) {
    let store = db.open().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..25 {
                let first = store
                    .edi_controls("acme", EdiControl::Interchange, 2)
                    .await
                    .unwrap();
                got.extend([first, first + 1]);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 400, "every number once");
    assert_eq!((distinct.first(), distinct.last()), (Some(&1), Some(&400)));
    // Another series and another partner start at 1.
    assert_eq!(
        store
            .edi_controls("acme", EdiControl::Group, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .edi_controls("globex", EdiControl::Interchange, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .edi_controls("acme", EdiControl::Interchange, 1)
            .await
            .unwrap(),
        401
    );
}

async fn a_repeated_interchange_is_recognized_by_sender_and_control_number(db: &TestDb) {
    let store = db.open().await;
    let t = Timestamp::from_unix_micros(1_000);
    assert_eq!(
        store
            .edi_inbound("ZZ:ACME", "000000101", "acme", Some(7), t)
            .await
            .unwrap(),
        EdiInbound::New
    );
    assert_eq!(
        store
            .edi_inbound("ZZ:ACME", "000000101", "acme", Some(9), t.plus_millis(5))
            .await
            .unwrap(),
        EdiInbound::Duplicate {
            partner: "acme".into(),
            inbox_id: Some(7),
            received_at: t
        }
    );
    // The same control number from another sender is another interchange.
    assert_eq!(
        store
            .edi_inbound("ZZ:GLOBEX", "000000101", "globex", None, t)
            .await
            .unwrap(),
        EdiInbound::New
    );
}

async fn received_997s_settle_the_groups_we_sent(db: &TestDb) {
    let store = db.open().await;
    let t = Timestamp::from_unix_micros(1_000_000);
    let sent = |control: &str, at: Timestamp| EdiGroupSent {
        partner: "acme".into(),
        group_control: control.into(),
        functional_id: "IN".into(),
        interchange_control: "000000005".into(),
        sets: 2,
        sent_at: at,
    };
    store
        .edi_groups_sent(vec![sent("5", t), sent("6", t.plus_millis(1))])
        .await
        .unwrap();
    let detail = serde_json::json!({"sets": [{"control": "0001", "status": "A"}]});
    assert_eq!(
        store
            .edi_ack_received("acme", "5", "accepted", detail.clone(), t.plus_millis(10))
            .await
            .unwrap(),
        EdiAckOutcome::Recorded {
            previous: "sent".into()
        }
    );
    assert_eq!(
        store
            .edi_ack_received("acme", "77", "accepted", detail.clone(), t)
            .await
            .unwrap(),
        EdiAckOutcome::UnknownGroup
    );
    assert_eq!(
        store
            .edi_ack_received("globex", "6", "rejected", detail.clone(), t)
            .await
            .unwrap(),
        EdiAckOutcome::UnknownGroup
    );
    let all = store
        .edi_groups(EdiGroupQuery {
            limit: 10,
            ..EdiGroupQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].status, "accepted");
    assert_eq!(all[0].ack_detail.as_ref(), Some(&detail));
    assert_eq!(all[0].ack_at, Some(t.plus_millis(10)));
    let waiting = store
        .edi_groups(EdiGroupQuery {
            partner: Some("acme".into()),
            status: Some("sent".into()),
            sent_before: Some(t.plus_millis(5)),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].group.group_control, "6");
    assert_eq!(waiting[0].group, sent("6", t.plus_millis(1)));
}

fn new_order(id: &str, external_id: &str, hash: &str, delivery: Option<&str>) -> NewOrder {
    NewOrder {
        id: id.into(),
        channel: "shop".into(),
        external_id: external_id.into(),
        content_hash: hash.into(),
        delivery_id: delivery.map(str::to_owned),
        status: "received".into(),
        until: Some(Timestamp::from_unix_micros(9_000)),
        state: "{}".into(),
        now: Timestamp::from_unix_micros(1_000),
    }
}

async fn an_order_is_taken_once_however_often_and_concurrently_it_arrives(db: &TestDb) {
    let store = db.open().await;
    let mut tasks = Vec::new();
    for task in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut created = 0;
            for i in 0..50 {
                let delivery = format!("wh-{task}-{i}");
                let outcome = store
                    .order_create(new_order(
                        &format!("o-{task}-{i}"),
                        "1001",
                        "h",
                        Some(&delivery),
                    ))
                    .await
                    .unwrap();
                match outcome {
                    OrderCreate::Created => created += 1,
                    OrderCreate::Duplicate { same_content, .. } => assert!(same_content),
                }
            }
            created
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap();
    }
    assert_eq!(created, 1, "1,000 deliveries, one order");
    let all = store
        .orders(OrderQuery {
            limit: 10,
            ..OrderQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let id = all[0].id.clone();
    // A delivery id seen before names its order even under another external id.
    assert_eq!(
        store
            .order_create(new_order("o-x", "other", "h", Some("wh-3-7")))
            .await
            .unwrap(),
        OrderCreate::Duplicate {
            id: id.clone(),
            same_content: true
        }
    );
    // The same external id with other content is a duplicate that says so.
    assert_eq!(
        store
            .order_create(new_order("o-y", "1001", "changed", None))
            .await
            .unwrap(),
        OrderCreate::Duplicate {
            id,
            same_content: false
        }
    );
    assert_eq!(
        store
            .order_create(new_order("o-z", "1002", "h", None))
            .await
            .unwrap(),
        OrderCreate::Created
    );
}

fn erp_action(key: &str) -> NewAction {
    NewAction {
        target: "erp".into(),
        idempotency_key: key.into(),
        coalesce_key: None,
        priority: 0,
        payload: "{}".into(),
        not_before: Timestamp::from_unix_micros(0),
        correlation_id: None,
        causation_id: None,
    }
}

async fn order_saves_never_overwrite_a_newer_step(db: &TestDb) {
    let store = db.open().await;
    store
        .order_create(new_order("o-1", "1", "h", None))
        .await
        .unwrap();
    let row = store.order_get("o-1").await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.version), ("received", 0));
    let t = Timestamp::from_unix_micros(2_000);
    assert!(
        store
            .order_save(
                "o-1",
                0,
                "submitted",
                None,
                r#"{"a":1}"#,
                vec![erp_action("erp-order/o-1")],
                t
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .order_save(
                "o-1",
                0,
                "cancelled",
                None,
                "{}",
                vec![erp_action("erp-cancel/o-1")],
                t
            )
            .await
            .unwrap(),
        "a stale step loses"
    );
    let row = store.order_get("o-1").await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.version, row.state.as_str()),
        ("submitted", 1, r#"{"a":1}"#)
    );
    // The saved step's action is queued with it; the stale step's is not.
    assert!(
        store
            .action_by_key("erp", "erp-order/o-1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .action_by_key("erp", "erp-cancel/o-1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(row.until, None);
    assert_eq!(row.updated_at, t);
    let listed = store
        .orders(OrderQuery {
            status: Some("submitted".into()),
            channel: Some("shop".into()),
            updated_before: Some(Timestamp::from_unix_micros(3_000)),
            due_before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![row]);
    // Due: an order whose deadline has come; one without a deadline never is.
    store
        .order_create(new_order("o-2", "2", "h", None))
        .await
        .unwrap();
    let due = |at: i64| {
        let store = store.clone();
        async move {
            store
                .orders(OrderQuery {
                    due_before: Some(Timestamp::from_unix_micros(at)),
                    limit: 10,
                    ..OrderQuery::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due(8_999).await, Vec::<String>::new());
    assert_eq!(due(9_000).await, vec!["o-2".to_string()]);
    assert!(store.order_get("nope").await.unwrap().is_none());
}

async fn returns_are_kept_apart_from_orders_and_taken_once(db: &TestDb) {
    let store = db.open().await;
    // A return may carry the same channel and number as an order: different tables.
    assert_eq!(
        store
            .order_create(new_order("o-1", "RMA-1", "h", None))
            .await
            .unwrap(),
        OrderCreate::Created
    );
    assert_eq!(
        store
            .return_create(new_order("r-1", "RMA-1", "h", Some("d-1")))
            .await
            .unwrap(),
        OrderCreate::Created
    );
    assert_eq!(
        store
            .return_create(new_order("r-2", "RMA-1", "h", None))
            .await
            .unwrap(),
        OrderCreate::Duplicate {
            id: "r-1".into(),
            same_content: true
        }
    );
    assert_eq!(
        store
            .return_create(new_order("r-3", "RMA-9", "h", Some("d-1")))
            .await
            .unwrap(),
        OrderCreate::Duplicate {
            id: "r-1".into(),
            same_content: true
        },
        "a delivery id seen before names its return"
    );
    assert!(store.order_get("r-1").await.unwrap().is_none());
    let t = Timestamp::from_unix_micros(2_000);
    assert!(
        store
            .return_save("r-1", 0, "received", None, "{}", t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .return_save("r-1", 0, "closed", None, "{}", t)
            .await
            .unwrap()
    );
    let row = store.return_get("r-1").await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.version), ("received", 1));
    let due = store
        .returns(OrderQuery {
            status: Some("received".into()),
            limit: 10,
            ..OrderQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
}

fn posting_line(key: &str, channel: &str, day: &str, units: i64, amount: &str) -> PostingLine {
    PostingLine {
        key: key.into(),
        channel: channel.into(),
        currency: "USD".into(),
        day: day.into(),
        source: "o-1".into(),
        units,
        amount: crossdock_core::money::Amount::parse(amount).unwrap(),
    }
}

fn journal_action() -> PostingActionBuilder {
    Box::new(|b: &PostingBatch| NewAction {
        target: "erp".into(),
        idempotency_key: format!("journal/{}", b.key),
        coalesce_key: None,
        priority: 0,
        payload: serde_json::json!({"batch": b.key, "amount": b.amount.to_string()}).to_string(),
        not_before: Timestamp::from_unix_micros(0),
        correlation_id: None,
        causation_id: None,
    })
}

async fn posting_runs_put_each_line_in_exactly_one_batch(db: &TestDb) {
    let store = db.open().await;
    let t = at(0);
    let lines = vec![
        posting_line("s/1/1", "shop", "2026-11-26", 2, "19.98"),
        posting_line("s/1/2", "shop", "2026-11-26", 1, "0.0825"),
        posting_line("r/1/1", "shop", "2026-11-26", -1, "-9.99"),
        posting_line("s/2/1", "amazon", "2026-11-26", 3, "30"),
        posting_line("s/3/1", "shop", "2026-11-27", 1, "5"),
    ];
    assert_eq!(store.posting_lines_add(lines.clone(), t).await.unwrap(), 5);
    assert_eq!(
        store.posting_lines_add(lines, t).await.unwrap(),
        0,
        "a line recorded again is passed over"
    );
    let batches = store.postings_run(journal_action(), t).await.unwrap();
    let totals: Vec<_> = batches
        .iter()
        .map(|b| (b.key.as_str(), b.lines, b.units, b.amount.to_string()))
        .collect();
    assert_eq!(
        totals,
        vec![
            ("2026-11-26.amazon.USD.1", 1, 3, "30.00".to_string()),
            ("2026-11-26.shop.USD.1", 3, 2, "10.0725".to_string()),
            ("2026-11-27.shop.USD.1", 1, 1, "5.00".to_string()),
        ]
    );
    assert!(batches.iter().all(|b| b.action_id.is_some()));
    let queued: i64 = store
        .outbox_counts()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.target == "erp")
        .map(|c| c.count)
        .sum();
    assert_eq!(queued, 3, "one erp.journal.post per batch");
    for b in &batches {
        let action = store.action(b.action_id.unwrap()).await.unwrap().unwrap();
        assert!(action.payload.contains(&b.key));
    }
    // A second run finds nothing it already took.
    assert!(
        store
            .postings_run(journal_action(), t)
            .await
            .unwrap()
            .is_empty()
    );
    // A late line of a day already posted makes that day's second batch.
    store
        .posting_lines_add(
            vec![posting_line("s/4/1", "shop", "2026-11-26", 1, "1.5")],
            t,
        )
        .await
        .unwrap();
    let late = store.postings_run(journal_action(), t).await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].key, "2026-11-26.shop.USD.2");
    assert_eq!(
        store
            .posting_lines("2026-11-26.shop.USD.1")
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        store
            .posting_confirm("2026-11-26.shop.USD.1", "JE-7", at(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .posting_confirm("2026-11-26.shop.USD.1", "JE-8", at(2))
            .await
            .unwrap(),
        "confirmed once"
    );
    let posted = store
        .postings(PostingQuery {
            status: Some("posted".into()),
            limit: 10,
            ..PostingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].journal.as_deref(), Some("JE-7"));
    assert_eq!(posted[0].updated_at, at(1));
}

async fn racing_posting_runs_never_post_a_line_twice(db: &TestDb) {
    let store = db.open().await;
    let t = at(0);
    let mut tasks = Vec::new();
    for task in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut batches = Vec::new();
            for round in 0..10 {
                let lines = (0..5)
                    .map(|i| {
                        posting_line(
                            &format!("s/{task}/{round}/{i}"),
                            "shop",
                            "2026-11-26",
                            1,
                            "2.5",
                        )
                    })
                    .collect();
                store.posting_lines_add(lines, t).await.unwrap();
                batches.extend(store.postings_run(journal_action(), t).await.unwrap());
            }
            batches
        }));
    }
    let mut batches = Vec::new();
    for task in tasks {
        batches.extend(task.await.unwrap());
    }
    let keys: BTreeSet<_> = batches.iter().map(|b| b.key.clone()).collect();
    assert_eq!(keys.len(), batches.len(), "every batch key is new");
    assert_eq!(batches.iter().map(|b| b.lines).sum::<i64>(), 200);
    assert_eq!(batches.iter().map(|b| b.units).sum::<i64>(), 200);
    let amount: i64 = batches.iter().map(|b| b.amount.ten_thousandths()).sum();
    assert_eq!(amount, 200 * 25_000);
    let mut in_batches = 0;
    for key in &keys {
        in_batches += store.posting_lines(key).await.unwrap().len();
    }
    assert_eq!(in_batches, 200);
}

/// Commits one listing value as the inventory projection's next batch, after an event appended
/// for it, at `when`.
async fn commit_listing_value(store: &Store, change: AvailabilityChange, when: Timestamp) {
    let from = store.head_seq().await.unwrap();
    let n = usize::try_from(from).unwrap();
    store.append(events("/inv", n..n + 1), when).await.unwrap();
    let writes = InventoryWrites {
        new_from_seq: from + 1,
        availability: vec![change],
        ..InventoryWrites::default()
    };
    store
        .commit_projection(
            Projection::Inventory.consumer_name(),
            from,
            from + 1,
            ProjectionWrites::Inventory(Box::new(writes)),
            when,
        )
        .await
        .unwrap();
}

/// What a listing should show is kept per channel listing: written, changed in place, and when
/// the listing is mapped to another SKU found under that SKU only.
async fn a_listing_value_follows_its_sku_when_remapped(db: &TestDb) {
    use crossdock_core::catalog::{ChannelId, ChannelSku, Sku};
    let store = db.open().await;
    let change = |sku: &str, available: i64| AvailabilityChange {
        channel: ChannelId::parse("shop").unwrap(),
        channel_sku: ChannelSku::parse("shop-mug").unwrap(),
        sku: Sku::parse(sku).unwrap(),
        available,
        hold_until: at(0),
    };
    for (sku, available) in [("MUG", 5), ("MUG", 3), ("CUP", 9)] {
        commit_listing_value(&store, change(sku, available), at(1)).await;
    }
    let mug = store
        .channel_availability(vec![Sku::parse("MUG").unwrap()])
        .await
        .unwrap();
    assert!(mug.is_empty(), "no longer under MUG: {mug:?}");
    let cup = store
        .channel_availability(vec![Sku::parse("CUP").unwrap()])
        .await
        .unwrap();
    assert_eq!(cup.len(), 1, "{cup:?}");
    assert_eq!(cup[0].channel_sku.as_str(), "shop-mug");
    assert_eq!(cup[0].available, 9);
}

/// A listing that changes again while it waits at the same rank keeps its place among the due
/// listings (oldest first); one handed to the outbox is not due, nor one that changes back to
/// what was handed over; one that changes after that is due again.
async fn due_listings_keep_their_place_and_stop_being_due_once_queued(db: &TestDb) {
    use crossdock_core::catalog::{ChannelId, ChannelSku, Sku};
    let store = db.open().await;
    let shop = ChannelId::parse("shop").unwrap();
    let change = |listing: &str, available: i64| AvailabilityChange {
        channel: shop.clone(),
        channel_sku: ChannelSku::parse(listing).unwrap(),
        sku: Sku::parse(listing).unwrap(),
        available,
        hold_until: at(0),
    };
    let write = async |store: &Store, listing: &str, available: i64, when: i64| {
        commit_listing_value(store, change(listing, available), at(when)).await;
    };
    let due = async |store: &Store, when: i64| -> Vec<(String, i64)> {
        store
            .availability_due(&shop, "webhook:crm", 10, at(when))
            .await
            .unwrap()
            .listings
            .into_iter()
            .map(|l| (l.channel_sku.as_str().to_owned(), l.available))
            .collect()
    };
    write(&store, "A", 5, 1).await;
    write(&store, "B", 5, 2).await;
    write(&store, "A", 4, 3).await;
    assert_eq!(due(&store, 4).await, [("A".into(), 4), ("B".into(), 5)]);
    // A zero-out goes first, whenever it came.
    write(&store, "B", 0, 5).await;
    assert_eq!(due(&store, 6).await, [("B".into(), 0), ("A".into(), 4)]);

    let fed = store
        .feed_availability(
            &shop,
            "webhook:crm",
            10,
            at(7),
            4,
            Box::new(|listings| {
                Ok(NewAction {
                    target: "webhook:crm".into(),
                    idempotency_key: "shop-batch-1".into(),
                    coalesce_key: None,
                    priority: 0,
                    payload: format!("{}", listings.len()),
                    not_before: at(7),
                    correlation_id: None,
                    causation_id: None,
                })
            }),
        )
        .await
        .unwrap();
    assert_eq!(fed.listings.len(), 2);
    assert_eq!(due(&store, 8).await, [], "handed over");
    let claimed = store.claim(claim_request(10, 10, at(8))).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert!(
        store
            .ack(claimed[0].id, claimed[0].attempt, at(8))
            .await
            .unwrap()
    );
    assert_eq!(due(&store, 9).await, []);
    write(&store, "A", 6, 10).await;
    write(&store, "A", 4, 11).await;
    assert_eq!(due(&store, 12).await, [], "back to what was handed over");
    write(&store, "A", 3, 13).await;
    assert_eq!(due(&store, 14).await, [("A".into(), 3)]);
}

/// A catalog write appends the event recording its change in its own transaction: in the log
/// when the write took effect, absent when it was refused.
async fn a_catalog_write_records_its_change_with_it_or_not_at_all(db: &TestDb) {
    use crossdock_core::catalog::{
        Channel, ChannelId, ChannelSku, Item, Listing, LocationId, OrderPolicy, Policy, Sku,
    };
    let store = db.open().await;
    let change = |id: &str| Some(event("/crossdock/catalog", id));
    let ids = async |store: &Store| -> Vec<String> {
        let events = store.read_events(0, 100).await.unwrap();
        events.iter().map(|e| e.event.id().to_owned()).collect()
    };
    let mug = Sku::parse("MUG").unwrap();
    let item = Item {
        description: None,
        unit: "each".into(),
        components: Vec::new(),
    };
    let shop = ChannelId::parse("shop").unwrap();
    let listing = || {
        vec![(
            ChannelSku::parse("shop-mug").unwrap(),
            Listing { sku: mug.clone() },
        )]
    };
    let listed = store
        .listings_put(shop.clone(), listing(), at(0), change("no-channel"))
        .await
        .unwrap();
    assert_eq!(listed, None, "no such channel");
    let channel = Channel {
        kind: "shopify".into(),
        locations: vec![LocationId::parse("nowhere").unwrap()],
        policy: Policy::default(),
        increase_hold_ms: 0,
        orders: OrderPolicy::default(),
    };
    let refused = store
        .channel_put(shop.clone(), channel.clone(), at(0), change("no-location"))
        .await
        .unwrap();
    assert!(matches!(refused, CatalogWrite::Refused(_)), "{refused:?}");
    let kit = Item {
        components: vec![crossdock_core::catalog::Component {
            sku: Sku::parse("NOT-AN-ITEM").unwrap(),
            quantity: 1,
        }],
        ..item.clone()
    };
    let refused = store
        .items_put(vec![(mug.clone(), kit)], at(0), change("unknown-component"))
        .await
        .unwrap();
    assert!(matches!(refused, BulkWrite::Refused(_)), "{refused:?}");
    assert_eq!(
        ids(&store).await,
        Vec::<String>::new(),
        "nothing refused is recorded"
    );

    let written = store
        .items_put(vec![(mug.clone(), item)], at(1), change("item"))
        .await
        .unwrap();
    assert!(
        matches!(written, BulkWrite::Written { created: 1, .. }),
        "{written:?}"
    );
    let _ = store
        .location_put(
            LocationId::parse("wh").unwrap(),
            crossdock_core::catalog::Location {
                name: "Warehouse".into(),
                kind: crossdock_core::catalog::LocationKind::Warehouse,
                authority: "/wms".into(),
            },
            at(1),
        )
        .await
        .unwrap();
    let channel = Channel {
        locations: vec![LocationId::parse("wh").unwrap()],
        ..channel
    };
    let written = store
        .channel_put(shop.clone(), channel, at(2), change("channel"))
        .await
        .unwrap();
    assert_eq!(written, CatalogWrite::Created);
    let listed = store
        .listings_put(shop.clone(), listing(), at(3), change("listings"))
        .await
        .unwrap();
    assert!(
        matches!(listed, Some(BulkWrite::Written { created: 1, .. })),
        "{listed:?}"
    );
    let written = store
        .listing_put(
            shop,
            ChannelSku::parse("shop-mug-2").unwrap(),
            Listing { sku: mug },
            at(4),
            change("listing"),
        )
        .await
        .unwrap();
    assert_eq!(written, CatalogWrite::Created);
    assert_eq!(
        ids(&store).await,
        ["item", "channel", "listings", "listing"],
        "each write that took effect, in order"
    );
}
