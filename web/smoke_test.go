package web

import (
	"net/http"
	"testing"
)

func TestStartedReachesTab(t *testing.T) {
	e := newEnv(t)
	c, w := e.connect("u1", nil)
	if w.Seq != 0 || w.Resumed || len(w.Meetings) != 0 {
		t.Fatalf("welcome: %+v", w)
	}
	e.mustPost(event{Name: "meeting.started", UUID: "a/b+c==", Host: "u1", Topic: "T"}.body(), http.StatusOK)
	f := c.read()
	if f.Type != "meeting.started" || f.Seq != 1 || f.Meeting.UUID != "a/b+c==" || f.Meeting.Role != "host" || !f.Meeting.Live {
		t.Fatalf("frame: %s", f.Raw)
	}
}
