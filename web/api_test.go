package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"onair/hub"
	"onair/store"
)

// apiGet sends GET path with an optional Bearer token and Origin and
// returns the response with its body read.
func apiGet(e *testEnv, path, token, origin string) (*http.Response, []byte) {
	e.t.Helper()
	return apiDo(e, http.MethodGet, path, token, origin, nil)
}

func apiDo(e *testEnv, method, path, token, origin string, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// apiMustJSON requires status and a JSON body, and decodes it into raw fields.
func apiMustJSON(t testing.TB, resp *http.Response, body []byte, status int) map[string]json.RawMessage {
	t.Helper()
	if got, want := resp.StatusCode, status; got != want {
		t.Fatalf("status: got %d (%s), want %d", got, body, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/json"; !strings.HasPrefix(got, want) {
		t.Fatalf("Content-Type: got %q, want %q", got, want)
	}
	return sockRawFields(t, body)
}

// apiMustError requires a 401-style error body {"error":{"code","message"}}.
func apiMustError(t testing.TB, resp *http.Response, body []byte, status int) {
	t.Helper()
	top := apiMustJSON(t, resp, body, status)
	if got, want := sockKeys(top), "error"; got != want {
		t.Fatalf("error body keys: got %s, want %s", got, want)
	}
	var e struct {
		Code    *string `json:"code"`
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(top["error"], &e); err != nil {
		t.Fatalf("error object %s: %v", top["error"], err)
	}
	if e.Code == nil || *e.Code == "" || e.Message == nil || *e.Message == "" {
		t.Fatalf("error object: got %s, want a code and a message", top["error"])
	}
}

func TestAPIMe(t *testing.T) {
	e := newEnv(t)
	user := "api-me"
	if _, err := e.store.User(context.Background(), user); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user before any token use: got err %v, want ErrNotFound", err)
	}
	resp, body := apiGet(e, "/api/v1/me", e.token(user), "")
	top := apiMustJSON(t, resp, body, http.StatusOK)
	if got, want := sockKeys(top), "user"; got != want {
		t.Fatalf("keys: got %s, want %s", got, want)
	}
	u := sockRawFields(t, top["user"])
	if got, want := sockKeys(u), "auto_send_bot,email,id,name"; got != want {
		t.Fatalf("user keys: got %s, want %s", got, want)
	}
	for k, want := range map[string]string{"id": `"api-me"`, "email": `""`, "name": `""`, "auto_send_bot": "false"} {
		if got := string(u[k]); got != want {
			t.Fatalf("user %s: got %s, want %s", k, got, want)
		}
	}
	t.Run("the user is known after the first token use", func(t *testing.T) {
		if _, err := e.store.User(context.Background(), user); err != nil {
			t.Fatalf("user after the token use: %v", err)
		}
		// Participant events now take effect for them.
		c, _ := e.connect(user, nil)
		e.mustPost(event{Name: "meeting.participant_joined", UUID: "api-me-m", Host: "api-me-host", Topic: "T", Participant: user}.body(), http.StatusOK)
		f := c.read()
		if got, want := f.Type, "meeting.joined"; got != want {
			t.Fatalf("frame: got %q, want %q", got, want)
		}
	})
	t.Run("no store", func(t *testing.T) {
		resp, _ := apiGet(e, "/api/v1/me", e.token(user), "")
		if got, want := resp.Header.Get("Cache-Control"), "no-store"; got != want {
			t.Fatalf("Cache-Control: got %q, want %q", got, want)
		}
	})
}

func TestAPILiveMeetings(t *testing.T) {
	e := newEnv(t)
	user := "api-live"
	tok := e.token(user)

	t.Run("none live is an empty array", func(t *testing.T) {
		resp, body := apiGet(e, "/api/v1/meetings/live", tok, "")
		top := apiMustJSON(t, resp, body, http.StatusOK)
		if got, want := string(top["meetings"]), "[]"; got != want {
			t.Fatalf("meetings: got %s, want %s", got, want)
		}
	})

	e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("api-old", user, "Old", "2026-12-04T09:00:00Z")), http.StatusOK)
	e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("api-new/==", user, "New", "2026-12-04T12:00:00+02:00")), http.StatusOK)
	e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("api-ended", user, "Ended", "2026-12-04T11:00:00Z")), http.StatusOK)
	e.mustPost(sockBody("meeting.ended", 0, sockMeetingObj("api-ended", user, "Ended", "2026-12-04T11:00:00Z")), http.StatusOK)
	e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("api-others", "api-other-host", "Others", "2026-12-04T08:00:00Z")), http.StatusOK)
	e.mustPost(event{Name: "meeting.participant_joined", UUID: "api-others", Host: "api-other-host", Topic: "Others", Participant: user}.body(), http.StatusOK)
	e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("api-unrelated", "api-other-host", "Unrelated", "2026-12-04T13:00:00Z")), http.StatusOK)

	t.Run("the caller's live meetings, newest first", func(t *testing.T) {
		resp, body := apiGet(e, "/api/v1/meetings/live", tok, "")
		top := apiMustJSON(t, resp, body, http.StatusOK)
		if got, want := sockKeys(top), "meetings"; got != want {
			t.Fatalf("keys: got %s, want %s", got, want)
		}
		var meetings []json.RawMessage
		if err := json.Unmarshal(top["meetings"], &meetings); err != nil {
			t.Fatal(err)
		}
		wants := []map[string]string{
			{"uuid": `"api-new/=="`, "start_time": `"2026-12-04T10:00:00.000Z"`, "role": `"host"`, "host_id": `"api-live"`, "topic": `"New"`},
			{"uuid": `"api-old"`, "start_time": `"2026-12-04T09:00:00.000Z"`, "role": `"host"`},
			{"uuid": `"api-others"`, "start_time": `"2026-12-04T08:00:00.000Z"`, "role": `"participant"`, "host_id": `"api-other-host"`},
		}
		if got, want := len(meetings), len(wants); got != want {
			t.Fatalf("meetings: got %d, want %d: %s", got, want, body)
		}
		for i, want := range wants {
			m := sockRawFields(t, meetings[i])
			if got, want := sockKeys(m), "duration,host_id,id,live,role,start_time,timezone,topic,type,uuid"; got != want {
				t.Fatalf("meeting %d keys: got %s, want %s", i, got, want)
			}
			for k, v := range want {
				if got := string(m[k]); got != v {
					t.Fatalf("meeting %d %s: got %s, want %s", i, k, got, v)
				}
			}
			for k, v := range map[string]string{"id": `"85746065432"`, "type": "2", "duration": "30", "timezone": `"Europe/Berlin"`, "live": "true"} {
				if got := string(m[k]); got != v {
					t.Fatalf("meeting %d %s: got %s, want %s", i, k, got, v)
				}
			}
		}
	})
	t.Run("another user sees only their own", func(t *testing.T) {
		resp, body := apiGet(e, "/api/v1/meetings/live", e.token("api-other-host"), "")
		top := apiMustJSON(t, resp, body, http.StatusOK)
		var meetings []store.Meeting
		if err := json.Unmarshal(top["meetings"], &meetings); err != nil {
			t.Fatal(err)
		}
		if got, want := len(meetings), 2; got != want {
			t.Fatalf("meetings: got %d, want %d: %s", got, want, body)
		}
		for _, m := range meetings {
			if m.HostID != "api-other-host" || m.Role != "host" {
				t.Fatalf("meeting of someone else: %+v", m)
			}
		}
	})
}

