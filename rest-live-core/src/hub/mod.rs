//! The subscription index and fan-out. For each committed change it works out which subscription
//! gets `create`, `update` or `delete`, encodes each distinct frame once (with the subscriber's
//! [`EventEncoder`]: the hub knows no wire format and no connection), and pushes the shared bytes
//! into each subscriber's bounded queue ([`crate::outbox::Outbox`]). A full queue closes that
//! connection (4008); nobody waits.
//!
//! A subscription can start *pending*: it is registered (so nothing committed after its start is
//! missed) but its events are held back while the connection replays the log (`since`) or sends a
//! snapshot, then released in order, skipping what the replay or snapshot already covered.

mod audience;
mod encoder;
mod live;
mod query;
mod ring;
mod subscriber;
mod target;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::store::changelog::{Change, ChangeAction};
pub use audience::{Audience, event_data};
pub use encoder::{EventEncoder, EventParts, Spliced};
pub use live::{Snapshot, WindowRead, Work};
pub use query::LiveQuery;
pub use subscriber::{CatchUp, Subscriber};
use subscriber::{ShortId, SubList, Wakes};
pub use target::Target;

#[derive(Default)]
struct Subs {
    instance: HashMap<String, SubList>,
    group: HashMap<&'static str, HashMap<String, SubList>>,
    queries: live::Queries,
}

struct StreamHub {
    subs: RwLock<Subs>,
    /// Held while one change is judged and handed out, so that the feed and the writers that
    /// publish their own commits hand out each seq once, in order.
    publishing: Mutex<()>,
    /// The seq of the newest change handed out. Advanced while the subscription lock is held, so
    /// that a subscription registered "at S" receives exactly the changes after S.
    delivered: AtomicI64,
    /// The last changes handed out, for subscribers catching up.
    ring: Mutex<ring::Ring>,
}

/// Subscriptions of every stream. Streams are fixed when the app starts.
pub struct Hub {
    streams: HashMap<&'static str, StreamHub>,
    /// Reads that live-query windows wait for, in order (see [`Hub::next_work`]).
    work: Mutex<std::collections::VecDeque<Work>>,
    /// Wakes the feed when work is queued from outside a publish (a new window).
    work_queued: tokio::sync::Notify,
    /// Writers with events queued and not yet woken, while a burst is published (see
    /// [`Hub::hold_wakes`]).
    held: Mutex<Held>,
    /// How long a writer's wake may be held back for more of a burst: the connection's linger.
    linger: std::time::Duration,
}

/// Wakes held back during a burst.
#[derive(Default)]
struct Held {
    /// A burst is being published.
    holding: bool,
    wakes: Wakes,
    /// When the first wake held was due.
    since: Option<std::time::Instant>,
}

