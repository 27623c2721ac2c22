-- A welcome reads the newest request of each of the user's meetings: by
-- user, then meeting, then insertion order (without it, a table scan).
CREATE INDEX bot_requests_user ON bot_requests (user_id, meeting_uuid, n);
