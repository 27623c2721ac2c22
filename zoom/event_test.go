package zoom

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// payloadDir holds Zoom's documented example deliveries; the repository and
// shared/ sit side by side.
const payloadDir = "../../shared/zoom/payloads"

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParsePayloadFiles(t *testing.T) {
	meeting := Object{
		ID: "85746065432", UUID: "4s5Dq2X+Qj2wZ0x7YyVh/g==", HostID: "z8yBXksqT6GLlIS9ZfQbbw",
		Topic: "Weekly sync", Type: 2, StartTime: "2026-12-04T14:00:00Z", Timezone: "Europe/Berlin", Duration: 30,
	}
	ada := Participant{ID: "Qm9ZrVvXS0ix1n3bY2kP4w", UserID: "16778240", UUID: "2F0E1C7D-5B7A-4E1B-9C53-7A1B2C3D4E5F",
		Name: "Ada Lovelace", Email: "ada@example.com"}
	with := func(o Object, f func(*Object)) *Object { f(&o); return &o }

	want := map[string]Event{
		"app_deauthorized.json": {
			Name: EventAppDeauthorized, TSRaw: "2026-12-04 16:00:00", TS: utc("2026-12-04T16:00:00Z"),
			DeauthUserID: "z8yBXksqT6GLlIS9ZfQbbw", DeauthTimeRaw: "2026-12-04T16:00:00.000Z", DeauthTime: utc("2026-12-04T16:00:00Z"),
		},
		"endpoint.url_validation.json": {
			Name: EventURLValidation, TSRaw: "1764856000000", TS: time.UnixMilli(1764856000000).UTC(), PlainToken: "qgg8vlvZRS6UYooatFL8Aw",
		},
		"meeting.deleted.json": {
			Name: EventMeetingDeleted, TSRaw: "1764862000000", TS: time.UnixMilli(1764862000000).UTC(),
			Object: &Object{ID: "81234567890", UUID: "Yc1bQm3sR7m0kAqf2a8x9w==", HostID: "z8yBXksqT6GLlIS9ZfQbbw",
				Topic: "Cancelled review", Type: 2, StartTime: "2026-12-05T09:00:00Z", Timezone: "Europe/Berlin", Duration: 45},
		},
		"meeting.ended.json": {
			Name: EventMeetingEnded, TSRaw: "1764858600456", TS: time.UnixMilli(1764858600456).UTC(),
			Object: with(meeting, func(o *Object) { o.EndTime = "2026-12-04T14:30:00Z" }),
		},
		"meeting.participant_joined.json": {
			Name: EventParticipantJoined, TSRaw: "1764856900789", TS: time.UnixMilli(1764856900789).UTC(),
			Object: with(meeting, func(o *Object) {
				p := ada
				p.JoinTime = "2026-12-04T14:01:40Z"
				o.Participant = &p
			}),
		},
		"meeting.participant_left.json": {
			Name: EventParticipantLeft, TSRaw: "1764858000321", TS: time.UnixMilli(1764858000321).UTC(),
			Object: with(meeting, func(o *Object) {
				p := ada
				p.LeaveTime = "2026-12-04T14:20:00Z"
				o.Participant = &p
			}),
		},
		"meeting.started.json": {
			Name: EventMeetingStarted, TSRaw: "1764856800123", TS: time.UnixMilli(1764856800123).UTC(),
			Object: &meeting,
		},
		"webinar.started.json": {
			Name: EventWebinarStarted, TSRaw: "1764860400000", TS: time.UnixMilli(1764860400000).UTC(),
			Object: &Object{ID: "93365557812", UUID: "bq1x7mZXQPy2Jq0sA8Vd1Q==", HostID: "z8yBXksqT6GLlIS9ZfQbbw",
				Topic: "Product launch", Type: 5, StartTime: "2026-12-04T15:00:00Z", Timezone: "", Duration: 60},
		},
	}

	files, err := filepath.Glob(filepath.Join(payloadDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no payloads in %s", payloadDir)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := Parse(body)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got, want := ev.Name, strings.TrimSuffix(name, ".json"); got != want {
				t.Fatalf("Name: got %q, want %q", got, want)
			}
			w, ok := want[name]
			if !ok {
				t.Fatalf("new payload file %s: add its expected parse to this test", name)
			}
			compareEvent(t, ev, &w)
		})
	}
}

