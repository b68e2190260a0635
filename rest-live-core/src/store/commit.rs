//! What a write leaves: the body's outcome ([`Finished`]) and, once committed, its changes on
//! their way to the feed ([`Committed`]).

use std::sync::Arc;

use tokio::sync::Notify;

use super::changelog;

/// What a write transaction's body leaves once it succeeded: its value, the changes it appended
/// to the log (in order, as they will read back once committed), and what to run after the
/// commit.
pub struct Finished<T> {
    pub value: T,
    pub changes: Vec<changelog::Change>,
    pub after_commit: Vec<Box<dyn FnOnce() + Send>>,
}

/// The changes of a local commit, on their way to the hub. Whenever they are dropped without
/// having gone out (the writing task was cancelled, the feed's queue was full, or they could not
/// go out in seq order), the feed is woken to publish them from the log instead.
pub(crate) struct Committed {
    pub(super) changes: Vec<changelog::Change>,
    pub(super) feed: Arc<Notify>,
}

impl Committed {
    /// The changes, in commit order.
    pub(crate) fn changes(&self) -> &[changelog::Change] {
        &self.changes
    }

    /// They all went out: dropping this no longer wakes the feed.
    pub(crate) fn delivered(mut self) {
        self.changes.clear();
    }
}

impl Drop for Committed {
    fn drop(&mut self) {
        if !self.changes.is_empty() {
            self.feed.notify_one();
        }
    }
}
