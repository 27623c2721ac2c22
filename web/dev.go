package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"onair/store"
	"onair/zoom"
)

// The dev-mode demo user.
var demoUser = store.User{ID: "demo-user", Email: "demo@example.com", Name: "Demo User"}

// handleDemoSignIn signs the browser in as the demo user (dev mode only).
func (s *Server) handleDemoSignIn(w http.ResponseWriter, r *http.Request) {
	if !s.sameOriginWrite(w, r) {
		return
	}
	if err := s.startSession(r.Context(), w, r, demoUser, nil); err != nil {
		s.internalError(w, "demo sign-in", err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleSimulate sends a Zoom-shaped meeting.started or meeting.ended for
// the caller's meeting through the webhook endpoint itself, signed with the
// webhook secret, so the demo takes exactly the path Zoom's deliveries take.
func (s *Server) handleSimulate(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Event   string `json:"event"`
		Meeting string `json:"meeting"`
		Topic   string `json:"topic"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", `body must be JSON like {"event": "started", "topic": "Standup"}`)
		return
	}
	user := requestUser(r)
	now := s.cfg.Now().UTC()
	obj := map[string]any{"uuid": in.Meeting, "host_id": user, "topic": in.Topic, "type": 1, "duration": 0, "timezone": ""}
	var event string
	switch in.Event {
	case "started":
		if in.Meeting == "" {
			obj["uuid"] = zoom.NewMeetingUUID()
		}
		if in.Topic == "" {
			obj["topic"] = "Demo meeting"
		}
		obj["id"], obj["start_time"] = zoom.NewMeetingNumber(), now.Format(time.RFC3339)
		event = zoom.EventMeetingStarted
	case "ended":
		live, err := s.store.LiveMeetings(r.Context(), user)
		if err != nil {
			s.internalError(w, "read live meetings", err)
			return
		}
		found := false
		for _, m := range live {
			if m.UUID == in.Meeting && m.Role == store.RoleHost {
				obj["id"], obj["topic"], obj["start_time"] = m.ID, m.Topic, m.StartTime.Format(time.RFC3339)
				found = true
			}
		}
		if !found {
			writeError(w, http.StatusNotFound, "not_live", "no live meeting of yours with that uuid")
			return
		}
		obj["end_time"] = now.Format(time.RFC3339)
		event = zoom.EventMeetingEnded
	default:
		writeError(w, http.StatusBadRequest, "bad_request", `event must be "started" or "ended"`)
		return
	}
	body, _ := json.Marshal(map[string]any{"event": event, "event_ts": now.UnixMilli(),
		"payload": map[string]any{"account_id": "demo", "object": obj}})
	ts := strconv.FormatInt(now.Unix(), 10)
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, "/webhooks/zoom", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(s.cfg.WebhookSecrets[0], ts, body))
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	s.mux.ServeHTTP(rec, req)
	var out struct {
		Outcome string `json:"outcome"`
	}
	json.Unmarshal(rec.body.Bytes(), &out)
	if rec.code != http.StatusOK {
		writeJSON(w, rec.code, json.RawMessage(rec.body.Bytes()))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"outcome": out.Outcome, "meeting": obj["uuid"]})
}

// recorder keeps the webhook handler's answer to a simulated delivery.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
