//! The index of what one connection follows: per stream and subscription id, the targets, so
//! that finding, adding and removing a subscription does not scan the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::hub::Target;
use crate::protocol::Matching;

/// What one connection follows: per stream and subscription id, the targets.
#[derive(Default)]
pub(crate) struct Subscriptions {
    by_stream: HashMap<&'static str, HashMap<Arc<str>, HashSet<Target>>>,
    count: usize,
    /// How many of them are live queries.
    queries: usize,
}

impl Subscriptions {
    pub(crate) fn contains(&self, stream: &str, id: &str, target: &Target) -> bool {
        self.by_stream
            .get(stream)
            .and_then(|ids| ids.get(id))
            .is_some_and(|targets| targets.contains(target))
    }

    pub(crate) fn insert(&mut self, stream: &'static str, id: &Arc<str>, target: Target) {
        let added = self
            .by_stream
            .entry(stream)
            .or_default()
            .entry(id.clone())
            .or_default()
            .insert(target.clone());
        self.count += usize::from(added);
        self.queries += usize::from(added && matches!(target, Target::Query(_)));
    }

    /// Removes what `matching` names; returns the targets removed.
    pub(crate) fn remove(&mut self, stream: &str, id: &str, matching: &Matching) -> Vec<Target> {
        let Some(ids) = self.by_stream.get_mut(stream) else {
            return Vec::new();
        };
        let Some(targets) = ids.get_mut(id) else {
            return Vec::new();
        };
        let removed: Vec<Target> = match matching {
            Matching::Exact(target) => targets.take(target).into_iter().collect(),
            Matching::AnySubscription => {
                let groups: Vec<Target> = targets
                    .iter()
                    .filter(|t| matches!(t, Target::Group(..) | Target::Query(_)))
                    .cloned()
                    .collect();
                for target in &groups {
                    targets.remove(target);
                }
                groups
            }
        };
        if targets.is_empty() {
            ids.remove(id);
        }
        self.count -= removed.len();
        self.queries -= removed
            .iter()
            .filter(|t| matches!(t, Target::Query(_)))
            .count();
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// How many live queries the connection follows.
    pub(crate) fn queries(&self) -> usize {
        self.queries
    }

    /// Every subscription: (stream, id, target).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, &str, &Target)> {
        self.by_stream.iter().flat_map(|(stream, ids)| {
            ids.iter()
                .flat_map(move |(id, targets)| targets.iter().map(move |t| (*stream, &**id, t)))
        })
    }
}
