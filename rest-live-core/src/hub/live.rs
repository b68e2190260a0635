//! Live queries (PROTOCOL §4): subscriptions to the result of a query, kept true by `create`,
//! `update` and `delete` relative to that result.
//!
//! A query is shared by everyone who asks it (its [`canonical`](crate::query::canonical) text),
//! and each audience of it has one *view*: its subscribers, and, with a `limit`, its window
//! (the first `limit` rows in order: their pk, position and data as the audience sees them). A
//! change is matched once per query and decided once per view.
//!
//! Queries are indexed by one of their equality conditions (field and canonical value), so a
//! change is tried only against the queries whose equality its old or new row meets; queries
//! without one are tried against every change of the stream.
//!
//! A window is loaded, and refilled when a row leaves it, from the database. The hub does not
//! read the database: it queues the read as [`Work`], which the feed (the one task that
//! publishes) performs before it publishes the next change, so that a window sees every change
//! in order, and every event of one change goes out with that change's seq, deletes first.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::audience::{Audience, Rows};
use super::query::LiveQuery;
use super::subscriber::{SubList, Subscriber};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::meta::ResourceMeta;
use crate::query::matcher::{matches, order_positions};
use crate::query::{Query, position};
use crate::resource::binding::{Binding, Ranked};
use crate::store::changelog::{Change, ChangeAction};

/// One event of a view: the action and the data as the audience sees it (JSON text).
pub(super) type Event = (ChangeAction, Arc<str>);

fn pk_data(pk: &str) -> Arc<str> {
    Arc::from(format!("{{\"pk\":{pk}}}"))
}

/// A read of the database that a window waits for, performed by the feed.
#[derive(Debug, Clone)]
pub struct Work {
    pub(super) stream: &'static str,
    pub(super) key: Arc<str>,
    pub(super) audience: String,
    /// The view it is for (a view removed and made again is another view).
    pub(super) view: u64,
}

/// What the feed reads for a [`Work`]: rows of the query in the principal's scope after a
/// position, and, for a first load, the log's head in the same transaction.
pub struct WindowRead {
    /// The stream's resource.
    pub binding: &'static dyn Binding,
    /// Whose scope and presentation apply.
    pub principal: Principal,
    /// The live query's conditions and ordering.
    pub query: Query,
    /// Only rows after this position.
    pub after: Option<Vec<Value>>,
    /// At most this many.
    pub limit: i64,
    /// Whether the log's head is read too (a first load).
    pub head: bool,
}

/// Where a window stands.
enum State {
    /// Waiting for its first read: changes are skipped (the read sees them).
    Loading,
    Ready,
    /// Waiting for the rows that follow its last one, after the change with this seq; `undecided`
    /// is a row that was in the window and moved past its last row, which the read places.
    Refilling {
        seq: i64,
        undecided: Option<String>,
    },
    /// A read failed: its subscribers were closed.
    Failed,
}

/// The first `limit` rows of a query that an audience may read, in order.
struct Window {
    limit: usize,
    rows: Vec<Ranked>,
    /// Whether no row the audience may read follows the last one (the result has fewer than
    /// `limit` rows, or exactly `limit`).
    complete: bool,
    /// The log's head when it was loaded: its rows are at least as new as that.
    loaded_at: i64,
    state: State,
    /// Bumped when the window leaves `Loading` (subscribers waiting for it watch this).
    settled: watch::Sender<u64>,
}

