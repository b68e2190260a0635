//! The recent changes of one stream, kept in memory for subscribers that fell behind: a bounded
//! ring of the last changes the hub handed out, in seq order. A subscriber catching up reads the
//! changes after its last one from here while the ring still holds them all, and from the change
//! log once it has fallen off the ring.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::store::changelog::Change;

pub(super) struct Ring {
    changes: VecDeque<Arc<Change>>,
    /// Every change of the stream with a seq above this is in `changes` (up to the newest handed
    /// out): the seq of the last change dropped, or where the hub started.
    floor: i64,
    capacity: usize,
}

impl Ring {
    pub(super) fn new(capacity: usize, start: i64) -> Self {
        Self {
            changes: VecDeque::new(),
            floor: start,
            capacity,
        }
    }

    /// Keeps `change`, the next one handed out, dropping the oldest beyond the capacity.
    pub(super) fn push(&mut self, change: &Change) {
        if self.capacity == 0 {
            self.floor = change.seq;
            return;
        }
        while self.changes.len() >= self.capacity {
            if let Some(old) = self.changes.pop_front() {
                self.floor = old.seq;
            }
        }
        self.changes.push_back(Arc::new(change.clone()));
    }

    /// The changes with `after < seq <= upto`, at most `max` of them (the first ones), if the
    /// ring still holds every change after `after`; `None` once `after` has fallen off it.
    pub(super) fn after(&self, after: i64, upto: i64, max: usize) -> Option<Vec<Arc<Change>>> {
        if after < self.floor {
            return None;
        }
        let start = self.changes.partition_point(|c| c.seq <= after);
        Some(
            self.changes
                .range(start..)
                .take_while(|c| c.seq <= upto)
                .take(max)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;
    use crate::store::changelog::{Change, ChangeAction};

    fn change(seq: i64) -> Change {
        Change {
            id: seq,
            stream: "s".into(),
            seq,
            action: ChangeAction::Create,
            pk: seq.to_string(),
            old_groups: None,
            new_groups: None,
            row: "{}".into(),
            old_row: None,
            committed_at: 0,
        }
    }

    /// Against a model that keeps every change: whatever the capacity, the ring answers exactly
    /// what the full history says for every `after` it can serve, and refuses only what it no
    /// longer holds.
    #[test]
    fn ring_answers_as_the_full_history_or_not_at_all() {
        for capacity in [0, 1, 2, 3, 7, 64] {
            let start = 10;
            let mut ring = Ring::new(capacity, start);
            let mut history = Vec::new();
            // Seqs with gaps, as a stream's seqs are when its changes are judged elsewhere.
            let mut seq = start;
            for step in 0..100i64 {
                seq += 1 + step % 3;
                let c = change(seq);
                ring.push(&c);
                history.push(c);
                for after in start..=seq + 1 {
                    for max in [1, 2, 5, 500] {
                        let want: Vec<i64> = history
                            .iter()
                            .map(|c| c.seq)
                            .filter(|&s| s > after && s <= seq)
                            .take(max)
                            .collect();
                        match ring.after(after, seq, max) {
                            Some(got) => {
                                let got: Vec<i64> = got.iter().map(|c| c.seq).collect();
                                assert_eq!(got, want, "capacity {capacity}, after {after}");
                            }
                            None => {
                                // Refused only when a change after `after` was dropped.
                                let kept = history.len().min(capacity);
                                let dropped = &history[..history.len() - kept];
                                assert!(
                                    dropped.iter().any(|c| c.seq > after),
                                    "capacity {capacity}: refused after {after} needlessly"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
