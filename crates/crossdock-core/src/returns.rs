//! A return as a saga, in the same shape as an order: authorized (an RMA for lines of a shipped
//! order) → received (what came back, line by line, with a disposition: restock or scrap) →
//! credited (the ERP's credit memo) → closed. Restocked units go back on hand at the receiving
//! location; scrapped ones do not. Every waiting state has a deadline whose passing makes a
//! visible, resumable exception.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{LocationId, Sku};
use crate::time::Timestamp;

/// One line of a return: up to `quantity` units of `sku` from order line `line`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    pub line: u32,
    pub sku: Sku,
    pub quantity: i64,
}

/// What becomes of returned units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Restock,
    Scrap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    Unknown,
    /// Authorized; waiting for the goods.
    Authorized,
    /// Goods received and dispositioned; waiting for the credit memo.
    Received,
    Credited,
    Closed,
    Exception,
}

impl ReturnStatus {
    /// Every status, in the order a return goes through them.
    pub const ALL: [ReturnStatus; 6] = [
        ReturnStatus::Unknown,
        ReturnStatus::Authorized,
        ReturnStatus::Received,
        ReturnStatus::Credited,
        ReturnStatus::Closed,
        ReturnStatus::Exception,
    ];
}

/// How long a return waits for its goods and for its credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReturnPolicy {
    pub receipt_timeout_ms: i64,
    pub credit_timeout_ms: i64,
}

