//! A live query as subscribed (PROTOCOL §4): what a subscription to a query follows, and the
//! event a change is for it before windows and permissions (see `live` for the views).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::audience::Rows;
use crate::meta::ResourceMeta;
use crate::query::matcher::matches;
use crate::query::{Query, canonical};
use crate::store::changelog::{Change, ChangeAction};

/// A live query as subscribed: its conditions and ordering (checked against the resource's
/// declaration and the subscriber's permissions) and its optional limit. Equal when the
/// canonical texts are.
pub struct LiveQuery {
    key: Arc<str>,
    pub(super) meta: &'static ResourceMeta,
    /// The conditions and ordering.
    pub query: Query,
    /// The window's size, if the query has one.
    pub limit: Option<usize>,
}

impl LiveQuery {
    /// The live query of `query` on `meta`'s stream, limited to its first `limit` rows.
    pub fn new(meta: &'static ResourceMeta, query: Query, limit: Option<usize>) -> Arc<Self> {
        let mut key = canonical(meta, &query);
        if let Some(limit) = limit {
            key.push_str(&format!("\0limit={limit}"));
        }
        Arc::new(Self {
            key: Arc::from(key),
            meta,
            query,
            limit,
        })
    }

    /// The canonical text that identifies it.
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The event a subscriber of this query with no limit gets for `change` before its
    /// permissions are applied: `create` when the row starts matching, `update` while it keeps
    /// matching, `delete` when it stops.
    pub fn base_action(&self, change: &Change) -> Option<ChangeAction> {
        let rows = Rows::of(change);
        self.base_action_of(&rows)
    }

    pub(super) fn base_action_of(&self, rows: &Rows) -> Option<ChangeAction> {
        let hit = |row: &Option<Map<String, Value>>| {
            row.as_ref()
                .is_some_and(|r| matches(self.meta, &self.query, r))
        };
        match (hit(&rows.old), hit(&rows.new)) {
            (false, true) => Some(ChangeAction::Create),
            (true, true) => Some(ChangeAction::Update),
            (true, false) => Some(ChangeAction::Delete),
            (false, false) => None,
        }
    }
}

impl PartialEq for LiveQuery {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for LiveQuery {}

impl std::hash::Hash for LiveQuery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl std::fmt::Debug for LiveQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveQuery").field(&self.key).finish()
    }
}