impl Window {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            rows: Vec::new(),
            complete: false,
            loaded_at: 0,
            state: State::Loading,
            settled: watch::channel(0).0,
        }
    }

    fn insert(&mut self, meta: &ResourceMeta, query: &Query, row: Ranked) {
        let at = self.rows.partition_point(|r| {
            order_positions(meta, &query.ordering, &r.position, &row.position) == Ordering::Less
        });
        self.rows.insert(at, row);
    }

    /// Applies `change` to a ready window; returns its events and whether it needs the rows that
    /// follow its last one.
    fn apply(
        &mut self,
        live: &LiveQuery,
        audience: &Audience,
        change: &Change,
        rows: &Rows,
    ) -> (Vec<Event>, bool) {
        let meta = live.meta;
        let ordering = &live.query.ordering;
        let was = self.rows.iter().position(|r| r.pk == change.pk);
        if let Some(i) = was {
            self.rows.remove(i);
        }
        let new = rows
            .new
            .as_ref()
            .filter(|r| matches(meta, &live.query, r) && audience.sees(r));
        let mut events = Vec::new();
        let Some(new) = new else {
            if was.is_some() {
                events.push((ChangeAction::Delete, pk_data(&change.pk)));
                return (events, !self.complete);
            }
            return (events, false);
        };
        let position = position(meta, ordering, new);
        let before_last = self.rows.last().is_some_and(|last| {
            order_positions(meta, ordering, &position, &last.position) == Ordering::Less
        });
        let row = || Ranked {
            pk: change.pk.clone(),
            position: position.clone(),
            data: audience.data_of(change, new),
        };
        if self.rows.len() < self.limit && (self.complete || before_last) {
            let row = row();
            let action = if was.is_some() {
                ChangeAction::Update
            } else {
                ChangeAction::Create
            };
            events.push((action, row.data.clone()));
            self.insert(meta, &live.query, row);
        } else if self.rows.len() < self.limit {
            // It was in the window and moved past the last row, and rows follow that one: the
            // database says which comes first.
            self.state = State::Refilling {
                seq: change.seq,
                undecided: Some(change.pk.clone()),
            };
            return (events, true);
        } else if before_last {
            if let Some(out) = self.rows.pop() {
                events.push((ChangeAction::Delete, pk_data(&out.pk)));
            }
            self.complete = false;
            let row = row();
            events.push((ChangeAction::Create, row.data.clone()));
            self.insert(meta, &live.query, row);
        } else {
            // It reads as a row after the window.
            self.complete = false;
        }
        (events, false)
    }

    /// The rows a refill read placed after the last one; returns their events.
    fn refilled(&mut self, rows: Vec<Ranked>, asked: usize) -> Vec<Event> {
        let undecided = match std::mem::replace(&mut self.state, State::Ready) {
            State::Refilling { undecided, .. } => undecided,
            _ => None,
        };
        self.complete = rows.len() < asked;
        let mut placed = false;
        let mut arrivals = Vec::new();
        for row in rows {
            if self.rows.len() >= self.limit || self.rows.iter().any(|r| r.pk == row.pk) {
                continue;
            }
            let action = if undecided.as_deref() == Some(row.pk.as_str()) {
                placed = true;
                ChangeAction::Update
            } else {
                ChangeAction::Create
            };
            arrivals.push((action, row.data.clone()));
            self.rows.push(row);
        }
        let mut events = Vec::new();
        if let Some(pk) = undecided.filter(|_| !placed) {
            events.push((ChangeAction::Delete, pk_data(&pk)));
        }
        events.extend(arrivals);
        events
    }
}

static VIEW_IDS: AtomicU64 = AtomicU64::new(1);

/// The subscribers of one query in one audience, and their window if the query has a limit.
pub(super) struct View {
    id: u64,
    pub(super) audience: Arc<Audience>,
    pub(super) subs: SubList,
    window: Option<Mutex<Window>>,
}

/// One query and its views, by audience key.
struct Entry {
    live: Arc<LiveQuery>,
    /// The equality condition it is indexed by (field, canonical JSON value).
    index: Option<(usize, String)>,
    views: HashMap<String, View>,
}

/// The live queries of one stream.
#[derive(Default)]
pub(super) struct Queries {
    /// The stream's resource (known from the first subscription).
    meta: Option<&'static ResourceMeta>,
    entries: HashMap<Arc<str>, Entry>,
    /// Keys of the queries indexed by an equality: field → canonical value → keys.
    by_equality: HashMap<usize, HashMap<String, Vec<Arc<str>>>>,
    /// Keys of the queries with no equality condition: tried against every change.
    scan: Vec<Arc<str>>,
}

