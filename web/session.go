package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"onair/store"
)

// sessionCookie holds a browser's session id: 256 random bits, of which
// the store keeps only a keyed hash.
const sessionCookie = "onair_session"

// sessionRenewAfter is how much of a session's life passes before a use
// renews it: renewing on every request would write on every request.
const sessionRenewAfter = time.Hour

type session struct {
	id      string
	key     string // what the store keeps, and the tag of the session's sockets
	user    string
	expires time.Time
}

// sessionFrom returns the request's live session; false when there is none.
// A session used after sessionRenewAfter is renewed (sliding expiry).
func (s *Server) sessionFrom(w http.ResponseWriter, r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	sess, err := s.store.Session(r.Context(), c.Value)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("read session", "err", err)
		}
		return session{}, false
	}
	out := session{id: c.Value, key: s.store.SessionKey(c.Value), user: sess.User, expires: sess.Expires}
	if w != nil && sess.Expires.Sub(s.cfg.Now()) < s.cfg.SessionTTL-sessionRenewAfter {
		expires := s.cfg.Now().Add(s.cfg.SessionTTL)
		if err := s.store.RenewSession(r.Context(), c.Value, expires); err != nil {
			s.log.Warn("renew session", "err", err)
		} else {
			s.setSessionCookie(w, c.Value, expires)
			out.expires = expires
		}
	}
	return out, true
}

// startSession signs the browser in as user: a new session and its cookie.
// tok is the user's Zoom grant (nil for the dev-mode demo user). A session
// the browser already had ends, with its sockets.
func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, u store.User, tok *store.ZoomToken) error {
	if old, ok := s.sessionFrom(nil, r); ok {
		if err := s.store.EndSession(ctx, old.id); err != nil { // its sockets close on commit
			return err
		}
	}
	b := make([]byte, 32)
	rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	expires := s.cfg.Now().Add(s.cfg.SessionTTL)
	if err := s.store.SignIn(ctx, store.SignIn{User: u, Token: tok, SessionID: id, SessionExpires: expires}); err != nil {
		return err
	}
	s.setSessionCookie(w, id, expires)
	return nil
}

func (s *Server) setSessionCookie(w http.ResponseWriter, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: expires, MaxAge: int(expires.Sub(s.cfg.Now()).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secureCookies(),
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secureCookies()})
}

func (s *Server) secureCookies() bool {
	return s.cfg.PublicURL != nil && s.cfg.PublicURL.Scheme == "https"
}

// handleLogout ends this browser's session and closes the sockets opened
// with it; the user's other sessions stay.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if !s.sameOriginWrite(w, r) {
		return
	}
	if sess, ok := s.sessionFrom(nil, r); ok {
		if err := s.store.EndSession(r.Context(), sess.id); err != nil { // its sockets close on commit
			s.internalError(w, "end session", err)
			return
		}
	}
	s.clearCookie(w, sessionCookie, "/")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// sameOriginWrite guards a cookie-authenticated state-changing request
// against cross-site requests: the browser's Origin must be allowed. It
// answers 403 and returns false otherwise.
func (s *Server) sameOriginWrite(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !s.originAllowed(origin) {
		writeError(w, http.StatusForbidden, "forbidden_origin", "a state-changing request needs an allowed Origin")
		return false
	}
	return true
}
