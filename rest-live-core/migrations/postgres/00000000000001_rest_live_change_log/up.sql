-- rest-live's own tables. The change log is the outbox: every write made through the framework appends
-- one row here in the same transaction, and events are produced from committed rows only.
-- `rest_live_streams.last_seq` is each stream's counter; updating it locks the row until commit,
-- which is what keeps seqs in commit order (see changelog.rs).
CREATE TABLE rest_live_streams (
    stream TEXT PRIMARY KEY NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE rest_live_changes (
    id BIGSERIAL PRIMARY KEY,
    stream TEXT NOT NULL,
    seq BIGINT NOT NULL,
    action TEXT NOT NULL,
    pk TEXT NOT NULL,
    old_groups TEXT,
    new_groups TEXT,
    row TEXT NOT NULL,
    -- For an update: the row before it (who could see it then decides who hears about it).
    old_row TEXT,
    committed_at BIGINT NOT NULL,
    UNIQUE (stream, seq)
);

-- Pruning by age.
CREATE INDEX rest_live_changes_committed_at ON rest_live_changes (committed_at);
