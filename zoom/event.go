package zoom

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

	// Structs of raw fields rather than maps: this runs for every webhook,
	// and a map per object was most of what a parse allocated.
	var p struct {
		PlainToken          json.RawMessage `json:"plainToken"`
		UserID              json.RawMessage `json:"user_id"`
		DeauthorizationTime json.RawMessage `json:"deauthorization_time"`
		EventTS             json.RawMessage `json:"event_ts"`
		Object              json.RawMessage `json:"object"`
	}
	_ = json.Unmarshal(env.Payload, &p)
	switch {
	case name == EventURLValidation:
		ev.PlainToken = str(p.PlainToken)
	case name == EventAppDeauthorized:
		ev.DeauthUserID = str(p.UserID)
		ev.DeauthTimeRaw, ev.DeauthTime = timestamp(p.DeauthorizationTime)
		if ev.TSRaw == "" {
			ev.TSRaw, ev.TS = timestamp(p.EventTS)
		}
	default:
		if o := bytes.TrimSpace(p.Object); len(o) > 0 && o[0] == '{' {
			ev.Object = object(o)
		}
	}
	return ev, nil
}

func object(raw json.RawMessage) *Object {
	var o struct {
		ID          json.RawMessage `json:"id"`
		UUID        json.RawMessage `json:"uuid"`
		HostID      json.RawMessage `json:"host_id"`
		Topic       json.RawMessage `json:"topic"`
		Type        json.RawMessage `json:"type"`
		StartTime   json.RawMessage `json:"start_time"`
		EndTime     json.RawMessage `json:"end_time"`
		Timezone    json.RawMessage `json:"timezone"`
		Duration    json.RawMessage `json:"duration"`
		Participant json.RawMessage `json:"participant"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return nil
	}
	obj := &Object{
		ID:        str(o.ID),
		UUID:      str(o.UUID),
		HostID:    str(o.HostID),
		Topic:     str(o.Topic),
		Type:      num(o.Type),
		StartTime: str(o.StartTime),
		EndTime:   str(o.EndTime),
		Timezone:  str(o.Timezone),
		Duration:  num(o.Duration),
	}
	if pr := bytes.TrimSpace(o.Participant); len(pr) > 0 && pr[0] == '{' {
		var p struct {
			ID        json.RawMessage `json:"id"`
			UserID    json.RawMessage `json:"user_id"`
			UUID      json.RawMessage `json:"participant_uuid"`
			Name      json.RawMessage `json:"user_name"`
			Email     json.RawMessage `json:"email"`
			JoinTime  json.RawMessage `json:"join_time"`
			LeaveTime json.RawMessage `json:"leave_time"`
		}
		if json.Unmarshal(pr, &p) == nil {
			obj.Participant = &Participant{
				ID: str(p.ID), UserID: str(p.UserID), UUID: str(p.UUID), Name: str(p.Name),
				Email: str(p.Email), JoinTime: str(p.JoinTime), LeaveTime: str(p.LeaveTime),
			}
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
	// raw is a value of a document json.Unmarshal has already checked: a
	// string without escapes is its own text, a number is its literal.
	switch raw[0] {
	case '"':
		if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
			return string(raw[1 : len(raw)-1])
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw)
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
	// Each failed parse allocates its error, and this runs several times
	// per webhook: an absent time (most end times) is not parsed at all,
	// and a date-time is not tried as a number first.
	if s == "" {
		return time.Time{}
	}
	if !strings.ContainsAny(s, ":") {
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
	}
	s = strings.TrimSpace(s)
	layouts := []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"}
	if len(s) > 10 && s[10] == ' ' {
		layouts = layouts[2:] // Zoom's "2024-09-08 15:58:40"
	}
	for _, layout := range layouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
