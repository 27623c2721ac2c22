package hub_test

import (
	"strconv"
	"testing"
	"time"

	"onair/hub"
)

// benchFrame is a realistic meeting.started frame (about 400 bytes).
var benchFrame = []byte(`{"type":"meeting.started","seq":42,"epoch":"3f9a1c2e7b4d5e6f7a8b9c0d-1a2b3c4d","at":"2026-12-04T14:00:00.123Z",` +
	`"meeting":{"uuid":"4s5Dq2X+Qj2wZ0x7YyVh/g==","id":"85746065432","topic":"Weekly sync","host_id":"z8yBXksqT6GLlIS9ZfQbbw",` +
	`"type":2,"start_time":"2026-12-04T14:00:00.000Z","duration":30,"timezone":"Europe/Berlin","role":"host","live":true}}`)

// benchSubscribe subscribes a tab whose wake drains its queue at once, as
// a flusher that keeps up would, so the queue never overflows. It fails
// the benchmark if the tab is ever dropped.
func benchSubscribe(b *testing.B, h *hub.Hub, user string) *hub.Subscription {
	b.Helper()
	var s *hub.Subscription
	s, err := h.Subscribe(user, "", func(hub.Reason) {
		if _, r := s.Next(); r != hub.ReasonNone {
			b.Errorf("%s dropped: %v", user, r)
		}
	})
	if err != nil {
		b.Fatalf("subscribe %s: %v", user, err)
	}
	b.Cleanup(s.Cancel)
	return s
}

func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			h := hub.New(hub.Options{MaxTabs: n})
			for range n {
				benchSubscribe(b, h, "bench-user")
			}
			m := hub.Message{Type: "meeting.started", Frame: benchFrame, Received: time.Now()}
			b.ReportAllocs()
			for b.Loop() {
				m.Seq++
				h.Publish("bench-user", m)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

func BenchmarkPublishManyUsers(b *testing.B) {
	const users = 10000
	h := hub.New(hub.Options{})
	ids := make([]string, users)
	for i := range ids {
		ids[i] = "bench-user-" + strconv.Itoa(i)
		benchSubscribe(b, h, ids[i])
	}
	m := hub.Message{Type: "meeting.started", Frame: benchFrame, Received: time.Now()}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Seq++
		h.Publish(ids[i], m)
		if i++; i == users {
			i = 0
		}
	}
}
