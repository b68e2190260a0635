//! Open sockets, every one and by principal, so that a revocation (logout) closes the principal's
//! and a shutdown closes all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::principal::Principal;
use crate::outbox::{CloseReason, Outbox};

/// Open sockets, so that [`crate::App::revoke`] and [`crate::App::close_all`] can close them.
///
/// An outbox is held weakly and nothing tells the registry when one goes: dead entries are swept
/// when the list of all sockets has doubled since the last sweep, which keeps it within twice the
/// open sockets (plus a little) at a constant cost per registration. (Every entry by principal
/// is in that list too, so the sweep bounds those as well.)
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    all: Vec<Weak<Outbox>>,
    by_principal: HashMap<String, Vec<Weak<Outbox>>>,
    /// Length of `all` at which the next registration sweeps.
    sweep_at: usize,
    /// Set by `close_all`: sockets opening from now on are closed at once.
    closing: Option<CloseReason>,
}

/// The fewest entries at which a sweep is worth it.
const MIN_SWEEP: usize = 64;

impl Sessions {
    pub fn register(&self, principal: &Principal, outbox: &Arc<Outbox>) {
        let mut open = self.lock();
        if let Some(reason) = open.closing {
            drop(open);
            outbox.close(reason);
            return;
        }
        open.all.push(Arc::downgrade(outbox));
        if let Some(id) = &principal.id {
            let list = open.by_principal.entry(id.clone()).or_default();
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(outbox));
        }
        if open.all.len() >= open.sweep_at.max(MIN_SWEEP) {
            open.sweep();
        }
    }

    /// Closes every open socket of `principal_id` with 4003; returns how many.
    pub fn revoke(&self, principal_id: &str) -> usize {
        let list = self.lock().by_principal.remove(principal_id);
        let mut closed = 0;
        for outbox in list.iter().flatten().filter_map(Weak::upgrade) {
            outbox.close(CloseReason::REVOKED);
            closed += 1;
        }
        closed
    }

    /// Closes every open socket with `reason`, and every one that opens from now on; returns how
    /// many were open.
    pub fn close_all(&self, reason: CloseReason) -> usize {
        let live: Vec<Arc<Outbox>> = {
            let mut open = self.lock();
            open.closing.get_or_insert(reason);
            open.all.iter().filter_map(Weak::upgrade).collect()
        };
        for outbox in &live {
            outbox.close(reason);
        }
        live.len()
    }

    /// How many sockets are open (closing ones included, until they are gone).
    pub fn count(&self) -> usize {
        let open = self.lock();
        open.all.iter().filter(|w| w.strong_count() > 0).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Open {
    fn sweep(&mut self) {
        self.all.retain(|w| w.strong_count() > 0);
        self.by_principal.retain(|_, list| {
            list.retain(|w| w.strong_count() > 0);
            !list.is_empty()
        });
        self.sweep_at = 2 * self.all.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_with(drain: &crate::outbox::Drain) -> Option<CloseReason> {
        drain.close_reason()
    }

    fn open() -> (std::sync::Arc<Outbox>, crate::outbox::Drain) {
        Outbox::open(crate::outbox::Bounds {
            bytes: 1 << 20,
            frames: 4,
            send_timeout: std::time::Duration::from_secs(1),
        })
    }

    #[test]
    fn close_all_closes_every_open_socket_and_every_later_one() {
        let sessions = Sessions::default();
        let (alice, alice_out) = open();
        let (anonymous, anonymous_out) = open();
        let (gone, _) = open();
        sessions.register(&Principal::user("alice", ["user"]), &alice);
        sessions.register(&Principal::anonymous(), &anonymous);
        sessions.register(&Principal::anonymous(), &gone);
        drop(gone);
        assert_eq!(sessions.count(), 2);

        assert_eq!(sessions.close_all(CloseReason::GOING_AWAY), 2);
        assert_eq!(closed_with(&alice_out), Some(CloseReason::GOING_AWAY));
        assert_eq!(closed_with(&anonymous_out), Some(CloseReason::GOING_AWAY));
        // Closing, not gone: still counted until dropped.
        assert_eq!(sessions.count(), 2);
        drop((alice, anonymous));
        assert_eq!(sessions.count(), 0);

        let (late, late_out) = open();
        sessions.register(&Principal::user("bob", ["user"]), &late);
        assert_eq!(closed_with(&late_out), Some(CloseReason::GOING_AWAY));
        // A revocation afterwards does not change the reason.
        sessions.revoke("bob");
        assert_eq!(closed_with(&late_out), Some(CloseReason::GOING_AWAY));
    }

    #[test]
    fn revoke_closes_only_the_principals_sockets() {
        let sessions = Sessions::default();
        let (alice, alice_out) = open();
        let (bob, bob_out) = open();
        sessions.register(&Principal::user("alice", ["user"]), &alice);
        sessions.register(&Principal::user("bob", ["user"]), &bob);
        assert_eq!(sessions.revoke("alice"), 1);
        assert_eq!(closed_with(&alice_out), Some(CloseReason::REVOKED));
        assert_eq!(closed_with(&bob_out), None);
    }

    #[test]
    fn entries_of_gone_sockets_stay_within_twice_the_open_ones() {
        let sessions = Sessions::default();
        let (kept, _kept_out) = open();
        sessions.register(&Principal::user("keeper", ["user"]), &kept);
        for i in 0..10_000 {
            let (outbox, _) = open();
            sessions.register(&Principal::user(format!("user-{i}"), ["user"]), &outbox);
        }
        let open = sessions.lock();
        assert!(
            open.all.len() <= 2 * MIN_SWEEP,
            "{} entries",
            open.all.len()
        );
        assert!(open.by_principal.len() <= 2 * MIN_SWEEP);
        drop(open);
        assert_eq!(sessions.count(), 1);
        assert_eq!(sessions.revoke("keeper"), 1);
    }
}