/// What a subscriber of a windowed query gets as its starting point.
pub enum Snapshot {
    /// The window's rows (as the audience sees them) and the seq they are current at.
    Ready { seq: i64, rows: Vec<Arc<str>> },
    /// Not loaded yet: wait for this to change, then ask again.
    Wait(watch::Receiver<u64>),
    /// It could not be read.
    Failed,
}

impl Queries {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `sub` to the view of `live` for its audience; returns whether it was added, and the
    /// work a new window needs.
    pub(super) fn subscribe(
        &mut self,
        stream: &'static str,
        live: &Arc<LiveQuery>,
        sub: Subscriber,
    ) -> (bool, Option<Work>) {
        let key = live.key().clone();
        self.meta = Some(live.meta);
        let entry = self.entries.entry(key.clone()).or_insert_with(|| {
            let index = live
                .query
                .equalities()
                .next()
                .map(|(field, value)| (field, value.to_string()));
            match &index {
                Some((field, value)) => self
                    .by_equality
                    .entry(*field)
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .push(key.clone()),
                None => self.scan.push(key.clone()),
            }
            Entry {
                live: live.clone(),
                index,
                views: HashMap::new(),
            }
        });
        let mut work = None;
        let audience = sub.audience.key.clone();
        let view = entry.views.entry(audience.clone()).or_insert_with(|| {
            let id = VIEW_IDS.fetch_add(1, AtomicOrdering::Relaxed);
            if live.limit.is_some() {
                work = Some(Work {
                    stream,
                    key: key.clone(),
                    audience,
                    view: id,
                });
            }
            View {
                id,
                audience: sub.audience.clone(),
                subs: SubList::default(),
                window: live.limit.map(|limit| Mutex::new(Window::new(limit))),
            }
        });
        (view.subs.insert(sub), work)
    }

    /// Removes one subscription; false when there was none.
    pub(super) fn unsubscribe(&mut self, live: &LiveQuery, conn: u64, request_id: &str) -> bool {
        let Some(entry) = self.entries.get_mut(live.key()) else {
            return false;
        };
        let mut removed = false;
        entry.views.retain(|_, view| {
            if let Some(sub) = view.subs.remove(conn, request_id) {
                sub.end();
                removed = true;
            }
            !view.subs.is_empty()
        });
        if entry.views.is_empty()
            && let Some(entry) = self.entries.remove(live.key())
        {
            let key = live.key();
            match entry.index {
                Some((field, value)) => {
                    if let Some(by_value) = self.by_equality.get_mut(&field) {
                        if let Some(keys) = by_value.get_mut(&value) {
                            keys.retain(|k| k != key);
                            if keys.is_empty() {
                                by_value.remove(&value);
                            }
                        }
                        if by_value.is_empty() {
                            self.by_equality.remove(&field);
                        }
                    }
                }
                None => self.scan.retain(|k| k != key),
            }
        }
        removed
    }

    /// The starting point of a subscriber of `live` in `audience` (a windowed query).
    pub(super) fn snapshot(&self, live: &LiveQuery, audience: &str, delivered: i64) -> Snapshot {
        let window = self
            .entries
            .get(live.key())
            .and_then(|e| e.views.get(audience))
            .and_then(|v| v.window.as_ref());
        let Some(window) = window else {
            return Snapshot::Failed;
        };
        let window = window.lock().unwrap_or_else(|p| p.into_inner());
        match window.state {
            State::Ready => Snapshot::Ready {
                seq: delivered.max(window.loaded_at),
                rows: window.rows.iter().map(|r| r.data.clone()).collect(),
            },
            State::Failed => Snapshot::Failed,
            State::Loading | State::Refilling { .. } => Snapshot::Wait(window.settled.subscribe()),
        }
    }