impl Default for ReturnPolicy {
    fn default() -> Self {
        const DAY: i64 = 24 * 3_600_000;
        ReturnPolicy {
            receipt_timeout_ms: 30 * DAY,
            credit_timeout_ms: 2 * DAY,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnInput {
    /// The RMA: the order and the lines that may come back (from that order's shipped lines).
    Authorized {
        order_id: String,
        lines: Vec<ReturnLine>,
    },
    /// Goods received at `location` under `receipt`: per line, units and their disposition.
    Received {
        receipt: String,
        location: LocationId,
        lines: Vec<(u32, i64, Disposition)>,
    },
    CreditConfirmed {
        credit_memo: String,
    },
    Tick,
    Resume,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReturnAction {
    /// The ledger movement: restocked units back on hand at `location`.
    Restock {
        location: LocationId,
        lines: Vec<(Sku, i64)>,
        key: String,
    },
    CreateCreditMemo {
        key: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ReturnChange {
    Authorized {
        order_id: String,
        lines: Vec<ReturnLine>,
    },
    Received {
        receipt: String,
        lines: Vec<(u32, i64, Disposition)>,
    },
    Credited {
        credit_memo: String,
    },
    Status {
        to: ReturnStatus,
        reason: String,
        until: Option<Timestamp>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReturnDecision {
    pub changes: Vec<ReturnChange>,
    pub actions: Vec<ReturnAction>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub id: String,
    pub order_id: Option<String>,
    pub lines: Vec<ReturnLine>,
    pub status: ReturnStatus,
    pub reason: String,
    pub until: Option<Timestamp>,
    pub interrupted: Option<ReturnStatus>,
    /// Units received per line, and how many of them were restocked.
    pub received: BTreeMap<u32, (i64, i64)>,
    pub receipts: Vec<String>,
    pub credit_memo: Option<String>,
    /// Every status it went through, why and when.
    #[serde(default)]
    pub history: Vec<ReturnStep>,
}

/// A status a return went through, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnStep {
    pub status: ReturnStatus,
    pub reason: String,
    pub at: Timestamp,
}

impl Return {
    pub fn new(id: &str) -> Return {
        Return {
            id: id.to_owned(),
            order_id: None,
            lines: Vec::new(),
            status: ReturnStatus::Unknown,
            reason: String::new(),
            until: None,
            interrupted: None,
            received: BTreeMap::new(),
            receipts: Vec::new(),
            credit_memo: None,
            history: Vec::new(),
        }
    }

    fn authorized(&self, line: u32) -> i64 {
        self.lines
            .iter()
            .find(|l| l.line == line)
            .map_or(0, |l| l.quantity)
    }

    pub fn apply(&mut self, change: &ReturnChange, now: Timestamp) {
        match change {
            ReturnChange::Authorized { order_id, lines } => {
                self.order_id = Some(order_id.clone());
                self.lines.clone_from(lines);
            }
            ReturnChange::Received { receipt, lines } => {
                self.receipts.push(receipt.clone());
                for (line, quantity, disposition) in lines {
                    let entry = self.received.entry(*line).or_default();
                    entry.0 += quantity;
                    if *disposition == Disposition::Restock {
                        entry.1 += quantity;
                    }
                }
            }
            ReturnChange::Credited { credit_memo } => self.credit_memo = Some(credit_memo.clone()),
            ReturnChange::Status { to, reason, until } => {
                if *to == ReturnStatus::Exception && self.status != ReturnStatus::Exception {
                    self.interrupted = Some(self.status);
                }
                if *to != ReturnStatus::Exception {
                    self.interrupted = None;
                }
                self.status = *to;
                self.reason.clone_from(reason);
                self.until = *until;
                self.history.push(ReturnStep {
                    status: *to,
                    reason: reason.clone(),
                    at: now,
                });
            }
        }
    }

    pub fn handle(
        &mut self,
        input: &ReturnInput,
        now: Timestamp,
        policy: &ReturnPolicy,
    ) -> ReturnDecision {
        let decision = decide_return(self, input, now, policy);
        for change in &decision.changes {
            self.apply(change, now);
        }
        decision
    }
}

fn status(to: ReturnStatus, reason: String, until: Option<Timestamp>) -> ReturnChange {
    ReturnChange::Status { to, reason, until }
}

/// What `input` does to a return at `now`.
pub fn decide_return(
    r: &Return,
    input: &ReturnInput,
    now: Timestamp,
    policy: &ReturnPolicy,
) -> ReturnDecision {
    let mut d = ReturnDecision::default();
    let effective = match (r.status, r.interrupted) {
        (ReturnStatus::Exception, Some(interrupted)) => interrupted,
        (s, _) => s,
    };
    if r.status == ReturnStatus::Closed {
        return d;
    }
    match input {
        ReturnInput::Authorized { order_id, lines } => {
            if r.status != ReturnStatus::Unknown {
                return d;
            }
            let valid = !lines.is_empty() && lines.iter().all(|l| l.quantity >= 1);
            d.changes.push(ReturnChange::Authorized {
                order_id: order_id.clone(),
                lines: lines.clone(),
            });
            if valid {
                d.changes.push(status(
                    ReturnStatus::Authorized,
                    format!("authorized for order {order_id}; waiting for the goods"),
                    Some(now.plus_millis(policy.receipt_timeout_ms)),
                ));
            } else {
                d.changes.push(status(
                    ReturnStatus::Exception,
                    "an authorization needs lines of at least one unit".into(),
                    None,
                ));
            }
        }
        ReturnInput::Received {
            receipt,
            location,
            lines,
        } => {
            if effective != ReturnStatus::Authorized || r.receipts.contains(receipt) {
                return d;
            }
            for (line, quantity, _) in lines {
                let already = r.received.get(line).map_or(0, |e| e.0);
                if *quantity < 1 || already + quantity > r.authorized(*line) {
                    d.changes.push(status(
                        ReturnStatus::Exception,
                        format!(
                            "receipt {receipt} brings {quantity} of line {line}; {} were authorized, {already} already received",
                            r.authorized(*line)
                        ),
                        None,
                    ));
                    return d;
                }
            }
            d.changes.push(ReturnChange::Received {
                receipt: receipt.clone(),
                lines: lines.clone(),
            });
            let restock: Vec<(Sku, i64)> = lines
                .iter()
                .filter(|(_, _, disposition)| *disposition == Disposition::Restock)
                .filter_map(|(line, quantity, _)| {
                    let sku = r.lines.iter().find(|l| l.line == *line)?.sku.clone();
                    Some((sku, *quantity))
                })
                .collect();
            if !restock.is_empty() {
                d.actions.push(ReturnAction::Restock {
                    location: location.clone(),
                    lines: restock,
                    key: format!("restock/{}/{receipt}", r.id),
                });
            }
            d.actions.push(ReturnAction::CreateCreditMemo {
                key: format!("credit-memo/{}", r.id),
            });
            d.changes.push(status(
                ReturnStatus::Received,
                format!("received under {receipt}; waiting for the credit memo"),
                Some(now.plus_millis(policy.credit_timeout_ms)),
            ));
        }
        ReturnInput::CreditConfirmed { credit_memo } => {
            if effective == ReturnStatus::Received {
                d.changes.push(ReturnChange::Credited {
                    credit_memo: credit_memo.clone(),
                });
                d.changes.push(status(
                    ReturnStatus::Credited,
                    format!("credited ({credit_memo})"),
                    None,
                ));
                d.changes.push(status(
                    ReturnStatus::Closed,
                    "received and credited".into(),
                    None,
                ));
            }
        }
        ReturnInput::Tick => {
            if let Some(until) = r.until
                && now >= until
                && r.status != ReturnStatus::Exception
            {
                let waited = match r.status {
                    ReturnStatus::Authorized => "the goods did not come back",
                    _ => "no credit memo",
                };
                d.changes.push(status(
                    ReturnStatus::Exception,
                    format!("{waited} by {until}"),
                    None,
                ));
            }
        }
        ReturnInput::Resume => {
            if r.status == ReturnStatus::Exception {
                match r.interrupted {
                    Some(ReturnStatus::Authorized) => d.changes.push(status(
                        ReturnStatus::Authorized,
                        "resumed; waiting for the goods again".into(),
                        Some(now.plus_millis(policy.receipt_timeout_ms)),
                    )),
                    Some(ReturnStatus::Received) => {
                        d.actions.push(ReturnAction::CreateCreditMemo {
                            key: format!("credit-memo/{}", r.id),
                        });
                        d.changes.push(status(
                            ReturnStatus::Received,
                            "resumed; asking for the credit memo again".into(),
                            Some(now.plus_millis(policy.credit_timeout_ms)),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000).plus_millis(ms)
    }

    fn rma() -> ReturnInput {
        ReturnInput::Authorized {
            order_id: "o-1".into(),
            lines: vec![
                ReturnLine {
                    line: 1,
                    sku: Sku::parse("MUG").unwrap(),
                    quantity: 2,
                },
                ReturnLine {
                    line: 2,
                    sku: Sku::parse("SAUCER").unwrap(),
                    quantity: 1,
                },
            ],
        }
    }

    fn dock() -> LocationId {
        LocationId::parse("wh-1").unwrap()
    }

    #[test]
    fn restocked_units_go_back_on_hand_and_scrapped_ones_do_not() {
        let policy = ReturnPolicy::default();
        let mut r = Return::new("r-1");
        r.handle(&rma(), at(0), &policy);
        assert_eq!(r.status, ReturnStatus::Authorized);
        let d = r.handle(
            &ReturnInput::Received {
                receipt: "RCV-1".into(),
                location: dock(),
                lines: vec![(1, 2, Disposition::Restock), (2, 1, Disposition::Scrap)],
            },
            at(1),
            &policy,
        );
        assert_eq!(
            d.actions,
            [
                ReturnAction::Restock {
                    location: dock(),
                    lines: vec![(Sku::parse("MUG").unwrap(), 2)],
                    key: "restock/r-1/RCV-1".into()
                },
                ReturnAction::CreateCreditMemo {
                    key: "credit-memo/r-1".into()
                }
            ]
        );
        assert_eq!(r.received.get(&1), Some(&(2, 2)));
        assert_eq!(r.received.get(&2), Some(&(1, 0)));
        r.handle(
            &ReturnInput::CreditConfirmed {
                credit_memo: "CM-1".into(),
            },
            at(2),
            &policy,
        );
        assert_eq!(r.status, ReturnStatus::Closed);
    }

    #[test]
    fn more_than_authorized_is_an_exception_and_a_late_receipt_resumes() {
        let policy = ReturnPolicy::default();
        let mut r = Return::new("r-2");
        r.handle(&rma(), at(0), &policy);
        let d = r.handle(
            &ReturnInput::Received {
                receipt: "X".into(),
                location: dock(),
                lines: vec![(1, 3, Disposition::Restock)],
            },
            at(1),
            &policy,
        );
        assert!(d.actions.is_empty());
        assert_eq!(r.status, ReturnStatus::Exception);
        assert!(r.received.is_empty());
        // Still waiting for the goods: the right receipt moves it on.
        r.handle(
            &ReturnInput::Received {
                receipt: "Y".into(),
                location: dock(),
                lines: vec![(1, 1, Disposition::Restock)],
            },
            at(2),
            &policy,
        );
        assert_eq!(r.status, ReturnStatus::Received);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Never more received than authorized, never restocked more than received, one credit,
        /// and after every deadline the return is closed or a visible exception.
        #[test]
        fn any_history_keeps_returns_within_their_authorization(
            inputs in proptest::collection::vec((0u8..6, 0u8..8, 0i64..5_000_000_000), 0..30),
        ) {
            let policy = ReturnPolicy::default();
            let mut r = Return::new("r");
            let mut t = 0;
            let mut credits = 0;
            for (kind, n, dt) in inputs {
                t += dt;
                let input = match kind {
                    0 => rma(),
                    1 | 2 => ReturnInput::Received {
                        receipt: format!("R{}", n % 3),
                        location: dock(),
                        lines: vec![(u32::from(n % 3), i64::from(n % 2) + 1,
                            if n % 2 == 0 { Disposition::Restock } else { Disposition::Scrap })],
                    },
                    3 => ReturnInput::CreditConfirmed { credit_memo: format!("CM{n}") },
                    4 => ReturnInput::Tick,
                    _ => ReturnInput::Resume,
                };
                let d = r.handle(&input, at(t), &policy);
                credits += d.changes.iter().filter(|c| matches!(c, ReturnChange::Credited { .. })).count();
                for (line, (received, restocked)) in &r.received {
                    prop_assert!(*received <= r.authorized(*line));
                    prop_assert!(*restocked <= *received);
                }
                prop_assert!(credits <= 1);
                if !matches!(r.status, ReturnStatus::Closed | ReturnStatus::Exception | ReturnStatus::Unknown | ReturnStatus::Credited) {
                    prop_assert!(r.until.is_some(), "{:?} waits without a deadline", r.status);
                }
            }
            r.handle(&ReturnInput::Tick, at(t + 1_000 * 24 * 3_600_000), &policy);
            prop_assert!(matches!(r.status, ReturnStatus::Closed | ReturnStatus::Exception | ReturnStatus::Unknown));
        }
    }
}
