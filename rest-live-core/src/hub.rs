//! The subscription index and fan-out. For each committed change it works out which subscription
//! gets `create`, `update` or `delete`, encodes each distinct frame once, and pushes the shared bytes
//! into each connection's bounded queue. A full queue closes that connection (4008); nobody waits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::changelog::{Change, ChangeAction};
use crate::connection::Outbox;
use crate::protocol;

/// What a subscription follows within one stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One object, by canonical JSON of its pk.
    Instance(String),
    /// Every object whose group key has this value (canonical JSON).
    Group(&'static str, String),
}

/// One subscription: where to send, and the `request_id` (as JSON text) its events carry.
#[derive(Clone)]
pub struct Subscriber {
    pub outbox: Arc<Outbox>,
    pub request_id: Arc<str>,
}

impl Subscriber {
    fn same(&self, other: &Subscriber) -> bool {
        self.outbox.id() == other.outbox.id() && self.request_id == other.request_id
    }
}

#[derive(Default)]
struct Subs {
    instance: HashMap<String, Vec<Subscriber>>,
    group: HashMap<&'static str, HashMap<String, Vec<Subscriber>>>,
}

struct StreamHub {
    subs: RwLock<Subs>,
    /// The seq of the newest change handed out. Advanced while the subscription lock is held, so
    /// that a subscription registered "at S" receives exactly the changes after S.
    delivered: AtomicI64,
}

/// Subscriptions of every stream. Streams are fixed when the app starts.
pub struct Hub {
    streams: HashMap<&'static str, StreamHub>,
}

