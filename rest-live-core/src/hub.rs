//! The subscription index and fan-out. For each committed change it works out which subscription
//! gets `create`, `update` or `delete`, encodes each distinct frame once, and pushes the shared bytes
//! into each connection's bounded queue. A full queue closes that connection (4008); nobody waits.
//!
//! A subscription can start *pending*: it is registered (so nothing committed after its start is
//! missed) but its events are held back while the connection replays the log (`since`) or sends a
//! snapshot, then released in order, skipping what the replay or snapshot already covered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::binding::Binding;
use crate::changelog::{Change, ChangeAction};
use crate::connection::{CloseReason, Outbox};
use crate::{drl, protocol};

/// How a subscriber's events are encoded. Several codecs share one hub: a change is judged once
/// per audience, and each distinct frame is encoded once per format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventFormat {
    /// PROTOCOL.md's `{stream, payload}` event, with the subscription's `request_id` and `seq`.
    Envelope,
    /// The django-rest-live event `{"model": label, "payload": object, "action": "UPDATED"}`
    /// (see [`crate::drl`]). A deletion carries the object as the subscriber last saw it.
    DjangoRestLive { label: &'static str },
}

impl EventFormat {
    /// Whether a `delete` carries the object as last seen rather than just `{"pk": …}`.
    fn deletes_carry_object(self) -> bool {
        matches!(self, EventFormat::DjangoRestLive { .. })
    }
}

/// What a subscription follows within one stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One object, by canonical JSON of its pk.
    Instance(String),
    /// Every object whose group key has this value (canonical JSON).
    Group(&'static str, String),
}

impl Target {
    /// The event this subscription alone gets for `change`, if any. Group subscriptions see
    /// changes relative to their group: arriving is `create`, leaving is `delete`.
    pub fn action_for(&self, change: &Change) -> Option<ChangeAction> {
        match self {
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

/// The data an event of `action` carries for `change` (unrestricted audiences).
pub fn event_data(change: &Change, action: ChangeAction) -> std::borrow::Cow<'_, str> {
    match action {
        ChangeAction::Delete => format!("{{\"pk\":{}}}", change.pk).into(),
        _ => change.row.as_str().into(),
    }
}

/// Principals that see the same objects the same way (see [`crate::permissions`]): one
/// visibility check and one encoding per change serve every subscriber of an audience.
pub struct Audience {
    pub key: String,
    /// A representative principal of the audience.
    pub principal: Principal,
    pub binding: &'static dyn Binding,
    restricted: bool,
}

impl Audience {
    pub fn new(binding: &'static dyn Binding, principal: &Principal) -> Arc<Self> {
        Arc::new(Self {
            key: binding.audience(principal),
            principal: principal.clone(),
            binding,
            restricted: binding.restricted() && !principal.is_system(),
        })
    }

    /// What this audience gets for `change`, given the event its subscription alone would get
    /// (`base`): the object must be readable. Something readable that stops being readable is a
    /// `delete` with just the pk; something that becomes readable is a `create`.
    pub fn event<'c>(
        &self,
        change: &'c Change,
        base: ChangeAction,
    ) -> Option<(ChangeAction, std::borrow::Cow<'c, str>)> {
        if !self.restricted {
            return Some((base, event_data(change, base)));
        }
        let parse =
            |json: Option<&str>| -> Option<Map<String, Value>> { serde_json::from_str(json?).ok() };
        let old = match change.action {
            ChangeAction::Create => None,
            ChangeAction::Update => parse(change.old_row.as_deref()),
            ChangeAction::Delete => parse(Some(&change.row)),
        };
        let new = match change.action {
            ChangeAction::Delete => None,
            _ => parse(Some(&change.row)),
        };
        let seen = |o: &Option<Map<String, Value>>| {
            o.as_ref()
                .is_some_and(|o| self.binding.visible(&self.principal, o))
        };
        let (was, is) = (seen(&old), seen(&new));
        let action = match base {
            ChangeAction::Create => is.then_some(ChangeAction::Create)?,
            ChangeAction::Delete => was.then_some(ChangeAction::Delete)?,
            ChangeAction::Update => match (was, is) {
                (true, true) => ChangeAction::Update,
                (true, false) => ChangeAction::Delete,
                (false, true) => ChangeAction::Create,
                (false, false) => return None,
            },
        };
        if action == ChangeAction::Delete {
            return Some((action, event_data(change, action)));
        }
        let mut object = new?;
        self.binding.present(&self.principal, &mut object);
        Some((action, Value::Object(object).to_string().into()))
    }

    /// [`Audience::event`] in `format`: the django-rest-live format sends a deleted object as
    /// this audience last saw it (its old version, which it could read), not only its pk.
    pub fn event_in<'c>(
        &self,
        change: &'c Change,
        base: ChangeAction,
        format: EventFormat,
    ) -> Option<(ChangeAction, std::borrow::Cow<'c, str>)> {
        let (action, data) = self.event(change, base)?;
        if action != ChangeAction::Delete || !format.deletes_carry_object() {
            return Some((action, data));
        }
        let old = match change.action {
            ChangeAction::Delete => Some(change.row.as_str()),
            ChangeAction::Update => change.old_row.as_deref(),
            ChangeAction::Create => None,
        };
        let Some(old) = old else {
            return Some((action, data));
        };
        if !self.restricted {
            return Some((action, old.into()));
        }
        match serde_json::from_str::<Map<String, Value>>(old) {
            Ok(mut object) => {
                self.binding.present(&self.principal, &mut object);
                Some((action, Value::Object(object).to_string().into()))
            }
            Err(_) => Some((action, data)),
        }
    }
}

