-- audsync schema 6: reports of synced changes back into Segment (report_to_segment).
-- A row is written in the same transaction as the acknowledgement it reports, so a
-- change a target acknowledged is reported even across a crash, and a change no target
-- acknowledged never is. `message_id` is derived from the change (destination, segment,
-- member, target, version, deciding event): the same change always gets the same id, and
-- the unique index keeps it from being queued twice while its row is kept (sent rows stay
-- for the de-duplication window, without their payload fields being needed again).

CREATE TABLE reports (
    id                  INTEGER PRIMARY KEY,
    destination         TEXT NOT NULL,
    message_id          TEXT NOT NULL,
    state               INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 sent, 2 dead, 3 discarded
    user_id             TEXT NOT NULL,               -- the context key
    audience_id         TEXT NOT NULL,
    audience_key        TEXT NOT NULL,
    context_kind        TEXT NOT NULL,
    target              TEXT NOT NULL,
    platform            TEXT NOT NULL,
    included            INTEGER NOT NULL,
    deciding_message_id TEXT,
    synced_ms           INTEGER NOT NULL,
    done_ms             INTEGER,                     -- sent, dead or discarded at
    last_status         INTEGER,
    last_error          TEXT
) STRICT;

CREATE UNIQUE INDEX reports_message ON reports (destination, message_id);
CREATE INDEX reports_pending ON reports (destination, id) WHERE state = 0;
CREATE INDEX reports_dead ON reports (destination, id) WHERE state = 2;
CREATE INDEX reports_done ON reports (done_ms) WHERE state IN (1, 3);

-- The reporter's health per destination, for operators (REST, CLI, metrics).
CREATE TABLE report_status (
    destination     TEXT PRIMARY KEY,
    status          TEXT NOT NULL DEFAULT 'ok',  -- ok | retrying | rate_limited | auth_failed
    paused_until_ms INTEGER NOT NULL DEFAULT 0,
    last_success_ms INTEGER,
    last_error      TEXT
) STRICT;
