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
	// Every member accepts any JSON value, so only a body that is not a
	// JSON object fails here.
	var w wireEvent
	if err := json.Unmarshal(body, &w); err != nil || w.Event == "" {
		return nil, ErrMalformed
	}
	ev := &Event{Name: string(w.Event)}
	ev.TSRaw, ev.TS = timestamp(w.EventTS)
	p := w.Payload.v
	if p == nil {
		p = &wirePayload{}
	}
	switch ev.Name {
	case EventURLValidation:
		ev.PlainToken = string(p.PlainToken)
	case EventAppDeauthorized:
		ev.DeauthUserID = string(p.UserID)
		ev.DeauthTimeRaw, ev.DeauthTime = timestamp(p.DeauthorizationTime)
		if ev.TSRaw == "" {
			ev.TSRaw, ev.TS = timestamp(p.EventTS)
		}
	default:
		if o := p.Object.v; o != nil {
			ev.Object = &Object{
				ID: string(o.ID), UUID: string(o.UUID), HostID: string(o.HostID), Topic: string(o.Topic),
				Type: num(o.Type), StartTime: string(o.StartTime), EndTime: string(o.EndTime),
				Timezone: string(o.Timezone), Duration: num(o.Duration),
			}
			if pr := o.Participant.v; pr != nil {
				ev.Object.Participant = &Participant{
					ID: string(pr.ID), UserID: string(pr.UserID), UUID: string(pr.UUID), Name: string(pr.Name),
					Email: string(pr.Email), JoinTime: string(pr.JoinTime), LeaveTime: string(pr.LeaveTime),
				}
			}
		}
	}
	return ev, nil
}

// wireEvent is a delivery as Zoom sends it. Leaves are lenient strings,
// decoded where they stand: json.RawMessage leaves cost a copy each, ~40
// allocations per webhook. Nested objects are objectMembers, so that no
// member's type fails the whole.
type wireEvent struct {
	Event   lenient                   `json:"event"`
	EventTS lenient                   `json:"event_ts"`
	Payload objectMember[wirePayload] `json:"payload"`
}

type wirePayload struct {
	PlainToken          lenient                  `json:"plainToken"`
	UserID              lenient                  `json:"user_id"`
	DeauthorizationTime lenient                  `json:"deauthorization_time"`
	EventTS             lenient                  `json:"event_ts"`
	Object              objectMember[wireObject] `json:"object"`
}

type wireObject struct {
	ID          lenient                       `json:"id"`
	UUID        lenient                       `json:"uuid"`
	HostID      lenient                       `json:"host_id"`
	Topic       lenient                       `json:"topic"`
	Type        lenient                       `json:"type"`
	StartTime   lenient                       `json:"start_time"`
	EndTime     lenient                       `json:"end_time"`
	Timezone    lenient                       `json:"timezone"`
	Duration    lenient                       `json:"duration"`
	Participant objectMember[wireParticipant] `json:"participant"`
}

type wireParticipant struct {
	ID        lenient `json:"id"`
	UserID    lenient `json:"user_id"`
	UUID      lenient `json:"participant_uuid"`
	Name      lenient `json:"user_name"`
	Email     lenient `json:"email"`
	JoinTime  lenient `json:"join_time"`
	LeaveTime lenient `json:"leave_time"`
}

// objectMember is a member that counts only when it is a JSON object. Each
// time the key appears it is decoded afresh, so a repeated key's last value
// counts whole, as for any other member; anything but an object leaves it
// absent. (A plain *T would be allocated before a wrong type is reported,
// and merged into by a repeated key.)
type objectMember[T any] struct{ v *T }

func (m *objectMember[T]) UnmarshalJSON(raw []byte) error {
	m.v = nil
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	v := new(T)
	if json.Unmarshal(raw, v) == nil {
		m.v = v
	}
	return nil
}

// lenient is a JSON value read as str reads it: Zoom sends some values as
// a number in one event and a string in another.
type lenient string

func (l *lenient) UnmarshalJSON(raw []byte) error {
	*l = lenient(str(raw))
	return nil
}

// str reads a JSON string, or a number as its text; anything else is "".
func str(raw []byte) string {
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

func num(l lenient) int {
	n, err := strconv.ParseInt(string(l), 10, 64)
	if err != nil {
		return 0
	}
	return int(n)
}

// timestamp reads event_ts-like values: milliseconds since the epoch as a
// number or string, or a date-time text ("2024-09-08 15:58:40", RFC 3339).
func timestamp(l lenient) (string, time.Time) {
	s := string(l)
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