fn group_value(groups: Option<&str>, key: &str) -> Option<String> {
    let map: Map<String, Value> = serde_json::from_str(groups?).ok()?;
    map.get(key).map(Value::to_string)
}

/// Delivery state of one subscription, shared between the hub and the connection.
pub struct SubState {
    /// Only changes with a larger seq are delivered.
    after: AtomicI64,
    /// `Some` while pending: held-back frames with their seq.
    held: Mutex<Option<Vec<(i64, Bytes)>>>,
}

impl SubState {
    fn new(pending: bool) -> Arc<Self> {
        Arc::new(Self {
            after: AtomicI64::new(0),
            held: Mutex::new(pending.then(Vec::new)),
        })
    }
}

/// One subscription: where to send, and the `request_id` (as JSON text) its events carry.
#[derive(Clone)]
pub struct Subscriber {
    pub outbox: Arc<Outbox>,
    pub request_id: Arc<str>,
    pub state: Arc<SubState>,
    pub audience: Arc<Audience>,
    /// How its events are encoded.
    pub format: EventFormat,
}

impl Subscriber {
    /// A live subscriber, or a pending one (see the module docs).
    pub fn new(
        outbox: Arc<Outbox>,
        request_id: Arc<str>,
        audience: Arc<Audience>,
        pending: bool,
    ) -> Self {
        Self {
            outbox,
            request_id,
            state: SubState::new(pending),
            audience,
            format: EventFormat::Envelope,
        }
    }

    /// The same subscriber, with its events encoded in `format`.
    pub fn with_format(mut self, format: EventFormat) -> Self {
        self.format = format;
        self
    }

    fn deliver(&self, seq: i64, frame: Bytes) {
        if seq <= self.state.after.load(Ordering::Acquire) {
            return;
        }
        let mut held = self.state.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.as_mut() {
            Some(frames) => {
                // A pending subscription holds at most one queue's worth, like a live one.
                if frames.len() >= self.outbox.capacity() {
                    self.outbox.close(CloseReason::SLOW_CONSUMER);
                } else {
                    frames.push((seq, frame));
                }
            }
            None => self.outbox.push_event(frame),
        }
    }

    /// Ends the pending phase: frames held with a seq after `after` go out in order, and from now
    /// on only changes after `after` are delivered.
    pub fn release(&self, after: i64) {
        let mut held = self.state.held.lock().unwrap_or_else(|p| p.into_inner());
        self.state.after.store(after, Ordering::Release);
        for (seq, frame) in held.take().unwrap_or_default() {
            if seq > after {
                self.outbox.push_event(frame);
            }
        }
    }
}

/// What a [`SubList`] holds: something keyed by (connection id, request id).
trait Member {
    fn key(&self) -> (u64, &str);
}

impl Member for Subscriber {
    fn key(&self) -> (u64, &str) {
        (self.outbox.id(), &self.request_id)
    }
}

/// The subscribers of one target: a dense list for fan-out, indexed by connection so that
/// adding and removing one costs the same with 10 subscribers or 10,000.
struct SubList<T = Subscriber> {
    subs: Vec<T>,
    /// Positions in `subs` of each connection's subscriptions.
    by_conn: HashMap<u64, Vec<usize>>,
}