func compareEvent(t *testing.T, got, want *Event) {
	t.Helper()
	if got.Name != want.Name || got.TSRaw != want.TSRaw || !got.TS.Equal(want.TS) || got.PlainToken != want.PlainToken ||
		got.DeauthUserID != want.DeauthUserID || got.DeauthTimeRaw != want.DeauthTimeRaw || !got.DeauthTime.Equal(want.DeauthTime) {
		t.Fatalf("event: got %+v, want %+v", *got, *want)
	}
	if (got.Object == nil) != (want.Object == nil) {
		t.Fatalf("object: got %+v, want %+v", got.Object, want.Object)
	}
	if got.Object == nil {
		return
	}
	g, w := *got.Object, *want.Object
	gp, wp := g.Participant, w.Participant
	g.Participant, w.Participant = nil, nil
	if g != w {
		t.Fatalf("object: got %+v, want %+v", g, w)
	}
	if (gp == nil) != (wp == nil) || (gp != nil && *gp != *wp) {
		t.Fatalf("participant: got %+v, want %+v", gp, wp)
	}
}

func TestParseMeetingID(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"string", `"85746065432"`, "85746065432"},
		{"number", `85746065432`, "85746065432"},
		{"number beyond float64 precision", `12345678901234567891`, "12345678901234567891"},
		{"missing", ``, ""},
		{"null", `null`, ""},
		{"object", `{}`, ""},
		{"bool", `true`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := `"uuid":"u/1+="`
			if tc.raw != "" {
				obj += `,"id":` + tc.raw
			}
			for _, event := range []string{EventMeetingStarted, EventParticipantJoined, EventMeetingDeleted} {
				body := `{"event":"` + event + `","event_ts":1,"payload":{"object":{` + obj +
					`,"participant":{"id":"p1","join_time":"2026-12-04T14:01:40Z"}}}}`
				ev, err := Parse([]byte(body))
				if err != nil {
					t.Fatalf("%s: Parse: %v", event, err)
				}
				if ev.Object == nil {
					t.Fatalf("%s: no object", event)
				}
				if got, want := ev.Object.ID, tc.want; got != want {
					t.Fatalf("%s: ID: got %q, want %q", event, got, want)
				}
				if got, want := ev.Object.UUID, "u/1+="; got != want {
					t.Fatalf("%s: UUID: got %q, want %q", event, got, want)
				}
			}
		})
	}
}

