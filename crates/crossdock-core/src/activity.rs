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
    // Nested by source, then type, so a lookup by borrowed names allocates nothing.
    by_source: BTreeMap<String, BTreeMap<String, ActivityEntry>>,
}

impl ActivityDelta {
    pub fn apply(&mut self, event: &StoredEvent) {
        self.merge_entry(
            event.event.source(),
            event.event.kind(),
            ActivityEntry::of(event),
        );
    }

    pub fn merge_entry(&mut self, source: &str, kind: &str, entry: ActivityEntry) {
        let kinds = match self.by_source.get_mut(source) {
            Some(kinds) => kinds,
            None => self.by_source.entry(source.to_owned()).or_default(),
        };
        match kinds.get_mut(kind) {
            Some(existing) => *existing = existing.merge(entry),
            None => {
                kinds.insert(kind.to_owned(), entry);
            }
        }
    }

    /// Every `(source, type)` and its entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = ((&str, &str), &ActivityEntry)> {
        self.by_source.iter().flat_map(|(source, kinds)| {
            kinds
                .iter()
                .map(move |(kind, entry)| ((source.as_str(), kind.as_str()), entry))
        })
    }

    pub fn len(&self) -> usize {
        self.by_source.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
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
