-- What must reach the bot launcher, durably: the request itself
-- (bot.requested) and the notices that follow it (owner.left,
-- meeting.ended, bot.cancelled). A row leaves when the launcher answered
-- 2xx, or when it is given up.
CREATE TABLE bot_outbox (
	n          INTEGER PRIMARY KEY,
	request_id TEXT NOT NULL REFERENCES bot_requests (id) ON DELETE CASCADE,
	type       TEXT NOT NULL,
	body       TEXT NOT NULL DEFAULT '', -- built once, so every retry sends the same request
	detail     TEXT NOT NULL DEFAULT '', -- what the built request lacks, for the bot's detail
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_at    INTEGER NOT NULL,
	last_error TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	UNIQUE (request_id, type)
);
CREATE INDEX bot_outbox_due ON bot_outbox (next_at);

-- sent: the launcher has the request (it answered 2xx once), so later
-- changes must be told to it.
ALTER TABLE bot_requests ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