func TestParseDeauthorizedTimestamps(t *testing.T) {
	for _, tc := range []struct {
		name, body, tsRaw string
		ts                time.Time
	}{
		{"event_ts inside payload as text",
			`{"event":"app_deauthorized","payload":{"user_id":"u1","deauthorization_time":"2024-09-08T15:58:40.123Z","event_ts":"2024-09-08 15:58:40"}}`,
			"2024-09-08 15:58:40", utc("2024-09-08T15:58:40Z")},
		{"event_ts inside payload as milliseconds",
			`{"event":"app_deauthorized","payload":{"user_id":"u1","deauthorization_time":"2024-09-08T15:58:40.123Z","event_ts":1725811120000}}`,
			"1725811120000", time.UnixMilli(1725811120000).UTC()},
		{"event_ts in the envelope wins",
			`{"event":"app_deauthorized","event_ts":1725811120000,"payload":{"user_id":"u1","deauthorization_time":"2024-09-08T15:58:40.123Z","event_ts":"2024-09-08 15:58:40"}}`,
			"1725811120000", time.UnixMilli(1725811120000).UTC()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Parse([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ev.TSRaw, tc.tsRaw; got != want {
				t.Fatalf("TSRaw: got %q, want %q", got, want)
			}
			if got, want := ev.TS, tc.ts; !got.Equal(want) {
				t.Fatalf("TS: got %v, want %v", got, want)
			}
			if got, want := ev.DeauthUserID, "u1"; got != want {
				t.Fatalf("DeauthUserID: got %q, want %q", got, want)
			}
			if got, want := ev.DeauthTime, utc("2024-09-08T15:58:40.123Z"); !got.Equal(want) {
				t.Fatalf("DeauthTime: got %v, want %v", got, want)
			}
			if got, want := ev.DeauthTimeRaw, "2024-09-08T15:58:40.123Z"; got != want {
				t.Fatalf("DeauthTimeRaw: got %q, want %q", got, want)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"empty", ``},
		{"not JSON", `hello`},
		{"truncated", `{"event":"meeting.started"`},
		{"array", `[{"event":"meeting.started"}]`},
		{"string", `"meeting.started"`},
		{"null", `null`},
		{"no event", `{"event_ts":1,"payload":{}}`},
		{"empty event", `{"event":""}`},
		{"null event", `{"event":null}`},
		{"object event", `{"event":{"name":"meeting.started"}}`},
		{"trailing garbage", `{"event":"meeting.started"} x`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ev, err := Parse([]byte(tc.body)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q): got (%+v, %v), want ErrMalformed", tc.body, ev, err)
			}
		})
	}
}

func TestParseLenient(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		check      func(*Event) string // what is wrong, or ""
	}{
		{"no payload", `{"event":"meeting.started"}`, noObject},
		{"payload not an object", `{"event":"meeting.started","payload":[1,2]}`, noObject},
		{"object not an object", `{"event":"meeting.started","payload":{"object":"x"}}`, noObject},
		{"object a number", `{"event":"meeting.started","payload":{"object":5}}`, noObject},
		{"object null", `{"event":"meeting.started","payload":{"object":null}}`, noObject},
		{"participant not an object", `{"event":"meeting.participant_joined","payload":{"object":{"uuid":"u","participant":7}}}`,
			func(ev *Event) string {
				if ev.Object == nil || ev.Object.UUID != "u" || ev.Object.Participant != nil {
					return "want the object, without a participant"
				}
				return ""
			}},
		{"object repeated: the last counts, whole", `{"event":"meeting.started","payload":{"object":{"uuid":"A","host_id":"H"},"object":{"uuid":"B"}}}`,
			func(ev *Event) string {
				if ev.Object == nil || ev.Object.UUID != "B" || ev.Object.HostID != "" {
					return "want uuid B and no host"
				}
				return ""
			}},
		{"object repeated, the last not an object", `{"event":"meeting.started","payload":{"object":{"uuid":"A"},"object":"x"}}`, noObject},
		{"payload repeated, the last not an object", `{"event":"meeting.started","payload":{"object":{"uuid":"A"}},"payload":7}`, noObject},
		{"participant repeated", `{"event":"meeting.participant_joined","payload":{"object":{"uuid":"u","participant":{"user_name":"a","email":"e"},"participant":{"user_name":"b"}}}}`,
			func(ev *Event) string {
				if p := ev.Object.Participant; p == nil || p.Name != "b" || p.Email != "" {
					return "want the last participant whole"
				}
				return ""
			}},
		{"fields of the wrong type", `{"event":"meeting.started","event_ts":{},"payload":{"object":{"uuid":1,"host_id":[],"type":"x","duration":1e99,"start_time":5}}}`,
			func(ev *Event) string {
				if o := ev.Object; o == nil || o.UUID != "1" || o.HostID != "" || o.Type != 0 || o.Duration != 0 || o.StartTime != "5" || !ev.TS.IsZero() {
					return "want uuid 1, start time 5 and the rest empty"
				}
				return ""
			}},
		{"unknown event", `{"event":"recording.completed","payload":{"object":{"uuid":"u"}}}`, nil},
		{"huge event_ts", `{"event":"meeting.started","event_ts":1e400}`, nil},
		{"NaN-like event_ts", `{"event":"meeting.started","event_ts":"NaN"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Parse([]byte(tc.body))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.body, err)
			}
			if tc.check != nil {
				if wrong := tc.check(ev); wrong != "" {
					t.Fatalf("Parse(%s): %s; got %+v, object %+v", tc.body, wrong, ev, ev.Object)
				}
			}
		})
	}
}

// noObject requires an event without an object: a member that is not a
// JSON object is absent.
func noObject(ev *Event) string {
	if ev.Object != nil {
		return "want no object"
	}
	return ""
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"1764856800123", time.UnixMilli(1764856800123).UTC()},
		{"2026-12-04T14:00:00Z", utc("2026-12-04T14:00:00Z")},
		{"2026-12-04T14:00:00.250Z", utc("2026-12-04T14:00:00.25Z")},
		{"2026-12-04T15:00:00+01:00", utc("2026-12-04T14:00:00Z")},
		{"2024-09-08 15:58:40", utc("2024-09-08T15:58:40Z")},
		{"1764856800123.0", time.UnixMilli(1764856800123).UTC()},
		{"", time.Time{}},
		{"yesterday", time.Time{}},
		{"NaN", time.Time{}},
		{"Inf", time.Time{}},
		{"-Infinity", time.Time{}},
		{"1e300", time.Time{}},
		{"253402300799999", utc("9999-12-31T23:59:59.999Z")},
		{"253402300800000", time.Time{}}, // year 10000
		{"1000000000000000", time.Time{}},
		{"-62135596800000", utc("0001-01-01T00:00:00Z")},
		{"-62135596800001", time.Time{}},
		{"-9223372036854775808", time.Time{}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := ParseTime(tc.in); !got.Equal(tc.want) {
				t.Fatalf("ParseTime(%q): got %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
