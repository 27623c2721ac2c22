package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"onair/store"
)

type userKey struct{}

// authed authenticates a request by "Authorization: Bearer" (a connection
// token, which also makes its user known) or else by the session cookie. A
// cookie-authenticated request that changes state needs an allowed Origin.
func (s *Server) authed(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.cors(w, r)
		// A 401 names the scheme it wants (RFC 9110 §11.6.1).
		w.Header().Set("WWW-Authenticate", `Bearer realm="onair"`)
		var user string
		// Only a Bearer header is onair's: another scheme (a proxy's Basic
		// auth, say) leaves the request to the cookie.
		if tok, isBearer := bearerToken(r.Header.Get("Authorization")); isBearer {
			if tok == "" {
				writeError(w, http.StatusUnauthorized, "unauthorized", "malformed Authorization: send Bearer <connection token>")
				return
			}
			claims, err := s.verifyToken(tok)
			if err != nil {
				writeError(w, http.StatusUnauthorized, "unauthorized", "invalid or expired token")
				return
			}
			if err := s.store.Admit(r.Context(), claims.user, claims.issuedAt); err != nil {
				if errors.Is(err, store.ErrDeauthorized) {
					writeError(w, http.StatusUnauthorized, "unauthorized", "token issued before the app was deauthorized")
					return
				}
				s.internalError(w, "admit user", err)
				return
			}
			user = claims.user
		} else {
			sess, ok := s.sessionFrom(w, r)
			if !ok {
				writeError(w, http.StatusUnauthorized, "unauthorized", "missing credentials: sign in, or send Authorization: Bearer <connection token>")
				return
			}
			if !safeMethod(r.Method) && !s.sameOriginWrite(w, r) {
				return
			}
			user = sess.user
		}
		w.Header().Del("WWW-Authenticate")
		next(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// bearerToken returns the token of an "Authorization: Bearer" header and
// whether the header uses that scheme. The scheme is case-insensitive (RFC
// 9110 §11.1).
func bearerToken(h string) (string, bool) {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func requestUser(r *http.Request) string { return r.Context().Value(userKey{}).(string) }

func (s *Server) internalError(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	writeError(w, http.StatusServiceUnavailable, "unavailable", "temporarily unavailable; retry")
}

// userJSON is the API's view of a user.
type userJSON struct {
	ID          string `json:"id"`
	Email       string `json:"email"`
	Name        string `json:"name"`
	AutoSendBot bool   `json:"auto_send_bot"`
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	u, err := s.store.User(r.Context(), requestUser(r))
	if err != nil {
		s.internalError(w, "read user", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userJSON{ID: u.ID, Email: u.Email, Name: u.Name, AutoSendBot: u.AutoSendBot}})
}

func (s *Server) handleLiveMeetings(w http.ResponseWriter, r *http.Request) {
	meetings, err := s.store.LiveMeetings(r.Context(), requestUser(r))
	if err != nil {
		s.internalError(w, "read live meetings", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"meetings": meetings})
}

// handleSettings changes the caller's settings: {"auto_send_bot": bool}.
// The body must be one JSON object; unknown fields are ignored, and a
// known field of the wrong type (null included) is a 400.
func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	bad := func() {
		writeError(w, http.StatusBadRequest, "bad_request", `body must be one JSON object like {"auto_send_bot": true}`)
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		bad()
		return
	}
	if _, err := dec.Token(); err != io.EOF { // nothing may follow the object
		bad()
		return
	}
	var autoSend *bool
	if raw, ok := fields["auto_send_bot"]; ok { // exact key: JSON is case-sensitive
		var v bool
		if string(raw) == "null" || json.Unmarshal(raw, &v) != nil {
			bad()
			return
		}
		autoSend = &v
	}
	user := requestUser(r)
	u, err := s.store.User(r.Context(), user)
	if autoSend != nil && err == nil {
		u, err = s.store.SetAutoSendBot(r.Context(), user, *autoSend)
	}
	if err != nil {
		s.internalError(w, "save settings", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userJSON{ID: u.ID, Email: u.Email, Name: u.Name, AutoSendBot: u.AutoSendBot}})
}
