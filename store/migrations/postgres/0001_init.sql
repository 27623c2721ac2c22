-- Times are milliseconds since the Unix epoch (UTC) in BIGINT columns; the
-- statements are the same as on SQLite.

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

-- A user is a Zoom user id. seq is the last event-log position handed out;
-- gen changes when the user's log starts over (after a deauthorization).
CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	email         TEXT NOT NULL DEFAULT '',
	name          TEXT NOT NULL DEFAULT '',
	auto_send_bot BIGINT NOT NULL DEFAULT 0,
	seq           BIGINT NOT NULL DEFAULT 0,
	gen           TEXT NOT NULL,
	created_at    BIGINT NOT NULL
);

-- One row per meeting occurrence (uuid). ended is final. info_rank and
-- start_rank say how trustworthy the stored fields are, so that deliveries
-- in any order merge to the same row.
CREATE TABLE meetings (
	uuid        TEXT PRIMARY KEY,
	id          TEXT NOT NULL DEFAULT '',
	topic       TEXT NOT NULL DEFAULT '',
	host_id     TEXT NOT NULL DEFAULT '',
	type        BIGINT NOT NULL DEFAULT 0,
	start_time  BIGINT NOT NULL DEFAULT 0,
	end_time    BIGINT,
	duration    BIGINT NOT NULL DEFAULT 0,
	timezone    TEXT NOT NULL DEFAULT '',
	info_rank   BIGINT NOT NULL DEFAULT 0,
	start_rank  BIGINT NOT NULL DEFAULT 0,
	live        BIGINT NOT NULL DEFAULT 0,
	ended       BIGINT NOT NULL DEFAULT 0,
	updated_at  BIGINT NOT NULL
);
CREATE INDEX meetings_ended ON meetings (ended, updated_at);

-- Who is in which meeting. For participants, last_ts/last_kind is the newest
-- join or leave seen, so a late retry of an older one changes nothing.
CREATE TABLE meeting_members (
	meeting_uuid TEXT NOT NULL REFERENCES meetings (uuid) ON DELETE CASCADE,
	user_id      TEXT NOT NULL,
	role         TEXT NOT NULL,
	in_meeting   BIGINT NOT NULL DEFAULT 0,
	last_ts      BIGINT NOT NULL DEFAULT 0,
	last_kind    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (meeting_uuid, user_id)
);
CREATE INDEX meeting_members_user ON meeting_members (user_id, in_meeting);

-- The per-user event log: frames by (user, seq), gap-free per user.
CREATE TABLE events (
	user_id    TEXT NOT NULL,
	seq        BIGINT NOT NULL,
	type       TEXT NOT NULL,
	at         BIGINT NOT NULL,
	data       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (user_id, seq)
);
CREATE INDEX events_created ON events (created_at);

-- Deduplication of webhook deliveries: key is a keyed hash of what makes a
-- delivery the same (event, event_ts, object uuid, participant).
CREATE TABLE deliveries (
	key         TEXT PRIMARY KEY,
	event       TEXT NOT NULL,
	received_at BIGINT NOT NULL
);
CREATE INDEX deliveries_received ON deliveries (received_at);

-- Deauthorized users, known only by a keyed hash of their id.
CREATE TABLE deauthorizations (
	user_hash       TEXT PRIMARY KEY,
	deauthorized_at BIGINT NOT NULL,
	returned_at     BIGINT NOT NULL DEFAULT 0
);
