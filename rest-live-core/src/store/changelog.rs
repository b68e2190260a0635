//! The change log (outbox): one row per write, appended in the writing transaction, with a sequence
//! number strictly increasing per stream. It is the single source of events.
//!
//! Why seq follows commit order (and why the feed can follow `seq` without ever skipping a change
//! that commits late): a writer takes `seq` by incrementing its stream's counter row in
//! `rest_live_streams`, which locks that row until the transaction ends. A second writer of the
//! same stream waits on that lock, and only reads the counter after the first one committed or
//! rolled back. So the committed seqs of a stream are always exactly 1..=head, with no hole for a
//! reader to step over: a reader that has seen seq N can ask for `seq > N` and miss nothing.
//! (A PostgreSQL sequence or `BIGSERIAL` would not do: those are handed out at insert, not at
//! commit, so a reader could see 8 before 7 commits.) The price is that writes of one stream are
//! serialized; writes of different streams are not. On SQLite all writers are serialized anyway.
// Hidden from the documentation: the change log's table and rows, exposed only to tests (`__internals`).
#![allow(missing_docs)]

use diesel::prelude::*;

use super::conn::AnyConn;

diesel::table! {
    rest_live_streams (stream) {
        stream -> Text,
        last_seq -> BigInt,
    }
}

