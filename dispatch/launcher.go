package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"onair/store"
	"onair/zoom"
)

// Headers of a request to the launcher (CONTRACT §3). The signature is
// Zoom's scheme with onair's secret: v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}")).
const (
	HeaderTimestamp   = "X-Onair-Request-Timestamp"
	HeaderSignature   = "X-Onair-Signature"
	HeaderIdempotency = "Idempotency-Key"
)

// post sends a built item to the launcher; any 2xx is success.
func (d *Dispatcher) post(ctx context.Context, it store.OutboxItem) error {
	ts := strconv.FormatInt(d.cfg.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL, strings.NewReader(it.Body))
	if err != nil {
		return err
	}
	key := it.RequestID
	if it.Type != store.OutboxRequested {
		key += ":" + it.Type
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "onair")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, zoom.Sign(d.cfg.Secrets[0], ts, []byte(it.Body)))
	req.Header.Set(HeaderIdempotency, key)
	resp, err := d.cfg.HTTP.Do(req)
	if err != nil {
		// Not the error's text: it holds the URL, which may carry a secret,
		// and it becomes the bot's detail, shown to the user.
		what := "no answer from the bot launcher"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			what = "the bot launcher did not answer in time"
		}
		return &retryable{err: errors.New(what)}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &retryable{err: fmt.Errorf("the bot launcher answered %s", resp.Status), after: retryAfter(resp.Header.Get("Retry-After"), d.cfg.Now())}
}

// retryAfter reads Retry-After as seconds or as an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// requestBody is bot.requested (CONTRACT §3).
type requestBody struct {
	Type        string        `json:"type"`
	RequestID   string        `json:"request_id"`
	Meeting     store.Meeting `json:"meeting"`
	RequestedBy struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"requested_by"`
	RequestedAt store.Time `json:"requested_at"`
	Join        join       `json:"join"`
}

// join is what a Meeting SDK bot needs; each piece is left out when it
// cannot be had.
type join struct {
	JoinURL       string `json:"join_url,omitempty"`
	MeetingNumber string `json:"meeting_number,omitempty"`
	Passcode      string `json:"passcode,omitempty"`
	OBFToken      string `json:"obf_token,omitempty"`
}

// noticeBody is owner.left, meeting.ended or bot.cancelled.
type noticeBody struct {
	Type      string        `json:"type"`
	RequestID string        `json:"request_id"`
	Meeting   store.Meeting `json:"meeting"`
	At        store.Time    `json:"at"`
}

// zoomAttempts bounds the attempts spent waiting for Zoom's join data.
const zoomAttempts = 3

// build makes an item's body, once. For a request it fetches the join data
// with the requesting user's Zoom token: a piece Zoom refuses (4xx) is left
// out with the reason in detail; a 429 or 5xx is retried.
func (d *Dispatcher) build(ctx context.Context, it store.OutboxItem) (body, detail string, err error) {
	if it.Type != store.OutboxRequested {
		b, err := json.Marshal(noticeBody{Type: it.Type, RequestID: it.RequestID, Meeting: it.Meeting, At: store.Time{Time: it.Queued}})
		return string(b), "", err
	}
	r := requestBody{Type: store.OutboxRequested, RequestID: it.RequestID, Meeting: it.Meeting,
		RequestedAt: store.Time{Time: it.RequestedAt}}
	r.RequestedBy.ID, r.RequestedBy.Email = it.User, it.UserEmail
	r.Join.MeetingNumber = it.Meeting.ID
	var missing []string
	if err := d.joinData(ctx, it, &r.Join, &missing); err != nil {
		if it.Attempts+1 < zoomAttempts {
			return "", "", err
		}
		// Zoom keeps failing: the launcher gets what there is, and the
		// reason, rather than nothing.
		missing = append(missing, "join data incomplete: Zoom did not answer after "+strconv.Itoa(zoomAttempts)+" attempts ("+err.Error()+")")
	}
	b, err := json.Marshal(r)
	return string(b), strings.Join(missing, "; "), err
}

func (d *Dispatcher) joinData(ctx context.Context, it store.OutboxItem, j *join, missing *[]string) error {
	if d.cfg.Zoom == nil || d.cfg.Tokens == nil {
		*missing = append(*missing, "join data left out: Zoom sign-in is not configured")
		return nil
	}
	access, err := d.cfg.Tokens.ZoomAccess(ctx, it.User)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrNoSecretKey):
		*missing = append(*missing, "join data left out: onair holds no Zoom token for this user (sign in with Zoom)")
		return nil
	case zoom.IsInvalidGrant(err):
		*missing = append(*missing, "join data left out: the user's Zoom grant was revoked")
		return nil
	case err != nil:
		return &retryable{err: fmt.Errorf("zoom token: %w", err)}
	}
	if j.MeetingNumber == "" {
		*missing = append(*missing, "join data left out: the meeting number is unknown")
		return nil
	}
	m, err := d.cfg.Zoom.GetMeeting(ctx, access, j.MeetingNumber)
	if err := refused(err, "join_url and passcode", missing); err != nil {
		return err
	}
	j.JoinURL, j.Passcode = m.JoinURL, m.Password
	tok, err := d.cfg.Zoom.OBFToken(ctx, access, it.User, j.MeetingNumber)
	if err := refused(err, "obf_token", missing); err != nil {
		return err
	}
	j.OBFToken = tok
	return nil
}

// refused sorts a Zoom call's error: nil on success or on a refusal for
// good (noted in missing), a retryable error otherwise.
func refused(err error, what string, missing *[]string) error {
	if err == nil {
		return nil
	}
	var ze *zoom.Error
	if errors.As(err, &ze) && ze.Status/100 == 4 && ze.Status != http.StatusTooManyRequests {
		*missing = append(*missing, fmt.Sprintf("%s left out: Zoom answered %d %s", what, ze.Status, ze.Reason))
		return nil
	}
	if errors.As(err, &ze) {
		return &retryable{err: err, after: ze.RetryAfter}
	}
	return &retryable{err: err}
}
