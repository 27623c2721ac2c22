-- When the user's live meetings were last checked against Zoom's API: the
-- throttle of a reconnect storm, kept across restarts.
ALTER TABLE users ADD COLUMN reconciled_at BIGINT NOT NULL DEFAULT 0;