impl Hub {
    /// The hub of `streams`, each at the seq it has handed out up to, keeping the last `ring`
    /// changes of each in memory for subscribers that fall behind ([`Hub::recent`]), and
    /// holding writers' wakes during a burst for up to `linger` ([`Hub::hold_wakes`]).
    pub fn new(
        streams: impl IntoIterator<Item = (&'static str, i64)>,
        ring: usize,
        linger: std::time::Duration,
    ) -> Self {
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
                            ring: Mutex::new(ring::Ring::new(ring, seq)),
                        },
                    )
                })
                .collect(),
            work: Mutex::default(),
            work_queued: tokio::sync::Notify::new(),
            held: Mutex::default(),
            linger,
        }
    }

    /// A burst of changes is about to be published: the writers they reach are woken once, at
    /// [`Hub::release_wakes`] (or once a wake has waited the linger), so that each finds the
    /// whole burst queued and sends it in one write, rather than waking for each change.
    pub fn hold_wakes(&self) {
        self.held().holding = true;
    }

    /// The burst is published: wakes every writer it reached.
    pub fn release_wakes(&self) {
        self.held().holding = false;
        self.wake_held();
    }

    /// Wakes the writers held so far, holding on for the rest of the burst (before the
    /// publisher waits for something else, such as a read).
    pub fn wake_held(&self) {
        let wakes = {
            let mut held = self.held();
            held.since = None;
            std::mem::take(&mut held.wakes)
        };
        wake(wakes);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the writers of `wakes` now, or with the burst if one is held (for no longer than
    /// the linger).
    fn wake_later(&self, mut wakes: Wakes) {
        if wakes.is_empty() {
            return;
        }
        let due = {
            let mut held = self.held();
            if !held.holding {
                wakes
            } else {
                let since = *held.since.get_or_insert_with(std::time::Instant::now);
                held.wakes.append(&mut wakes);
                if since.elapsed() < self.linger {
                    return;
                }
                held.since = None;
                std::mem::take(&mut held.wakes)
            }
        };
        wake(due);
    }

    /// The seq of the newest change of `stream` handed to subscribers.
    pub fn delivered(&self, stream: &str) -> i64 {
        self.streams
            .get(stream)
            .map(|s| s.delivered.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// The changes of `stream` with `after < seq <= upto` (the first `max`), from memory, if it
    /// still holds every change after `after`; `None` when `after` has fallen off the ring (read
    /// the change log then).
    pub fn recent(
        &self,
        stream: &str,
        after: i64,
        upto: i64,
        max: usize,
    ) -> Option<Vec<std::sync::Arc<Change>>> {
        let hub = self.streams.get(stream)?;
        let ring = hub.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.after(after, upto, max)
    }

    /// Whether connection `conn` follows the group `target` of `stream` (a move between two
    /// groups it follows is one update, on the new group's subscription).
    pub fn follows(&self, stream: &str, target: &Target, conn: u64) -> bool {
        let (Some(hub), Target::Group(key, value)) = (self.streams.get(stream), target) else {
            return false;
        };
        let subs = hub.subs.read().unwrap_or_else(|p| p.into_inner());
        subs.group
            .get(key)
            .and_then(|by_value| by_value.get(value))
            .is_some_and(|list| list.has_conn(conn))
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
            Target::Query(live) => {
                let stream = self.stream_name(stream);
                let (added, work) = subs.queries.subscribe(stream, live, sub);
                if let Some(work) = work {
                    self.queue(work);
                    self.work_queued.notify_one();
                }
                return (hub.delivered.load(Ordering::Acquire), added);
            }
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
        let Subs {
            instance,
            group,
            queries,
        } = &mut *subs;
        match target {
            Target::Query(live) => queries.unsubscribe(live, conn, request_id),
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
        let mut live = Vec::new();
        let mut work = Vec::new();
        if !subs.queries.is_empty() {
            let stream = self.stream_name(&change.stream);
            subs.queries.judge(stream, change, &mut live, &mut work);
        }
        // In the ring before the seq counts as handed out: a catch-up reads up to that seq.
        hub.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
        hub.delivered.store(change.seq, Ordering::Release);
        let mut wakes = Wakes::new();
        send_frames(deliveries, change, &mut wakes);
        send_live(&change.stream, change.seq, live, &mut wakes);
        self.wake_later(wakes);
        for work in work {
            self.queue(work);
        }
        true
    }

    fn stream_name(&self, stream: &str) -> &'static str {
        self.streams
            .get_key_value(stream)
            .map(|(s, _)| *s)
            .unwrap_or("")
    }

    fn queue(&self, work: Work) {
        self.work
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(work);
    }

    /// The next read a live-query window waits for. The feed performs each (see
    /// [`Hub::read_for`], [`Hub::finish`]) before it publishes another change.
    pub fn next_work(&self) -> Option<Work> {
        self.work
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Resolves when work was queued outside a publish (a window to load).
    pub async fn work_queued(&self) {
        self.work_queued.notified().await;
    }

    /// The read `work` needs; `None` when its window no longer waits for it (every subscriber
    /// left).
    pub fn read_for(&self, work: &Work) -> Option<WindowRead> {
        let hub = self.streams.get(work.stream)?;
        let subs = hub.subs.read().unwrap_or_else(|p| p.into_inner());
        subs.queries.read_for(work)
    }

    /// Installs the result of `work`'s read and sends the events it makes (a refill's arrivals,
    /// with the seq of the change that made the window short).
    pub fn finish(
        &self,
        work: &Work,
        result: Result<(Vec<crate::resource::binding::Ranked>, i64), crate::error::ApiError>,
    ) {
        let Some(hub) = self.streams.get(work.stream) else {
            return;
        };
        let _publishing = hub.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let subs = hub.subs.read().unwrap_or_else(|p| p.into_inner());
        if let Some((view, seq, events)) = subs.queries.finish(work, result) {
            let mut wakes = Wakes::new();
            send_live(work.stream, seq, vec![(view, events)], &mut wakes);
            self.wake_later(wakes);
        }
    }

    /// Where a subscriber of the windowed query `live` (in `audience`) starts.
    pub fn snapshot(&self, stream: &str, live: &LiveQuery, audience: &str) -> Snapshot {
        let Some(hub) = self.streams.get(stream) else {
            return Snapshot::Failed;
        };
        let subs = hub.subs.read().unwrap_or_else(|p| p.into_inner());
        subs.queries
            .snapshot(live, audience, hub.delivered.load(Ordering::Acquire))
    }
}

/// Sends the events of live-query views, each to every subscriber of its view, in order. A
/// frame differs only by the subscriber's request id and encoder: consecutive subscribers that
/// share both (clients that all subscribe as `"q1"`) share the bytes.
fn send_live(
    stream: &str,
    seq: i64,
    deliveries: Vec<(&live::View, Vec<live::Event>)>,
    wakes: &mut Wakes,
) {
    for (view, events) in deliveries {
        let label = view.audience.binding.meta().label;
        for (action, data) in &events {
            let mut last: Option<((std::any::TypeId, &str), Bytes)> = None;
            let mut splices: Vec<(std::any::TypeId, Option<Spliced>)> = Vec::new();
            for sub in view.subs.as_slice() {
                let request_id = if sub.names_subscription {
                    &*sub.request_id
                } else {
                    ""
                };
                let key = (sub.format, request_id);
                let frame = match &last {
                    Some((k, frame)) if *k == key => frame.clone(),
                    _ => {
                        let parts = EventParts {
                            stream,
                            label,
                            action: *action,
                            subscription: &sub.request_id,
                            seq,
                            data,
                        };
                        let spliced = match splices.iter().position(|(f, _)| *f == sub.format) {
                            Some(i) => &splices[i].1,
                            None => {
                                splices.push((sub.format, sub.encoder.spliced(&parts)));
                                &splices[splices.len() - 1].1
                            }
                        };
                        let frame = match spliced {
                            Some(spliced) if sub.names_subscription => {
                                spliced.frame(&sub.request_id)
                            }
                            _ => sub.encoder.encode(&parts),
                        };
                        last = Some((key, frame.clone()));
                        frame
                    }
                };
                sub.deliver(seq, frame, wakes);
            }
        }
    }
}

/// How many subscribers ahead [`send_frames`] asks for a subscriber's state.
const PREFETCH_AHEAD: usize = 8;

/// Wakes each writer of `wakes`.
fn wake(wakes: Wakes) {
    for outbox in wakes {
        outbox.wake();
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
    // Nothing of it may follow the unsubscribe's reply, not even what a catch-up read again.
    removed.map(|sub| sub.end()).is_some()
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

/// Decides once per audience what it gets, encodes each distinct (audience, action, encoder,
/// request_id) frame once, and shares its bytes. Encoders that do not name the subscription
/// (django-rest-live's) share one frame per audience and action.
fn send_frames(deliveries: Vec<(&Subscriber, ChangeAction)>, change: &Change, wakes: &mut Wakes) {
    type Verdict<'c> = Option<(ChangeAction, std::borrow::Cow<'c, str>)>;
    // (base action, audience (by address: audiences are interned), encoder, request id).
    type FrameKey<'s> = (ChangeAction, usize, std::any::TypeId, &'s str);
    // (base action, audience, whether a delete carries the object) → what the audience gets.
    let mut verdicts: HashMap<(ChangeAction, &str, bool), Verdict<'_>> = HashMap::new();
    // Every frame encoded so far, and the last one used: consecutive subscribers mostly share it,
    // and comparing with it is cheaper than hashing. With a request id per subscriber (one frame
    // each) the map keeps this linear in the subscribers.
    let mut frames: HashMap<FrameKey<'_>, Bytes> = HashMap::new();
    // Per (base action, audience, encoder): the event around a hole for the request id, for
    // encoders that splice (each subscriber's frame is then one allocation and three copies).
    let mut splices: HashMap<(ChangeAction, &str, std::any::TypeId), Option<Spliced>> =
        HashMap::new();
    // The last frame, its key and the short form of its request id.
    let mut last: Option<(FrameKey<'_>, ShortId, Bytes)> = None;
    for (i, &(sub, base)) in deliveries.iter().enumerate() {
        // Each subscriber's state and queue are allocations of their own, cold among thousands:
        // ask for them a few subscribers ahead, so that the misses overlap.
        if let Some((ahead, _)) = deliveries.get(i + PREFETCH_AHEAD) {
            ahead.prefetch();
        }
        if let Some((ahead, _)) = deliveries.get(i + PREFETCH_AHEAD / 2) {
            ahead.outbox.prefetch_queue();
        }
        // Both decided once, when the subscriber registered: nothing per delivery.
        let encoder = sub.encoder;
        let (request_id, short) = if sub.names_subscription {
            (&*sub.request_id, sub.short_id)
        } else {
            ("", ShortId::EMPTY)
        };
        let key = (
            base,
            Arc::as_ptr(&sub.audience) as usize,
            sub.format,
            request_id,
        );
        // Compared without reading the subscriber's audience or (for short ids) request id:
        // each is an allocation of its own, a cache miss per subscriber among thousands.
        let same = last.as_ref().is_some_and(|(k, s, _)| {
            k.0 == key.0 && k.1 == key.1 && k.2 == key.2 && s.same(short, || k.3 == key.3)
        });
        if !same {
            let frame = match frames.get(&key) {
                Some(frame) => frame.clone(),
                None => {
                    let full = encoder.full_deletes();
                    let verdict = verdicts
                        .entry((base, sub.audience.key.as_str(), full))
                        .or_insert_with(|| sub.audience.event_in(change, base, full));
                    let Some((action, data)) = verdict else {
                        continue;
                    };
                    let parts = EventParts {
                        stream: &change.stream,
                        label: sub.audience.binding.meta().label,
                        action: *action,
                        subscription: &sub.request_id,
                        seq: change.seq,
                        data,
                    };
                    if sub.names_subscription {
                        // A frame of its own per request id: spliced, and not kept (ids rarely
                        // repeat but consecutively, which `last` catches).
                        let spliced = splices
                            .entry((base, sub.audience.key.as_str(), key.2))
                            .or_insert_with(|| encoder.spliced(&parts));
                        match spliced {
                            Some(spliced) => spliced.frame(&sub.request_id),
                            None => encoder.encode(&parts),
                        }
                    } else {
                        let frame = encoder.encode(&parts);
                        frames.insert(key, frame.clone());
                        frame
                    }
                }
            };
            last = Some((key, short, frame));
        }
        if let Some((_, _, frame)) = &last {
            sub.deliver(change.seq, frame.clone(), wakes);
        }
    }
}
