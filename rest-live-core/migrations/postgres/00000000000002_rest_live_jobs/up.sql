-- Background jobs: persisted so they survive a restart; their state is the live stream "jobs".
CREATE TABLE rest_live_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    stream TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The object (pk as JSON) for a job on one object.
    pk TEXT,
    args TEXT NOT NULL,
    -- PENDING, STARTED, SUCCESS, FAILURE or CANCELLED.
    state TEXT NOT NULL,
    result TEXT,
    error TEXT,
    -- Who started it (principal id), and the whole principal the job runs as (JSON).
    owner TEXT,
    principal TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- The process running it, and when that process last said it still does.
    worker TEXT,
    heartbeat_at BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);

CREATE INDEX rest_live_jobs_state ON rest_live_jobs (state, created_at);
