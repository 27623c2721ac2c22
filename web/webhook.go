package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"time"

	"onair/store"
	"onair/zoom"
)

// maxWebhookBody is the largest webhook body accepted.
const maxWebhookBody = 1 << 20

// handleWebhook verifies a Zoom delivery, commits it, and only then answers
// 200. 4xx means the request can never be valid (Zoom does not retry it);
// 503 means a failure on our side (Zoom retries it).
func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	received := s.cfg.Now()
	event, outcome := "unverified", "rejected"
	defer func() {
		s.metrics.webhooks.WithLabelValues(event, outcome).Inc()
		s.metrics.webhookDuration.Observe(time.Since(received).Seconds())
	}()
	if s.closing.Load() {
		outcome = "failed"
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "shutting down; retry later")
		return
	}
	body, err := readBody(w, r, maxWebhookBody)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "body over 1 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "bad_body", "could not read the body")
		return
	}
	if err := zoom.CheckTimestamp(r.Header.Get(zoom.HeaderTimestamp), received, s.cfg.MaxSkew); err != nil {
		writeError(w, http.StatusUnauthorized, "bad_timestamp", err.Error())
		return
	}
	secret, err := s.signatures.Verify(r.Header.Get(zoom.HeaderTimestamp), body, r.Header.Get(zoom.HeaderSignature))
	if err != nil {
		writeError(w, http.StatusUnauthorized, "bad_signature", err.Error())
		return
	}
	s.metrics.webhookLast.Set(float64(received.UnixMilli()) / 1000)
	s.webhooks.Add(1)
	event = "other"
	ev, err := zoom.Parse(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	event = eventLabel(ev.Name)
	if ev.Name == zoom.EventURLValidation {
		outcome = "accepted"
		writeJSON(w, http.StatusOK, map[string]string{
			"plainToken":     ev.PlainToken,
			"encryptedToken": zoom.EncryptToken(secret, ev.PlainToken),
		})
		return
	}
	// The wait for the commit is bounded, and not cut short when Zoom hangs
	// up: the delivery is stored either way, and a retry finds it. Tying it
	// to the request would also cost every webhook a map in the request's
	// context.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.WebhookTimeout)
	defer cancel()
	out, err := s.store.Ingest(ctx, delivery(ev, body, received))
	if err != nil {
		outcome = "failed"
		s.log.Error("webhook not committed", "event", ev.Name, "err", err)
		writeError(w, http.StatusServiceUnavailable, "not_committed", "could not store the event; retry later")
		return
	}
	outcome = string(out)
	writeJSON(w, http.StatusOK, webhookAnswer{Outcome: outcome})
}

// Webhooks is how many signed webhooks the server has received.
func (s *Server) Webhooks() uint64 { return s.webhooks.Load() }

// readBody reads r's body, at most limit bytes. A small body of known
// length is read into a buffer of that size: io.ReadAll starts at 512 bytes
// and grows by copying, so a participant event (~750 bytes) took two
// buffers. A larger one grows as its bytes come, so that a declared length
// reserves no memory before the body is sent.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	const small = 16 << 10
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= min(limit, small) {
		b := make([]byte, n)
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(body)
}

// webhookAnswer is the body of a 200 to a delivery (a struct, not a map:
// no map to build and sort per webhook).
type webhookAnswer struct {
	Outcome string `json:"outcome"`
}

// delivery reduces a Zoom event to what the state needs. The key names what
// makes a redelivery the same delivery.
func delivery(ev *zoom.Event, body []byte, received time.Time) store.Delivery {
	at := ev.TS
	if at.IsZero() {
		at = received
	}
	d := store.Delivery{Event: ev.Name, At: at, KeyTime: ev.TS, Received: received}
	switch ev.Name {
	case zoom.EventMeetingStarted, zoom.EventWebinarStarted:
		d.Kind = store.KindStart
	case zoom.EventMeetingEnded, zoom.EventWebinarEnded, zoom.EventMeetingDeleted:
		d.Kind = store.KindEnd
	case zoom.EventParticipantJoined, zoom.EventWebinarParticipantIn:
		d.Kind = store.KindJoin
	case zoom.EventParticipantLeft, zoom.EventWebinarParticipantOut:
		d.Kind = store.KindLeave
	case zoom.EventAppDeauthorized:
		d.Kind, d.User = store.KindDeauth, ev.DeauthUserID
		if !ev.DeauthTime.IsZero() {
			d.At = ev.DeauthTime
		}
		d.Key, d.KeyTime = []string{ev.Name, ev.DeauthUserID, ev.DeauthTimeRaw}, ev.DeauthTime
		return d
	default:
		sum := sha256.Sum256(body)
		d.Key = []string{ev.Name, ev.TSRaw, hex.EncodeToString(sum[:])}
		return d
	}
	o := ev.Object
	if o == nil {
		o = &zoom.Object{}
	}
	d.Key = []string{ev.Name, ev.TSRaw, o.UUID}
	rank := 2
	if p := o.Participant; p != nil {
		rank = 1
		d.Key = append(d.Key, p.ID, p.UUID)
		d.Participant = p.ID
		d.ParticipantAt = zoom.ParseTime(p.JoinTime)
		if d.Kind == store.KindLeave {
			d.ParticipantAt = zoom.ParseTime(p.LeaveTime)
		}
		switch {
		case d.ParticipantAt.IsZero():
			d.ParticipantAt = at
		case !ev.TS.IsZero() && d.ParticipantAt.Equal(d.ParticipantAt.Truncate(time.Second)):
			// join_time and leave_time have whole seconds, and a reconnect
			// leaves and rejoins within one: event_ts (milliseconds) orders
			// them inside that second.
			d.ParticipantAt = d.ParticipantAt.Add(min(max(ev.TS.Sub(d.ParticipantAt), 0), time.Second-time.Millisecond))
		}
	}
	d.Meeting = store.MeetingInfo{
		UUID: o.UUID, ID: o.ID, Topic: o.Topic, HostID: o.HostID, Type: o.Type,
		StartTime: zoom.ParseTime(o.StartTime), EndTime: zoom.ParseTime(o.EndTime),
		Duration: o.Duration, Timezone: o.Timezone, Rank: rank, StartRank: rank,
	}
	if d.Meeting.StartTime.IsZero() {
		d.Meeting.StartTime, d.Meeting.StartRank = at, 0
	}
	return d
}
