package web

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"onair/store"
	"onair/zoom"
)

// fzPost posts body correctly signed, reporting failures on t (the env's
// own helpers report on the *testing.F, which a fuzz target must not use).
func fzPost(t *testing.T, e *testEnv, body []byte) (int, []byte) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/zoom", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(e.secret, ts, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// fzSeeds are Zoom's documented deliveries plus mutations of them.
func fzSeeds(tb testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join(payloadDir, "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no payloads in %s (%v)", payloadDir, err)
	}
	var seeds [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
		s := string(b)
		for _, r := range [][2]string{
			{`"85746065432"`, `85746065432`},                               // id as a number
			{`"id": 81234567890`, `"id": "81234567890"`},                   // and as a string
			{`"id": 81234567890`, `"id": 1e400`},                           // out of range
			{`"uuid": "`, `"uuid": "/+=//`},                                // base64-like uuids
			{`"uuid": "`, `"uuid": "\u0000\ud800`},                         // NUL, lone surrogate
			{`"host_id": "z8yBXksqT6GLlIS9ZfQbbw",`, ``},                   // no host
			{`"event_ts": 17`, `"event_ts": "17`},                          // event_ts as text (broken)
			{`"event_ts": 1`, `"event_ts": -1`},                            // negative
			{`"event_ts": 1`, `"event_ts": 9e300, "x": 1`},                 // huge
			{`"start_time": "2026-12-04T14:00:00Z"`, `"start_time": 5`},    // wrong type
			{`"start_time": "2026-12-04T14:00:00Z"`, `"start_time": "99"`}, // nonsense
			{`"join_time": "2026-12-04T14:01:40Z"`, `"join_time": null`},
			{`"leave_time": "2026-12-04T14:20:00Z"`, `"leave_time": "NaN"`},
			{`"type": 2`, `"type": 99999999999999999999`},
			{`"duration": 30`, `"duration": -1.5`},
			{`"topic": "`, "\"topic\": \"\xff\xfe"}, // invalid UTF-8
			{`"participant": {`, `"participant": [`},
			{`"object": {`, `"object": null, "o": {`},
			{`"payload": {`, `"payload": [], "p": {`},
			{`"deauthorization_time": "2026-12-04T16:00:00.000Z"`, `"deauthorization_time": 1764864000000`},
			{`"user_id": "z8yBXksqT6GLlIS9ZfQbbw"`, `"user_id": ""`},
			{`"plainToken": "qgg8vlvZRS6UYooatFL8Aw"`, `"plainToken": {"a": 1}`},
			{`"event": "`, `"event": "x`},
			{`"event": "`, `"event": 7, "e": "`},
		} {
			if strings.Contains(s, r[0]) {
				seeds = append(seeds, []byte(strings.Replace(s, r[0], r[1], 1)))
			}
		}
		seeds = append(seeds, b[:len(b)/2]) // truncated
	}
	seeds = append(seeds,
		[]byte(``),
		[]byte(`{}`),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(`"meeting.started"`),
		[]byte(`{"event":"meeting.started"}`),
		[]byte(`{"event":"meeting.started","payload":{"object":{"uuid":"u","host_id":"h"}}}`),
		[]byte(`{"event":"meeting.participant_joined","payload":{"object":{"uuid":"u","host_id":"h","participant":{"id":"h"}}}}`),
		[]byte(`{"event":"meeting.ended","event_ts":"2026-12-04 16:00:00","payload":{"object":{"uuid":"u","end_time":"x"}}}`),
		[]byte(`{"event":"app_deauthorized","payload":{"user_id":"h","deauthorization_time":"yesterday"}}`),
		[]byte(`{"event":"meeting.started","event_ts":"NaN","payload":{"object":{"uuid":"nan","host_id":"fz-host"}}}`),
		[]byte(`{"event":"meeting.started","event_ts":1000000000000000,"payload":{"object":{"uuid":"far","host_id":"fz-host"}}}`),
		[]byte(`{"event":"meeting.started","payload":{"object":{"uuid":"far-start","host_id":"fz-host","start_time":"-1e18"}}}`),
		[]byte(`{"event":"meeting.started","payload":`+strings.Repeat(`[`, 20000)+strings.Repeat(`]`, 20000)+`}`),
		[]byte(`{"event":"meeting.started","event":"meeting.ended","payload":{"object":{"uuid":"u","host_id":"h"}}}`),
	)
	return seeds
}