impl<T> Default for SubList<T> {
    fn default() -> Self {
        Self {
            subs: Vec::new(),
            by_conn: HashMap::new(),
        }
    }
}

impl<T: Member> SubList<T> {
    fn as_slice(&self) -> &[T] {
        &self.subs
    }

    fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Adds `sub` unless the same subscription (connection and request id) is already here.
    fn insert(&mut self, sub: T) -> bool {
        let (conn, request_id) = sub.key();
        let positions = self.by_conn.entry(conn).or_default();
        if positions
            .iter()
            .any(|&i| self.subs[i].key().1 == request_id)
        {
            return false;
        }
        positions.push(self.subs.len());
        self.subs.push(sub);
        true
    }

    fn remove(&mut self, conn: u64, request_id: &str) -> bool {
        let Some(positions) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        let Some(at) = positions
            .iter()
            .position(|&i| self.subs[i].key().1 == request_id)
        else {
            return false;
        };
        let index = positions.swap_remove(at);
        if positions.is_empty() {
            self.by_conn.remove(&conn);
        }
        let last = self.subs.len() - 1;
        self.subs.swap_remove(index);
        if index != last {
            // The last subscriber moved into the freed slot.
            let moved = self.subs[index].key().0;
            if let Some(p) = self
                .by_conn
                .get_mut(&moved)
                .and_then(|ps| ps.iter_mut().find(|p| **p == last))
            {
                *p = index;
            }
        }
        true
    }
}

#[derive(Default)]
struct Subs {
    instance: HashMap<String, SubList>,
    group: HashMap<&'static str, HashMap<String, SubList>>,
}

