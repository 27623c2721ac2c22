package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Roles of a user in a live meeting.
const (
	RoleHost        = "host"
	RoleParticipant = "participant"
)

// Meeting is one occurrence of a Zoom meeting as a user sees it.
type Meeting struct {
	UUID      string `json:"uuid"`
	ID        string `json:"id"`
	Topic     string `json:"topic"`
	HostID    string `json:"host_id"`
	Type      int    `json:"type"`
	StartTime Time   `json:"start_time"`
	EndTime   *Time  `json:"end_time,omitempty"`
	Duration  int    `json:"duration"`
	Timezone  string `json:"timezone"`
	Role      string `json:"role"`
	Live      bool   `json:"live"`
}

// Time marshals as RFC 3339 in UTC with milliseconds, as every API answer and frame does.
type Time struct{ time.Time }

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(timeLayout) + `"`), nil
}

func (t *Time) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' {
		return fmt.Errorf("time: want a string, got %s", b)
	}
	v, err := time.Parse(time.RFC3339Nano, string(b[1:len(b)-1]))
	t.Time = v
	return err
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// MeetingInfo is what a delivery says about a meeting. Rank says how much to
// trust it: started and ended events (2) over participant events (1);
// StartRank likewise for StartTime, 0 when it is only the event's time.
type MeetingInfo struct {
	UUID      string
	ID        string
	Topic     string
	HostID    string
	Type      int
	StartTime time.Time
	EndTime   time.Time // zero unless the event carries one
	Duration  int
	Timezone  string
	Rank      int
	StartRank int
}

// meetingRow is a meetings row.
type meetingRow struct {
	MeetingInfo
	n      int64 // the internal number members are keyed by; 0 until saved
	exists bool
	live   bool
	ended  bool
	endMS  sql.NullInt64
}

const meetingColumns = `uuid, id, topic, host_id, type, start_time, end_time, duration, timezone, info_rank, start_rank, live, ended`

// scanMeetingRow reads meetingColumns, then the columns after them into
// extra.
func scanMeetingRow(sc interface{ Scan(...any) error }, extra ...any) (meetingRow, error) {
	var m meetingRow
	var start int64
	dest := make([]any, 0, 13+len(extra))
	dest = append(dest, &m.UUID, &m.ID, &m.Topic, &m.HostID, &m.Type, &start, &m.endMS, &m.Duration, &m.Timezone,
		&m.Rank, &m.StartRank, &m.live, &m.ended)
	err := sc.Scan(append(dest, extra...)...)
	if err != nil {
		return m, err
	}
	m.exists = true
	m.StartTime = time.UnixMilli(start).UTC()
	if m.endMS.Valid {
		m.EndTime = time.UnixMilli(m.endMS.Int64).UTC()
	}
	return m, nil
}

func (tx *Tx) meeting(uuid string) (meetingRow, error) {
	var n int64
	m, err := scanMeetingRow(tx.queryRow(`SELECT `+meetingColumns+`, n FROM meetings WHERE uuid = ?`, uuid), &n)
	if err == sql.ErrNoRows {
		return meetingRow{}, nil
	}
	m.n = n
	return m, err
}

// merge folds what a delivery says into the stored row so that any order of
// deliveries gives the same row: a higher rank replaces, an equal rank only
// fills gaps, and fallback start times keep the earliest.
func (m *meetingRow) merge(in MeetingInfo) {
	if !m.exists {
		m.MeetingInfo = in
		m.EndTime = time.Time{}
		m.exists = true
	} else if in.Rank > m.Rank {
		m.ID, m.Topic, m.HostID, m.Type, m.Duration, m.Timezone, m.Rank =
			in.ID, in.Topic, in.HostID, in.Type, in.Duration, in.Timezone, in.Rank
	} else if in.Rank == m.Rank {
		fill(&m.ID, in.ID)
		fill(&m.Topic, in.Topic)
		fill(&m.HostID, in.HostID)
		fill(&m.Timezone, in.Timezone)
		if m.Type == 0 {
			m.Type = in.Type
		}
		if m.Duration == 0 {
			m.Duration = in.Duration
		}
	}
	switch {
	case in.StartTime.IsZero(): // says nothing about the start (an end repair)
	case in.StartRank > m.StartRank:
		m.StartTime, m.StartRank = in.StartTime, in.StartRank
	case in.StartRank == m.StartRank && in.StartTime.Before(m.StartTime):
		m.StartTime = in.StartTime
	}
}

func fill(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

const qSaveMeeting = `INSERT INTO meetings (` + meetingColumns + `, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (uuid) DO UPDATE SET id = excluded.id, topic = excluded.topic, host_id = excluded.host_id,
			type = excluded.type, start_time = excluded.start_time, end_time = excluded.end_time,
			duration = excluded.duration, timezone = excluded.timezone, info_rank = excluded.info_rank,
			start_rank = excluded.start_rank, live = excluded.live, ended = excluded.ended, updated_at = excluded.updated_at`

// saveMeeting writes m; a new meeting learns its number from the insert.
func (tx *Tx) saveMeeting(m *meetingRow) error {
	var end any
	if m.ended && !m.EndTime.IsZero() {
		end = ms(m.EndTime)
	}
	args := []any{m.UUID, m.ID, m.Topic, m.HostID, m.Type, ms(m.StartTime), end, m.Duration, m.Timezone,
		m.Rank, m.StartRank, m.live, m.ended, ms(tx.now)}
	var err error
	if m.n != 0 {
		_, err = tx.exec(qSaveMeeting, args...)
	} else {
		err = tx.queryRow(qSaveMeeting+` RETURNING n`, args...).Scan(&m.n)
	}
	if err != nil {
		return fmt.Errorf("save meeting: %w", err)
	}
	return nil
}

// view is the meeting as the user in role sees it.
func (m *meetingRow) view(role string) Meeting {
	v := Meeting{
		UUID: m.UUID, ID: m.ID, Topic: m.Topic, HostID: m.HostID, Type: m.Type,
		StartTime: Time{m.StartTime}, Duration: m.Duration, Timezone: m.Timezone,
		Role: role, Live: m.live,
	}
	if m.ended && !m.EndTime.IsZero() {
		v.EndTime = &Time{m.EndTime}
	}
	return v
}

// LiveMeetings returns the user's live meetings, newest start first.
func (s *Store) LiveMeetings(ctx context.Context, user string) ([]Meeting, error) {
	return liveMeetings(ctx, s.read, user)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const qLiveMeetings = `SELECT m.uuid, m.id, m.topic, m.host_id, m.type, m.start_time, m.end_time,
			m.duration, m.timezone, m.info_rank, m.start_rank, m.live, m.ended, mm.role
		FROM meeting_members mm JOIN meetings m ON m.n = mm.meeting_n
		WHERE mm.user_id = ? AND mm.in_meeting = 1
		ORDER BY m.start_time DESC, m.uuid`

func liveMeetings(ctx context.Context, q querier, user string) ([]Meeting, error) {
	rows, err := q.QueryContext(ctx, qLiveMeetings, user)
	if err != nil {
		return nil, fmt.Errorf("live meetings: %w", err)
	}
	defer rows.Close()
	meetings := []Meeting{}
	for rows.Next() {
		var role string
		m, err := scanMeetingRow(rows, &role)
		if err != nil {
			return nil, fmt.Errorf("live meetings: %w", err)
		}
		meetings = append(meetings, m.view(role))
	}
	return meetings, rows.Err()
}

// CountLive returns how many meetings are live.
func (s *Store) CountLive(ctx context.Context) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM meetings WHERE live = 1`).Scan(&n)
	return n, err
}