// FuzzWebhook posts arbitrary, correctly signed bodies to a real server.
// Properties: the answer is 200, 400 or 503 (Zoom retries only 5xx, so
// nothing else may mean "our failure"), never a crash; a 400 stores
// nothing; a redelivery of an accepted body stores nothing more.
func FuzzWebhook(f *testing.F) {
	for _, s := range fzSeeds(f) {
		f.Add(s)
	}
	e := newEnv(f)
	db := whDB(f, e)
	f.Fuzz(func(t *testing.T, body []byte) {
		post := func() (int, []byte) {
			status, answer := fzPost(t, e, body)
			// The server is healthy: a 503 may be a slow commit, but one
			// that persists is a delivery Zoom would retry in vain.
			for i := 0; status == http.StatusServiceUnavailable && i < 3; i++ {
				time.Sleep(100 * time.Millisecond)
				status, answer = fzPost(t, e, body)
			}
			return status, answer
		}
		before := whRows(t, db)
		var lastEvent int64
		if err := db.QueryRow(`SELECT COALESCE(MAX(rowid), 0) FROM events`).Scan(&lastEvent); err != nil {
			t.Fatal(err)
		}
		status, answer := post()
		switch {
		case len(body) > maxWebhookBody && status == http.StatusRequestEntityTooLarge:
			return
		case status == http.StatusBadRequest:
			if got := whRows(t, db); got != before {
				t.Fatalf("a 400 stored something: %s → %s", before, got)
			}
			return
		case status == http.StatusOK:
		default:
			t.Fatalf("status %d (%s) for %q", status, answer, body)
		}
		fzCheckFrames(t, db, lastEvent)
		after := whRows(t, db)
		status, answer = post()
		if status != http.StatusOK {
			t.Fatalf("redelivery: status %d (%s) for %q", status, answer, body)
		}
		if got := whRows(t, db); got != after {
			t.Fatalf("a redelivery stored something: %s → %s", after, got)
		}
	})
}

// fzCheckFrames checks the frames logged after rowid: their meeting decodes
// as the API's Meeting and every time in them is RFC 3339 in UTC with
// milliseconds, as CONTRACT §3 wants of every frame.
func fzCheckFrames(t *testing.T, db *sql.DB, after int64) {
	t.Helper()
	rows, err := db.Query(`SELECT type, at, data FROM events WHERE rowid > ?`, after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ, data string
		var at int64
		if err := rows.Scan(&typ, &at, &data); err != nil {
			t.Fatal(err)
		}
		e := store.Entry{Type: typ, At: time.UnixMilli(at).UTC(), Data: json.RawMessage(data)}
		var f struct {
			At      string        `json:"at"`
			Meeting store.Meeting `json:"meeting"`
		}
		if err := json.Unmarshal(encodeEntry(e), &f); err != nil {
			t.Fatalf("frame %s: %v", encodeEntry(e), err)
		}
		times := []string{f.At, f.Meeting.StartTime.UTC().Format(fzTimeLayout)}
		if f.Meeting.EndTime != nil {
			times = append(times, f.Meeting.EndTime.UTC().Format(fzTimeLayout))
		}
		for _, v := range times {
			if _, err := time.Parse(fzTimeLayout, v); err != nil {
				t.Fatalf("frame %s: time %q: %v", encodeEntry(e), v, err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

const fzTimeLayout = "2006-01-02T15:04:05.000Z"
