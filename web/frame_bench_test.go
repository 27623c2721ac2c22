package web

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"onair/store"
)

// benchMeeting is meeting i as shared/zoom/payloads/meeting.started.json
// describes it, seen by its host.
func benchMeeting(i int) store.Meeting {
	return store.Meeting{
		UUID: "4s5Dq2X+Qj2wZ0x7YyV" + strconv.Itoa(i) + "/g==", ID: "85746065432", Topic: "Weekly sync",
		HostID: "z8yBXksqT6GLlIS9ZfQbbw", Type: 2,
		StartTime: store.Time{Time: time.Date(2026, 12, 4, 14, i, 0, 0, time.UTC)},
		Duration:  30, Timezone: "Europe/Berlin", Role: store.RoleHost, Live: true,
	}
}

// benchEpoch is shaped like a real user epoch: 12 random bytes in hex, "-", 4 in hex.
const benchEpoch = "3f9a1c2e7b4d5e6f7a8b9c0d-1a2b3c4d"

func BenchmarkEncodeEntry(b *testing.B) {
	data, err := json.Marshal(benchMeeting(0))
	if err != nil {
		b.Fatal(err)
	}
	e := store.Entry{
		User: "z8yBXksqT6GLlIS9ZfQbbw", Seq: 42, Epoch: benchEpoch, Type: store.TypeMeetingStarted,
		At: time.UnixMilli(1764856800123).UTC(), Data: data, Received: time.Now(),
	}
	if !json.Valid(encodeEntry(e)) {
		b.Fatalf("not JSON: %s", encodeEntry(e))
	}
	b.ReportAllocs()
	for b.Loop() {
		encodeEntry(e)
	}
}

func BenchmarkEncodeWelcome(b *testing.B) {
	w := store.Welcome{Epoch: benchEpoch, Seq: 42}
	for i := range 5 {
		w.Meetings = append(w.Meetings, benchMeeting(i))
	}
	if !json.Valid(encodeWelcome("z8yBXksqT6GLlIS9ZfQbbw", w)) {
		b.Fatal("welcome is not JSON")
	}
	b.ReportAllocs()
	for b.Loop() {
		encodeWelcome("z8yBXksqT6GLlIS9ZfQbbw", w)
	}
}