func TestAPIAuth(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	expired, err := MintToken(e.tokKey, "api-auth", time.Hour, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := MintToken([]byte("wrong-secret"), "api-auth", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	valid := jwt.MapClaims{"sub": "api-auth", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	cases := []struct {
		name   string
		header string // Authorization
	}{
		{"no credentials", ""},
		{"empty bearer", "Bearer "},
		{"basic auth", "Basic YXBpOmF1dGg="},
		{"token without scheme", e.token("api-auth")},
		{"garbage token", "Bearer not.a.jwt"},
		{"expired token", "Bearer " + expired},
		{"forged token", "Bearer " + forged},
		{"alg none", "Bearer " + sockJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid)},
		{"HS512", "Bearer " + sockJWT(t, jwt.SigningMethodHS512, e.tokKey, valid)},
		{"no exp", "Bearer " + sockJWT(t, jwt.SigningMethodHS256, e.tokKey, jwt.MapClaims{"sub": "api-auth"})},
	}
	for _, path := range []string{"/api/v1/me", "/api/v1/meetings/live"} {
		for _, tc := range cases {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				h := http.Header{}
				if tc.header != "" {
					h.Set("Authorization", tc.header)
				}
				resp, body := apiDo(e, http.MethodGet, path, "", "", h)
				apiMustError(t, resp, body, http.StatusUnauthorized)
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Fatalf("WWW-Authenticate: got %q, want the Bearer scheme", got)
				}
			})
		}
	}
	if _, err := e.store.User(context.Background(), "api-auth"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user after refused tokens: got err %v, want ErrNotFound", err)
	}
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		t.Run("scheme "+scheme+" is accepted", func(t *testing.T) {
			h := http.Header{}
			h.Set("Authorization", scheme+" "+e.token("api-auth-ok"))
			resp, body := apiDo(e, http.MethodGet, "/api/v1/me", "", "", h)
			apiMustJSON(t, resp, body, http.StatusOK)
			if got := resp.Header.Get("WWW-Authenticate"); got != "" {
				t.Fatalf("WWW-Authenticate on a 200: got %q, want none", got)
			}
		})
	}
}