    /// The events of `change` for every view it can affect, and the reads windows need.
    pub(super) fn judge<'a>(
        &'a self,
        stream: &'static str,
        change: &Change,
        out: &mut Vec<(&'a View, Vec<Event>)>,
        work: &mut Vec<Work>,
    ) {
        let rows = Rows::of(change);
        let mut candidates: Vec<&Arc<str>> = self.scan.iter().collect();
        for (field, by_value) in &self.by_equality {
            let name = self.meta_name(*field);
            let value = |row: &Option<Map<String, Value>>| {
                row.as_ref()
                    .and_then(|r| r.get(name?))
                    .map(Value::to_string)
            };
            let (old, new) = (value(&rows.old), value(&rows.new));
            for v in [&old, &new].into_iter().flatten() {
                if let Some(keys) = by_value.get(v) {
                    candidates.extend(keys);
                }
                if old == new {
                    break;
                }
            }
        }
        for key in candidates {
            let Some(entry) = self.entries.get(key) else {
                continue;
            };
            let base = entry.live.base_action_of(&rows);
            for view in entry.views.values() {
                let events = match &view.window {
                    None => {
                        let Some(base) = base else { continue };
                        match view.audience.event_of(change, base, &rows) {
                            Some((action, data)) => vec![(action, Arc::from(data.as_ref()))],
                            None => continue,
                        }
                    }
                    Some(window) => {
                        let mut window = window.lock().unwrap_or_else(|p| p.into_inner());
                        if !matches!(window.state, State::Ready) {
                            continue;
                        }
                        if base.is_none() && !window.rows.iter().any(|r| r.pk == change.pk) {
                            continue;
                        }
                        let (events, refill) =
                            window.apply(&entry.live, &view.audience, change, &rows);
                        if refill {
                            if matches!(window.state, State::Ready) {
                                window.state = State::Refilling {
                                    seq: change.seq,
                                    undecided: None,
                                };
                            }
                            work.push(Work {
                                stream,
                                key: key.clone(),
                                audience: view.audience.key.clone(),
                                view: view.id,
                            });
                        }
                        events
                    }
                };
                if !events.is_empty() {
                    out.push((view, events));
                }
            }
        }
    }

    /// The name of field `index` of this stream's resource.
    fn meta_name(&self, index: usize) -> Option<&'static str> {
        self.meta?.fields.get(index).map(|f| f.name)
    }

    fn view(&self, work: &Work) -> Option<(&Entry, &View)> {
        let entry = self.entries.get(&work.key)?;
        let view = entry.views.get(&work.audience)?;
        (view.id == work.view).then_some((entry, view))
    }

    /// The read `work` needs, if its view is still waiting for it.
    pub(super) fn read_for(&self, work: &Work) -> Option<WindowRead> {
        let (entry, view) = self.view(work)?;
        let window = view
            .window
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (after, limit, head) = match window.state {
            State::Loading => (None, window.limit, true),
            State::Refilling { .. } => (
                window.rows.last().map(|r| r.position.clone()),
                window.limit - window.rows.len(),
                false,
            ),
            State::Ready | State::Failed => return None,
        };
        Some(WindowRead {
            binding: view.audience.binding,
            principal: view.audience.principal.clone(),
            query: entry.live.query.clone(),
            after,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            head,
        })
    }

    /// Installs what the read for `work` returned; returns the view and the events to send with
    /// their seq.
    pub(super) fn finish(
        &self,
        work: &Work,
        result: Result<(Vec<Ranked>, i64), ApiError>,
    ) -> Option<(&View, i64, Vec<Event>)> {
        let (_, view) = self.view(work)?;
        let mut window = view
            .window
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (rows, head) = match result {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(%error, stream = work.stream, "a live query's window could not be read; closing its subscribers");
                window.state = State::Failed;
                window.settled.send_modify(|v| *v += 1);
                for sub in view.subs.as_slice() {
                    sub.outbox.close(crate::outbox::CloseReason::INTERNAL);
                }
                return None;
            }
        };
        match window.state {
            State::Loading => {
                window.complete = rows.len() < window.limit;
                window.rows = rows;
                window.loaded_at = head;
                window.state = State::Ready;
                window.settled.send_modify(|v| *v += 1);
                None
            }
            State::Refilling { seq, .. } => {
                let asked = window.limit - window.rows.len();
                let events = window.refilled(rows, asked);
                window.settled.send_modify(|v| *v += 1);
                Some((view, seq, events))
            }
            State::Ready | State::Failed => None,
        }
    }
}
