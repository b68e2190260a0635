//! Open sockets by principal, so that a revocation (logout) closes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::principal::Principal;
use crate::outbox::{CloseReason, Outbox};

/// Open sockets by principal, so that [`crate::App::revoke`] can close them.
#[derive(Default)]
pub(crate) struct Sessions {
    by_principal: Mutex<HashMap<String, Vec<Weak<Outbox>>>>,
}

impl Sessions {
    pub fn register(&self, principal: &Principal, outbox: &Arc<Outbox>) {
        let Some(id) = &principal.id else {
            return;
        };
        let mut map = self.by_principal.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(id.clone()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(outbox));
    }

    /// Closes every open socket of `principal_id` with 4003; returns how many.
    pub fn revoke(&self, principal_id: &str) -> usize {
        let list = self
            .by_principal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(principal_id)
            .unwrap_or_default();
        let mut closed = 0;
        for outbox in list.iter().filter_map(Weak::upgrade) {
            outbox.close(CloseReason::REVOKED);
            closed += 1;
        }
        closed
    }
}
