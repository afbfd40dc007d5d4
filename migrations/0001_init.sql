-- audsync schema 1: destinations, Webhook Audiences registrations, segments,
-- memberships (desired vs acknowledged state) and the de-duplication log.

CREATE TABLE destinations (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL DEFAULT 'ok',   -- ok | auth_failed
    last_success_ms INTEGER,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL
) STRICT;

-- Audiences created through the Webhook Audiences createAudienceUrl call.
CREATE TABLE audiences (
    destination  TEXT NOT NULL REFERENCES destinations(id),
    external_id  TEXT NOT NULL,
    name         TEXT NOT NULL,
    extras       TEXT NOT NULL,   -- the JSON object the user typed into Segment
    context_kind TEXT,            -- extras.contextKind, when valid
    created_ms   INTEGER NOT NULL,
    PRIMARY KEY (destination, external_id),
    UNIQUE (destination, name)
) STRICT;

-- One synced segment: an audience seen with one context kind at one destination.
CREATE TABLE segments (
    id           INTEGER PRIMARY KEY,
    destination  TEXT NOT NULL REFERENCES destinations(id),
    audience_id  TEXT NOT NULL,
    audience_key TEXT NOT NULL,
    context_kind TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    UNIQUE (destination, audience_id, context_kind)
) STRICT;

-- Desired state (decided by the newest event) beside the state the platform
-- acknowledged. `version` grows with every change of `desired`; a push records its
-- acknowledgement only for the version it carried.
CREATE TABLE memberships (
    segment_id      INTEGER NOT NULL REFERENCES segments(id),
    context_key     TEXT NOT NULL,
    desired         INTEGER NOT NULL,   -- 1 included, 0 excluded
    version         INTEGER NOT NULL,
    message_id      TEXT NOT NULL,      -- the deciding event
    event_ms        INTEGER NOT NULL,
    received_ms     INTEGER NOT NULL,
    acked           INTEGER,            -- NULL: never acknowledged
    acked_version   INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    dead            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (segment_id, context_key)
) STRICT, WITHOUT ROWID;

CREATE INDEX memberships_dirty ON memberships (segment_id, next_attempt_ms)
    WHERE acked IS NOT desired;

-- Every membership event applied or found stale, for de-duplication by messageId
-- (pruned after the configured window) and for inspection.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    event_ms    INTEGER NOT NULL,
    outcome     TEXT NOT NULL,   -- accepted | stale
    segment_id  INTEGER,
    context_key TEXT,
    raw         TEXT NOT NULL,
    UNIQUE (destination, message_id)
) STRICT;

CREATE INDEX events_received ON events (received_ms);
