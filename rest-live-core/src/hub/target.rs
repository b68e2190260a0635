//! What a subscription follows within one stream, and which event a change is for it.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::query::LiveQuery;
use crate::store::changelog::{Change, ChangeAction};

/// What a subscription follows within one stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One object, by canonical JSON of its pk.
    Instance(String),
    /// Every object whose group key has this value (canonical JSON).
    Group(&'static str, String),
    /// The result of a query (PROTOCOL §4).
    Query(Arc<LiveQuery>),
}

impl Target {
    /// The event this subscription alone gets for `change`, if any. Group subscriptions see
    /// changes relative to their group: arriving is `create`, leaving is `delete`; a live query
    /// relative to its matches (a window's events depend on its other rows: it is never replayed).
    pub fn action_for(&self, change: &Change) -> Option<ChangeAction> {
        match self {
            Target::Query(live) => live.base_action(change),
            Target::Instance(pk) => {
                (change.action != ChangeAction::Create && *pk == change.pk).then_some(change.action)
            }
            Target::Group(key, value) => {
                let in_old = group_value(change.old_groups.as_deref(), key).as_ref() == Some(value);
                let in_new = group_value(change.new_groups.as_deref(), key).as_ref() == Some(value);
                match (change.action, in_old, in_new) {
                    (ChangeAction::Create, _, true) => Some(ChangeAction::Create),
                    (ChangeAction::Delete, true, _) => Some(ChangeAction::Delete),
                    (ChangeAction::Update, true, true) => Some(ChangeAction::Update),
                    (ChangeAction::Update, false, true) => Some(ChangeAction::Create),
                    (ChangeAction::Update, true, false) => Some(ChangeAction::Delete),
                    _ => None,
                }
            }
        }
    }
}

impl Target {
    /// For a group subscription and a change that moves an object out of its group or into it:
    /// the group on the other side of the move.
    pub fn other_side(&self, change: &Change) -> Option<Target> {
        let Target::Group(key, value) = self else {
            return None;
        };
        if change.action != ChangeAction::Update {
            return None;
        }
        let old = group_value(change.old_groups.as_deref(), key);
        let new = group_value(change.new_groups.as_deref(), key);
        let other = match (old, new) {
            (Some(old), Some(new)) if old == new => return None,
            (Some(old), new) if old == *value => new?,
            (old, Some(new)) if new == *value => old?,
            _ => return None,
        };
        Some(Target::Group(key, other))
    }
}

fn group_value(groups: Option<&str>, key: &str) -> Option<String> {
    let map: Map<String, Value> = serde_json::from_str(groups?).ok()?;
    map.get(key).map(Value::to_string)
}