struct StreamHub {
    subs: RwLock<Subs>,
    /// Held while one change is judged and handed out, so that the feed and the writers that
    /// publish their own commits hand out each seq once, in order.
    publishing: Mutex<()>,
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
                            publishing: Mutex::new(()),
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
    /// same target twice keeps the first (one change reaches one subscription at most once); the
    /// second return value says whether `sub` was added.
    pub fn subscribe(&self, stream: &str, target: &Target, sub: Subscriber) -> (i64, bool) {
        let Some(hub) = self.streams.get(stream) else {
            return (0, false);
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
        let added = list.insert(sub);
        (hub.delivered.load(Ordering::Acquire), added)
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
        self.publish_next(change, false);
    }

    /// Hands out the changes of a local commit as the writer recorded them, without reading them
    /// back from the log. Each one goes out only if it is the next of its stream
    /// (`seq == delivered + 1`); otherwise some earlier change (another process's, or a local
    /// commit not queued) must go first, and reading the log in order hands out both. Returns
    /// whether every change went out (or already had).
    pub fn publish_committed(&self, changes: &[Change]) -> bool {
        let mut all = true;
        for change in changes {
            all &= self.publish_next(change, true);
        }
        all
    }

    /// Publishes `change` if it is new; with `contiguous`, only if it directly follows the last
    /// change handed out. Returns false when it was held back for being out of order.
    fn publish_next(&self, change: &Change, contiguous: bool) -> bool {
        let Some(hub) = self.streams.get(change.stream.as_str()) else {
            return true;
        };
        let _publishing = hub.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let subs = hub.subs.read().unwrap_or_else(|p| p.into_inner());
        let delivered = hub.delivered.load(Ordering::Acquire);
        if change.seq <= delivered {
            return true;
        }
        if contiguous && change.seq != delivered + 1 {
            return false;
        }
        let deliveries = audience(&subs, change);
        hub.delivered.store(change.seq, Ordering::Release);
        send_frames(deliveries, change);
        true
    }
}

fn remove_from(map: &mut HashMap<String, SubList>, key: &str, conn: u64, request_id: &str) -> bool {
    let Some(list) = map.get_mut(key) else {
        return false;
    };
    let removed = list.remove(conn, request_id);
    if list.is_empty() {
        map.remove(key);
    }
    removed
}

/// Who gets what for one change.
fn audience<'a>(subs: &'a Subs, change: &Change) -> Vec<(&'a Subscriber, ChangeAction)> {
    let mut out = Vec::new();
    if change.action != ChangeAction::Create
        && let Some(list) = subs.instance.get(&change.pk)
    {
        out.extend(list.as_slice().iter().map(|s| (s, change.action)));
    }
    if subs.group.is_empty() {
        return out;
    }
    let old = parse_groups(change.old_groups.as_deref());
    let new = parse_groups(change.new_groups.as_deref());
    for (key, by_value) in &subs.group {
        let old_v = old.get(*key).map(Value::to_string);
        let new_v = new.get(*key).map(Value::to_string);
        let members = |v: &Option<String>| {
            v.as_ref()
                .and_then(|v| by_value.get(v))
                .map(SubList::as_slice)
        };
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
                let old_list = members(&old_v).unwrap_or_default();
                let new_list = members(&new_v).unwrap_or_default();
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

/// Decides once per audience what it gets, encodes each distinct (audience, action, format,
/// request_id) frame once, and shares its bytes. Formats without a `request_id` (django-rest-live)
/// share one frame per audience and action.
fn send_frames(deliveries: Vec<(&Subscriber, ChangeAction)>, change: &Change) {
    type Verdict<'c> = Option<(ChangeAction, std::borrow::Cow<'c, str>)>;
    type FrameKey<'s> = (ChangeAction, &'s str, EventFormat, &'s str);
    // (base action, audience, whether a delete carries the object) → what the audience gets.
    let mut verdicts: HashMap<(ChangeAction, &str, bool), Verdict<'_>> = HashMap::new();
    // Every frame encoded so far, and the last one used: consecutive subscribers mostly share it,
    // and comparing with it is cheaper than hashing. With a request id per subscriber (one frame
    // each) the map keeps this linear in the subscribers.
    let mut frames: HashMap<FrameKey<'_>, Bytes> = HashMap::new();
    let mut last: Option<(FrameKey<'_>, Bytes)> = None;
    for (sub, base) in deliveries {
        let format = sub.format;
        let request_id = match format {
            EventFormat::Envelope => &*sub.request_id,
            EventFormat::DjangoRestLive { .. } => "",
        };
        let key = (base, sub.audience.key.as_str(), format, request_id);
        if last.as_ref().is_none_or(|(k, _)| *k != key) {
            let frame = match frames.get(&key) {
                Some(frame) => frame.clone(),
                None => {
                    let full = format.deletes_carry_object();
                    let verdict = verdicts
                        .entry((base, key.1, full))
                        .or_insert_with(|| sub.audience.event_in(change, base, format));
                    let Some((action, data)) = verdict else {
                        continue;
                    };
                    let frame = match format {
                        EventFormat::Envelope => protocol::event_frame(
                            &change.stream,
                            *action,
                            &sub.request_id,
                            change.seq,
                            data,
                        ),
                        EventFormat::DjangoRestLive { label } => {
                            drl::event_frame(label, *action, data)
                        }
                    };
                    frames.insert(key, frame.clone());
                    frame
                }
            };
            last = Some((key, frame));
        }
        if let Some((_, frame)) = &last {
            sub.deliver(change.seq, frame.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Member, SubList};

    impl Member for (u64, String) {
        fn key(&self) -> (u64, &str) {
            (self.0, &self.1)
        }
    }

    /// The index stays exact through any sequence of adds and removes: checked against a plain
    /// list on a deterministic pseudo-random sequence that revisits the same keys often.
    #[test]
    fn sub_list_matches_a_plain_list() {
        let mut list = SubList::<(u64, String)>::default();
        let mut model: Vec<(u64, String)> = Vec::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let key = (seed % 17, format!("r{}", (seed >> 8) % 5));
            if seed & (1 << 40) == 0 {
                let fresh = !model.contains(&key);
                assert_eq!(list.insert(key.clone()), fresh, "insert {key:?} at {step}");
                if fresh {
                    model.push(key);
                }
            } else {
                let present = model.iter().position(|m| *m == key);
                assert_eq!(
                    list.remove(key.0, &key.1),
                    present.is_some(),
                    "remove {key:?}"
                );
                if let Some(i) = present {
                    model.remove(i);
                }
            }
            let mut have: Vec<_> = list.as_slice().to_vec();
            let mut want = model.clone();
            have.sort();
            want.sort();
            assert_eq!(have, want, "after step {step}");
            for (i, sub) in list.as_slice().iter().enumerate() {
                assert!(list.by_conn[&sub.0].contains(&i), "index of {sub:?}");
            }
            assert_eq!(
                list.by_conn.values().map(Vec::len).sum::<usize>(),
                model.len()
            );
        }
    }
}