func TestAPICORS(t *testing.T) {
	e := newEnv(t)
	tok := e.token("api-cors")

	t.Run("allowed origin gets CORS headers", func(t *testing.T) {
		resp, body := apiGet(e, "/api/v1/me", tok, e.origin)
		apiMustJSON(t, resp, body, http.StatusOK)
		if got, want := resp.Header.Get("Access-Control-Allow-Origin"), e.origin; got != want {
			t.Fatalf("Access-Control-Allow-Origin: got %q, want %q", got, want)
		}
		if got, want := resp.Header.Get("Access-Control-Allow-Credentials"), "true"; got != want {
			t.Fatalf("Access-Control-Allow-Credentials: got %q, want %q", got, want)
		}
		if got := strings.Join(resp.Header.Values("Vary"), ","); !strings.Contains(got, "Origin") {
			t.Fatalf("Vary: got %q, want Origin in it", got)
		}
	})
	t.Run("allowed origin gets CORS headers on a 401 too", func(t *testing.T) {
		resp, body := apiGet(e, "/api/v1/meetings/live", "", e.origin)
		apiMustError(t, resp, body, http.StatusUnauthorized)
		if got, want := resp.Header.Get("Access-Control-Allow-Origin"), e.origin; got != want {
			t.Fatalf("Access-Control-Allow-Origin: got %q, want %q", got, want)
		}
	})
	for _, origin := range []string{"http://evil.example", "https://app.example", "null"} {
		t.Run("foreign origin "+origin+" gets none", func(t *testing.T) {
			// Bearer requests are not bound to an origin: served, but without CORS.
			resp, body := apiGet(e, "/api/v1/me", tok, origin)
			apiMustJSON(t, resp, body, http.StatusOK)
			for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"} {
				if got := resp.Header.Get(h); got != "" {
					t.Fatalf("%s: got %q, want none", h, got)
				}
			}
		})
	}
	t.Run("no origin gets none", func(t *testing.T) {
		resp, body := apiGet(e, "/api/v1/me", tok, "")
		apiMustJSON(t, resp, body, http.StatusOK)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("Access-Control-Allow-Origin: got %q, want none", got)
		}
	})

	preflight := func(path, origin string) *http.Response {
		h := http.Header{}
		h.Set("Access-Control-Request-Method", "GET")
		h.Set("Access-Control-Request-Headers", "authorization")
		resp, _ := apiDo(e, http.MethodOptions, path, "", origin, h)
		return resp
	}
	for _, path := range []string{"/api/v1/me", "/api/v1/meetings/live"} {
		t.Run("preflight "+path+" from an allowed origin", func(t *testing.T) {
			resp := preflight(path, e.origin)
			if got := resp.StatusCode; got != http.StatusNoContent && got != http.StatusOK {
				t.Fatalf("status: got %d, want 204 or 200", got)
			}
			if got, want := resp.Header.Get("Access-Control-Allow-Origin"), e.origin; got != want {
				t.Fatalf("Access-Control-Allow-Origin: got %q, want %q", got, want)
			}
			if got := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "GET") {
				t.Fatalf("Access-Control-Allow-Methods: got %q, want GET in it", got)
			}
			if got := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "authorization") {
				t.Fatalf("Access-Control-Allow-Headers: got %q, want Authorization in it", got)
			}
		})
	}
	t.Run("preflight from a foreign origin", func(t *testing.T) {
		resp := preflight("/api/v1/me", "http://evil.example")
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("Access-Control-Allow-Origin: got %q, want none", got)
		}
		if got := resp.StatusCode; got/100 == 2 && resp.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Fatalf("foreign preflight allowed: %d %v", got, resp.Header)
		}
	})
}

func TestAPITokenRotation(t *testing.T) {
	current, previous := []byte("current-token-secret"), []byte("previous-token-secret")
	e := newEnv(t, func(c *Config, h *hub.Options) { c.TokenSecrets = [][]byte{current, previous} })
	for _, tc := range []struct {
		name   string
		secret []byte
		status int
	}{
		{"signed with the first secret", current, http.StatusOK},
		{"signed with the second secret", previous, http.StatusOK},
		{"signed with neither", []byte("retired-token-secret"), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := MintToken(tc.secret, "api-rotation", time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			resp, body := apiGet(e, "/api/v1/me", tok, "")
			if got, want := resp.StatusCode, tc.status; got != want {
				t.Fatalf("status: got %d (%s), want %d", got, body, want)
			}
			c := e.dial(nil)
			sockHello(c, tok)
			if tc.status != http.StatusOK {
				sockCloseQuietly(c, closeUnauthorized)
				return
			}
			if got, want := c.read().Type, "welcome"; got != want {
				t.Fatalf("first frame: got %q, want %q", got, want)
			}
		})
	}
}
