package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"onair/store"
)

type userKey struct{}

// authed admits requests carrying a valid connection token as
// "Authorization: Bearer"; a valid token makes its user known.
func (s *Server) authed(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.cors(w, r)
		// A 401 names the scheme it wants (RFC 9110 §11.6.1).
		w.Header().Set("WWW-Authenticate", `Bearer realm="onair"`)
		tok := bearerToken(r.Header.Get("Authorization"))
		if tok == "" {
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing credentials: send Authorization: Bearer <connection token>")
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
		w.Header().Del("WWW-Authenticate")
		next(w, r.WithContext(context.WithValue(r.Context(), userKey{}, claims.user)))
	})
}

// bearerToken returns the token of an "Authorization: Bearer" header, or "".
// The scheme is case-insensitive (RFC 9110 §11.1).
func bearerToken(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
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