impl Hub {
    pub fn new(streams: impl IntoIterator<Item = (&'static str, i64)>) -> Self {
        Self {
            streams: streams
                .into_iter()
                .map(|(s, seq)| {
                    (
                        s,
                        StreamHub {
                            subs: RwLock::default(),
                            delivered: AtomicI64::new(seq),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The seq of the newest change of `stream` handed to subscribers.
    pub fn delivered(&self, stream: &str) -> i64 {
        self.streams
            .get(stream)
            .map(|s| s.delivered.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Registers `sub` and returns the seq it starts after. Registering the same subscriber on the
    /// same target twice is a no-op (one change reaches one subscription at most once).
    pub fn subscribe(&self, stream: &str, target: &Target, sub: Subscriber) -> i64 {
        let Some(hub) = self.streams.get(stream) else {
            return 0;
        };
        let mut subs = hub.subs.write().unwrap_or_else(|p| p.into_inner());
        let list = match target {
            Target::Instance(pk) => subs.instance.entry(pk.clone()).or_default(),
            Target::Group(key, value) => subs
                .group
                .entry(key)
                .or_default()
                .entry(value.clone())
                .or_default(),
        };
        if !list.iter().any(|s| s.same(&sub)) {
            list.push(sub);
        }
        hub.delivered.load(Ordering::Acquire)
    }

    /// Removes one subscription; false when there was none.
    pub fn unsubscribe(&self, stream: &str, target: &Target, conn: u64, request_id: &str) -> bool {
        let Some(hub) = self.streams.get(stream) else {
            return false;
        };
        let mut subs = hub.subs.write().unwrap_or_else(|p| p.into_inner());
        let Subs { instance, group } = &mut *subs;
        match target {
            Target::Instance(pk) => remove_from(instance, pk, conn, request_id),
            Target::Group(key, value) => group
                .get_mut(key)
                .is_some_and(|by_value| remove_from(by_value, value, conn, request_id)),
        }
    }

    /// Hands one committed change to its subscribers. Changes must come in seq order per stream;
    /// one already handed out is ignored.
    pub fn publish(&self, change: &Change) {
        let Some(hub) = self.streams.get(change.stream.as_str()) else {
            return;
        };
        let subs = hub.subs.read().unwrap_or_else(|p| p.into_inner());
        if change.seq <= hub.delivered.load(Ordering::Acquire) {
            return;
        }
        let deliveries = audience(&subs, change);
        hub.delivered.store(change.seq, Ordering::Release);
        send_frames(deliveries, change);
    }
}

fn remove_from(
    map: &mut HashMap<String, Vec<Subscriber>>,
    key: &str,
    conn: u64,
    request_id: &str,
) -> bool {
    let Some(list) = map.get_mut(key) else {
        return false;
    };
    let before = list.len();
    list.retain(|s| !(s.outbox.id() == conn && &*s.request_id == request_id));
    let removed = list.len() != before;
    if list.is_empty() {
        map.remove(key);
    }
    removed
}

/// Who gets what for one change.
fn audience<'a>(subs: &'a Subs, change: &Change) -> Vec<(&'a Subscriber, ChangeAction)> {
    let mut out = Vec::new();
    if change.action != ChangeAction::Create {
        if let Some(list) = subs.instance.get(&change.pk) {
            out.extend(list.iter().map(|s| (s, change.action)));
        }
    }
    if subs.group.is_empty() {
        return out;
    }
    let old = parse_groups(change.old_groups.as_deref());
    let new = parse_groups(change.new_groups.as_deref());
    for (key, by_value) in &subs.group {
        let old_v = old.get(*key).map(Value::to_string);
        let new_v = new.get(*key).map(Value::to_string);
        let members = |v: &Option<String>| v.as_ref().and_then(|v| by_value.get(v));
        match change.action {
            ChangeAction::Create => {
                if let Some(list) = members(&new_v) {
                    out.extend(list.iter().map(|s| (s, ChangeAction::Create)));
                }
            }
            ChangeAction::Delete => {
                if let Some(list) = members(&old_v) {
                    out.extend(list.iter().map(|s| (s, ChangeAction::Delete)));
                }
            }
            ChangeAction::Update if old_v == new_v => {
                if let Some(list) = members(&new_v) {
                    out.extend(list.iter().map(|s| (s, ChangeAction::Update)));
                }
            }
            ChangeAction::Update => {
                // A move between groups: the old group's subscribers see it leave, the new group's
                // see it arrive, and a connection following both sees one update (on its new-group
                // subscription) instead of a delete and a create.
                let old_list = members(&old_v).map(Vec::as_slice).unwrap_or_default();
                let new_list = members(&new_v).map(Vec::as_slice).unwrap_or_default();
                let conns =
                    |l: &[Subscriber]| l.iter().map(|s| s.outbox.id()).collect::<HashSet<_>>();
                let (in_old, in_new) = (conns(old_list), conns(new_list));
                for s in old_list {
                    if !in_new.contains(&s.outbox.id()) {
                        out.push((s, ChangeAction::Delete));
                    }
                }
                for s in new_list {
                    let action = if in_old.contains(&s.outbox.id()) {
                        ChangeAction::Update
                    } else {
                        ChangeAction::Create
                    };
                    out.push((s, action));
                }
            }
        }
    }
    out
}

fn parse_groups(json: Option<&str>) -> Map<String, Value> {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// Encodes each distinct (action, request_id) frame once and shares its bytes.
fn send_frames(deliveries: Vec<(&Subscriber, ChangeAction)>, change: &Change) {
    let mut frames: Vec<(ChangeAction, &str, Bytes)> = Vec::new();
    let delete_data = format!("{{\"pk\":{}}}", change.pk);
    for (sub, action) in deliveries {
        let cached = frames
            .iter()
            .find(|(a, rid, _)| *a == action && *rid == &*sub.request_id)
            .map(|(_, _, b)| b.clone());
        let frame = match cached {
            Some(frame) => frame,
            None => {
                let data = match action {
                    ChangeAction::Delete => delete_data.as_str(),
                    _ => change.row.as_str(),
                };
                let frame = protocol::event_frame(
                    &change.stream,
                    action,
                    &sub.request_id,
                    change.seq,
                    data,
                );
                frames.push((action, &sub.request_id, frame.clone()));
                frame
            }
        };
        sub.outbox.push_event(frame);
    }
}