diesel::table! {
    rest_live_changes (id) {
        id -> BigInt,
        stream -> Text,
        seq -> BigInt,
        action -> Text,
        pk -> Text,
        old_groups -> Nullable<Text>,
        new_groups -> Nullable<Text>,
        row -> Text,
        old_row -> Nullable<Text>,
        committed_at -> BigInt,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// A change about to be appended.
pub struct NewChange {
    pub stream: &'static str,
    pub action: ChangeAction,
    /// The primary key as JSON.
    pub pk: String,
    /// Group-key values before the change (`{"list_id": 1}`), for updates and deletes.
    pub old_groups: Option<String>,
    /// Group-key values after the change, for creates and updates.
    pub new_groups: Option<String>,
    /// The row as JSON: the new row, or for a delete the row as it was.
    pub row: String,
    /// For an update, the row before it.
    pub old_row: Option<String>,
    pub committed_at: i64,
}

/// A committed change, read back from the log.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: i64,
    pub stream: String,
    pub seq: i64,
    pub action: ChangeAction,
    pub pk: String,
    pub old_groups: Option<String>,
    pub new_groups: Option<String>,
    pub row: String,
    pub old_row: Option<String>,
    pub committed_at: i64,
}

type ChangeRow = (
    i64,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
);

fn from_row(r: ChangeRow) -> Option<Change> {
    Some(Change {
        id: r.0,
        stream: r.1,
        seq: r.2,
        action: ChangeAction::parse(&r.3)?,
        pk: r.4,
        old_groups: r.5,
        new_groups: r.6,
        row: r.7,
        old_row: r.8,
        committed_at: r.9,
    })
}

/// Creates the counter row of each stream that has none.
pub fn ensure_streams(mut conn: AnyConn<'_>, streams: &[&str]) -> QueryResult<()> {
    use rest_live_streams::dsl;
    for name in streams {
        let row = (dsl::stream.eq(*name), dsl::last_seq.eq(0i64));
        match conn.reborrow() {
            AnyConn::Sqlite(c) => {
                diesel::insert_or_ignore_into(dsl::rest_live_streams)
                    .values(row)
                    .execute(c)?;
            }
            #[cfg(feature = "postgres")]
            AnyConn::Pg(c) => {
                diesel::insert_into(dsl::rest_live_streams)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// Takes the write lock of `stream` for the rest of the transaction (PostgreSQL: its counter row,
/// which every write of the stream updates anyway). A no-op on SQLite, whose writers are serial.
pub fn lock_stream(conn: AnyConn<'_>, stream: &str) -> QueryResult<()> {
    match conn {
        AnyConn::Sqlite(_) => {
            let _ = stream;
            Ok(())
        }
        #[cfg(feature = "postgres")]
        AnyConn::Pg(c) => {
            use rest_live_streams::dsl as st;
            st::rest_live_streams
                .find(stream)
                .select(st::last_seq)
                .for_update()
                .first::<i64>(c)
                .optional()
                .map(|_| ())
        }
    }
}

/// The channel other processes LISTEN on; notified (with no payload: they re-read the log) by
/// every transaction that appended changes, at its commit.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub const NOTIFY_CHANNEL: &str = "rest_live_changes";

/// Tells the other processes (PostgreSQL) that this transaction appended changes; delivered at
/// its commit. SQLite has no other processes to tell: a no-op.
pub fn notify_commit(conn: AnyConn<'_>) -> QueryResult<()> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConn::Pg(c) => {
            diesel::sql_query(format!("NOTIFY {NOTIFY_CHANNEL}")).execute(c)?;
            Ok(())
        }
        AnyConn::Sqlite(_) => Ok(()),
    }
}

/// Appends `change` in the caller's transaction and returns its `seq`.
pub fn append(conn: AnyConn<'_>, change: &NewChange) -> QueryResult<(i64, i64)> {
    use rest_live_changes::dsl as ch;
    use rest_live_streams::dsl as st;
    crate::__with_conn!(conn, |c| {
        let seq: i64 = diesel::update(st::rest_live_streams.find(change.stream))
            .set(st::last_seq.eq(st::last_seq + 1))
            .returning(st::last_seq)
            .get_result(c)?;
        let id: i64 = diesel::insert_into(ch::rest_live_changes)
            .values((
                ch::stream.eq(change.stream),
                ch::seq.eq(seq),
                ch::action.eq(change.action.as_str()),
                ch::pk.eq(&change.pk),
                ch::old_groups.eq(&change.old_groups),
                ch::new_groups.eq(&change.new_groups),
                ch::row.eq(&change.row),
                ch::old_row.eq(&change.old_row),
                ch::committed_at.eq(change.committed_at),
            ))
            .returning(ch::id)
            .get_result(c)?;
        Ok((id, seq))
    })
}

impl NewChange {
    /// The change as it reads back from the log once committed, given its id and seq.
    pub fn into_change(self, id: i64, seq: i64) -> Change {
        Change {
            id,
            stream: self.stream.to_owned(),
            seq,
            action: self.action,
            pk: self.pk,
            old_groups: self.old_groups,
            new_groups: self.new_groups,
            row: self.row,
            old_row: self.old_row,
            committed_at: self.committed_at,
        }
    }
}

/// The position the feed starts from: the newest change id, and each stream's last seq.
pub fn heads(conn: AnyConn<'_>) -> QueryResult<(i64, Vec<(String, i64)>)> {
    use rest_live_changes::dsl as ch;
    use rest_live_streams::dsl as st;
    crate::__with_conn!(conn, |c| {
        let max_id: Option<i64> = ch::rest_live_changes
            .select(diesel::dsl::max(ch::id))
            .first(c)?;
        let seqs = st::rest_live_streams
            .select((st::stream, st::last_seq))
            .load(c)?;
        Ok((max_id.unwrap_or(0), seqs))
    })
}

/// Changes of one stream with `after < seq <= upto`, in seq order, at most `limit`.
///
/// Seqs have no gaps, so callers bound a batch by `upto` (`after + n`) rather than by `limit`:
/// SQLite re-prepares a statement with a bound LIMIT on every run, and this one runs per commit.
pub fn read_stream(
    conn: AnyConn<'_>,
    stream: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<Change>> {
    use rest_live_changes::dsl as ch;
    let needs_limit = upto.saturating_sub(after) > limit;
    let rows: Vec<ChangeRow> = crate::__with_conn!(conn, |c| {
        let query = ch::rest_live_changes
            .filter(ch::stream.eq(stream))
            .filter(ch::seq.gt(after))
            .filter(ch::seq.le(upto))
            .order(ch::seq.asc())
            .into_boxed::<__Backend>();
        if needs_limit {
            query.limit(limit).load(c)
        } else {
            query.load(c)
        }
    })?;
    Ok(rows.into_iter().filter_map(from_row).collect())
}

/// How many changes of `stream` with `after < seq <= upto` the log still holds. Seqs of a stream
/// have no gaps (a rolled-back write rolls back its seq too), so the log reaches back to `after`
/// exactly when this is `upto - after`.
pub fn count_stream(conn: AnyConn<'_>, stream: &str, after: i64, upto: i64) -> QueryResult<i64> {
    use rest_live_changes::dsl as ch;
    crate::__with_conn!(conn, |c| {
        ch::rest_live_changes
            .filter(ch::stream.eq(stream))
            .filter(ch::seq.gt(after))
            .filter(ch::seq.le(upto))
            .count()
            .get_result(c)
    })
}

/// The last committed seq of `stream` (as seen by the caller's transaction).
pub fn stream_head(conn: AnyConn<'_>, stream: &str) -> QueryResult<i64> {
    use rest_live_streams::dsl as st;
    let seq: Option<i64> = crate::__with_conn!(conn, |c| {
        st::rest_live_streams
            .find(stream)
            .select(st::last_seq)
            .get_result(c)
            .optional()
    })?;
    Ok(seq.unwrap_or(0))
}

/// Whether a client that has seen `since` of `stream` (whose head is `head`) can resume from it:
/// the log holds every change in `(since, head]`, and retention keeps them all. Retention is
/// applied here as a rule, not only by deleting rows: a `since` before the newest `keep_rows`
/// changes, or whose next change was committed before `cutoff_ms`, cannot resume even while the
/// pruner has not yet deleted what it will. So the answer does not depend on when it ran.
pub fn can_resume(
    mut conn: AnyConn<'_>,
    stream: &str,
    since: i64,
    head: i64,
    keep_rows: Option<i64>,
    cutoff_ms: Option<i64>,
) -> QueryResult<bool> {
    use rest_live_changes::dsl as ch;
    if since > head {
        // A seq this log never handed out.
        return Ok(false);
    }
    if since == head {
        return Ok(true);
    }
    if keep_rows.is_some_and(|keep| since < head.saturating_sub(keep)) {
        return Ok(false);
    }
    if let Some(cutoff) = cutoff_ms {
        let next: Option<i64> = crate::__with_conn!(conn.reborrow(), |c| {
            ch::rest_live_changes
                .filter(ch::stream.eq(stream))
                .filter(ch::seq.eq(since + 1))
                .select(ch::committed_at)
                .first(c)
                .optional()
        })?;
        // Later changes are newer: the next one is the oldest a resume needs.
        if next.is_none_or(|at| at < cutoff) {
            return Ok(false);
        }
    }
    Ok(count_stream(conn, stream, since, head)? == head - since)
}

/// Deletes the oldest changes of `stream` with `seq <= upto`, at most `batch` of them (one short
/// transaction's worth, so that writers get their turn between batches). Returns how many went;
/// fewer than `batch` means none is left.
pub fn prune_stream(conn: AnyConn<'_>, stream: &str, upto: i64, batch: i64) -> QueryResult<usize> {
    use rest_live_changes::dsl as ch;
    crate::__with_conn!(conn, |c| {
        // Seqs have no gaps, so the batch is a seq range from the oldest one kept (found on the
        // `(stream, seq)` index), not a LIMIT.
        let oldest: Option<i64> = ch::rest_live_changes
            .filter(ch::stream.eq(stream))
            .select(diesel::dsl::min(ch::seq))
            .first(c)?;
        let Some(oldest) = oldest.filter(|o| *o <= upto) else {
            return Ok(0);
        };
        let last = upto.min(oldest.saturating_add(batch - 1));
        diesel::delete(
            ch::rest_live_changes
                .filter(ch::stream.eq(stream))
                .filter(ch::seq.ge(oldest))
                .filter(ch::seq.le(last)),
        )
        .execute(c)
    })
}

/// Deletes changes committed before `cutoff_ms`, at most `batch` of them (see [`prune_stream`]).
pub fn prune_aged(conn: AnyConn<'_>, cutoff_ms: i64, batch: i64) -> QueryResult<usize> {
    use rest_live_changes::dsl as ch;
    crate::__with_conn!(conn, |c| {
        let ids: Vec<i64> = ch::rest_live_changes
            .filter(ch::committed_at.lt(cutoff_ms))
            .select(ch::id)
            .order(ch::committed_at.asc())
            .limit(batch)
            .load(c)?;
        if ids.is_empty() {
            return Ok(0);
        }
        diesel::delete(ch::rest_live_changes.filter(ch::id.eq_any(&ids))).execute(c)
    })
}
