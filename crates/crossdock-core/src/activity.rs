//! The source activity projection: for each event source and type, where in the log it was first
//! and last seen. Operators read it to answer "when did the WMS last speak to us?".
//!
//! Entries merge by minimum and maximum, so applying any events in any order, any number of
//! times, gives the same result. That is what makes resetting the projection to an earlier
//! position and re-applying safe.

use std::collections::BTreeMap;

use crate::event::StoredEvent;
use crate::time::Timestamp;

/// What the projection knows about one `(source, type)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivityEntry {
    pub first_seq: i64,
    pub last_seq: i64,
    pub first_recorded_at: Timestamp,
    pub last_recorded_at: Timestamp,
}

impl ActivityEntry {
    pub fn of(event: &StoredEvent) -> Self {
        ActivityEntry {
            first_seq: event.seq,
            last_seq: event.seq,
            first_recorded_at: event.recorded_at,
            last_recorded_at: event.recorded_at,
        }
    }

    /// The least entry covering both; commutative, associative and idempotent.
    pub fn merge(self, other: Self) -> Self {
        ActivityEntry {
            first_seq: self.first_seq.min(other.first_seq),
            last_seq: self.last_seq.max(other.last_seq),
            first_recorded_at: self.first_recorded_at.min(other.first_recorded_at),
            last_recorded_at: self.last_recorded_at.max(other.last_recorded_at),
        }
    }
}

/// `(source, type)`.
pub type ActivityKey = (String, String);

/// The change a batch of events makes to the projection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityDelta {
    pub entries: BTreeMap<ActivityKey, ActivityEntry>,
}

impl ActivityDelta {
    pub fn apply(&mut self, event: &StoredEvent) {
        let entry = ActivityEntry::of(event);
        let key = (event.event.source(), event.event.kind());
        // Look up by borrowed parts first so a hot key costs no allocation.
        if let Some(existing) = self
            .entries
            .iter_mut()
            .find(|((s, k), _)| s == key.0 && k == key.1)
            .map(|(_, v)| v)
        {
            *existing = existing.merge(entry);
            return;
        }
        self.entries
            .insert((key.0.to_owned(), key.1.to_owned()), entry);
    }

    pub fn merge_entry(&mut self, key: ActivityKey, entry: ActivityEntry) {
        self.entries
            .entry(key)
            .and_modify(|e| *e = e.merge(entry))
            .or_insert(entry);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;
    use proptest::prelude::*;

    fn stored(seq: i64, source: &str, kind: &str) -> StoredEvent {
        StoredEvent {
            seq,
            recorded_at: Timestamp::from_unix_micros(seq * 10),
            event: NewEvent::new(&format!("e{seq}"), source, kind, None).unwrap(),
        }
    }

    proptest! {
        #[test]
        fn any_order_and_any_repetition_give_the_same_state(
            events in proptest::collection::vec((1i64..500, 0usize..3, 0usize..3), 1..60),
            shuffle_seed in any::<u64>(),
        ) {
            let sources = ["/a", "/b", "/c"];
            let kinds = ["x", "y", "z"];
            let all: Vec<StoredEvent> = events
                .iter()
                .map(|&(seq, s, k)| stored(seq, sources[s], kinds[k]))
                .collect();
            let mut forward = ActivityDelta::default();
            for e in &all { forward.apply(e); }

            // Apply a shuffled copy with every event twice.
            let mut doubled: Vec<&StoredEvent> = all.iter().chain(all.iter()).collect();
            let mut state = shuffle_seed | 1;
            for i in (1..doubled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                doubled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut shuffled = ActivityDelta::default();
            for e in doubled { shuffled.apply(e); }
            prop_assert_eq!(forward, shuffled);
        }
    }
}
