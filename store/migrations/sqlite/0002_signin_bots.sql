-- Browser sessions: only a keyed hash of the session id is kept, so a copy
-- of the database signs no one in. A user's sessions go with the user.
CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- A user's Zoom OAuth tokens, each sealed with AES-GCM (ONAIR_SECRET_KEY).
CREATE TABLE zoom_tokens (
	user_id    TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
	access     BLOB NOT NULL,
	refresh    BLOB NOT NULL,
	expires_at INTEGER NOT NULL,
	scope      TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL
);

-- "Send the bot" requests. At most one active request per user and meeting;
-- an ended one (left, failed, cancelled) stays for the record. n orders
-- requests made within the same millisecond.
CREATE TABLE bot_requests (
	n            INTEGER PRIMARY KEY,
	id           TEXT NOT NULL UNIQUE,
	user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	meeting_uuid TEXT NOT NULL,
	state        TEXT NOT NULL,
	detail       TEXT NOT NULL DEFAULT '',
	active       INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX bot_requests_active ON bot_requests (user_id, meeting_uuid) WHERE active = 1;
CREATE INDEX bot_requests_meeting ON bot_requests (meeting_uuid);
