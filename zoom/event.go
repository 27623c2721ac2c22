package zoom

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Event names onair acts on.
const (
	EventURLValidation         = "endpoint.url_validation"
	EventMeetingStarted        = "meeting.started"
	EventMeetingEnded          = "meeting.ended"
	EventMeetingDeleted        = "meeting.deleted"
	EventParticipantJoined     = "meeting.participant_joined"
	EventParticipantLeft       = "meeting.participant_left"
	EventWebinarStarted        = "webinar.started"
	EventWebinarEnded          = "webinar.ended"
	EventWebinarParticipantIn  = "webinar.participant_joined"
	EventWebinarParticipantOut = "webinar.participant_left"
	EventAppDeauthorized       = "app_deauthorized"
)

// KnownEvents lists every event name onair gives meaning to, for metrics.
var KnownEvents = []string{
	EventMeetingStarted, EventWebinarStarted,
	EventMeetingEnded, EventWebinarEnded, EventMeetingDeleted,
	EventParticipantJoined, EventParticipantLeft,
	EventWebinarParticipantIn, EventWebinarParticipantOut,
	EventAppDeauthorized, EventURLValidation,
}

// ErrMalformed means the body is not a JSON object with an "event".
var ErrMalformed = errors.New("body is not a Zoom event: not JSON, or no \"event\"")

// Event is one delivery, decoded leniently: fields onair does not need never
// fail a parse, and a field of the wrong type reads as absent.
type Event struct {
	Name string
	// TS is event_ts; TSRaw is its text as sent, part of the deduplication key.
	TS    time.Time
	TSRaw string

	PlainToken string  // endpoint.url_validation
	Object     *Object // meeting and webinar events

	// app_deauthorized
	DeauthUserID  string
	DeauthTimeRaw string
	DeauthTime    time.Time
}

// Object is payload.object of a meeting or webinar event.
type Object struct {
	ID          string // the meeting number; a JSON number or string on the wire
	UUID        string
	HostID      string
	Topic       string
	Type        int
	StartTime   string
	EndTime     string
	Timezone    string
	Duration    int
	Participant *Participant
}

// Participant is payload.object.participant.
type Participant struct {
	ID        string // the Zoom user id when signed in, else ""
	UserID    string // per-meeting id, changes on every rejoin
	UUID      string // participant_uuid
	Name      string
	Email     string
	JoinTime  string
	LeaveTime string
}

// Parse decodes a webhook body. It fails only when the body is not a JSON
// object naming an event; everything else is best effort.
func Parse(body []byte) (*Event, error) {
	var env struct {
		Event   json.RawMessage `json:"event"`
		EventTS json.RawMessage `json:"event_ts"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, ErrMalformed
	}
	name := str(env.Event)
	if name == "" {
		return nil, ErrMalformed
	}
	ev := &Event{Name: name}
	ev.TSRaw, ev.TS = timestamp(env.EventTS)

	var p map[string]json.RawMessage
	_ = json.Unmarshal(env.Payload, &p)
	switch {
	case name == EventURLValidation:
		ev.PlainToken = str(p["plainToken"])
	case name == EventAppDeauthorized:
		ev.DeauthUserID = str(p["user_id"])
		ev.DeauthTimeRaw, ev.DeauthTime = timestamp(p["deauthorization_time"])
		if ev.TSRaw == "" {
			ev.TSRaw, ev.TS = timestamp(p["event_ts"])
		}
	default:
		var o map[string]json.RawMessage
		if json.Unmarshal(p["object"], &o) == nil && o != nil {
			ev.Object = object(o)
		}
	}
	return ev, nil
}

func object(o map[string]json.RawMessage) *Object {
	obj := &Object{
		ID:        str(o["id"]),
		UUID:      str(o["uuid"]),
		HostID:    str(o["host_id"]),
		Topic:     str(o["topic"]),
		Type:      num(o["type"]),
		StartTime: str(o["start_time"]),
		EndTime:   str(o["end_time"]),
		Timezone:  str(o["timezone"]),
		Duration:  num(o["duration"]),
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(o["participant"], &p) == nil && p != nil {
		obj.Participant = &Participant{
			ID:        str(p["id"]),
			UserID:    str(p["user_id"]),
			UUID:      str(p["participant_uuid"]),
			Name:      str(p["user_name"]),
			Email:     str(p["email"]),
			JoinTime:  str(p["join_time"]),
			LeaveTime: str(p["leave_time"]),
		}
	}
	return obj
}

// str reads a JSON string, or a number as its text; anything else is "".
func str(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
	}
	return ""
}

func num(raw json.RawMessage) int {
	n, err := strconv.ParseInt(str(raw), 10, 64)
	if err != nil {
		return 0
	}
	return int(n)
}

// timestamp reads event_ts-like values: milliseconds since the epoch as a
// number or string, or a date-time text ("2024-09-08 15:58:40", RFC 3339).
func timestamp(raw json.RawMessage) (string, time.Time) {
	s := str(raw)
	if s == "" {
		return "", time.Time{}
	}
	return s, ParseTime(s)
}

// Milliseconds since the epoch of 0001-01-01T00:00:00Z and
// 9999-12-31T23:59:59.999Z: RFC 3339, which every answer and frame uses,
// writes four-digit years, so a number outside them reads as no time.
const minMS, maxMS = -62135596800000, 253402300799999

// ParseTime reads the time formats Zoom uses; zero when it cannot.
func ParseTime(s string) time.Time {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < minMS || ms > maxMS {
			return time.Time{}
		}
		return time.UnixMilli(ms).UTC()
	}
	// ParseFloat also takes "NaN" and "Inf": the range check refuses them.
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if !(f >= minMS && f <= maxMS) {
			return time.Time{}
		}
		return time.UnixMilli(int64(f)).UTC()
	}
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
