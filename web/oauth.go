package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"onair/store"
	"onair/zoom"
)

// oauthCookie binds a sign-in to the browser that started it: it carries
// the state and the PKCE verifier until Zoom sends the browser back.
const (
	oauthCookie     = "onair_oauth"
	oauthCookiePath = "/auth/zoom"
	oauthCookieTTL  = 10 * time.Minute
)

func (s *Server) redirectURI() string {
	return strings.TrimSuffix(s.cfg.PublicURL.String(), "/") + "/auth/zoom/callback"
}

// handleZoomLogin sends the browser to Zoom's consent page.
func (s *Server) handleZoomLogin(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Dev && !strings.EqualFold(r.Host, s.cfg.PublicURL.Host) {
		// Dev mode serves both localhost and 127.0.0.1, but Zoom sends the
		// browser back to the public URL's host: the state cookie must be
		// set there, or the callback cannot find it. (Only in dev mode:
		// behind a proxy that rewrites Host this would loop.)
		http.Redirect(w, r, strings.TrimSuffix(s.cfg.PublicURL.String(), "/")+"/auth/zoom/login", http.StatusFound)
		return
	}
	b := make([]byte, 24)
	rand.Read(b)
	state := base64.RawURLEncoding.EncodeToString(b)
	verifier := zoom.NewVerifier()
	http.SetCookie(w, &http.Cookie{
		Name: oauthCookie, Value: state + "." + verifier, Path: oauthCookiePath, MaxAge: int(oauthCookieTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secureCookies(),
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.cfg.Zoom.AuthorizeURL(s.redirectURI(), state, verifier), http.StatusFound)
}

// handleZoomCallback finishes the sign-in: state, code exchange, /users/me,
// then the session. Any failure creates no session and shows why.
func (s *Server) handleZoomCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var state, verifier string
	if c, err := r.Cookie(oauthCookie); err == nil {
		state, verifier, _ = strings.Cut(c.Value, ".")
	}
	s.clearCookie(w, oauthCookie, oauthCookiePath) // one attempt per cookie
	fail := func(status int, reason, msg string, err error) {
		attrs := []any{"reason", reason}
		var ze *zoom.Error
		if errors.As(err, &ze) {
			// Zoom's own text may quote the authorization code: only the
			// status and the error code are logged.
			attrs = append(attrs, "zoom_status", ze.Status, "zoom_error", ze.Code)
		} else if err != nil {
			attrs = append(attrs, "err", err)
		}
		level := slog.LevelWarn
		if ze != nil && ze.Code == "invalid_client" {
			level = slog.LevelError // the operator's client id or secret is wrong
		}
		s.log.Log(r.Context(), level, "zoom sign-in failed", attrs...)
		s.renderPage(w, r, status, msg)
	}
	switch {
	case q.Get("error") != "":
		// Only a known error is named: the parameter is anyone's to write.
		msg := "Zoom did not sign you in. You can try again."
		if q.Get("error") == "access_denied" {
			msg = "Sign-in was cancelled: Zoom did not grant access. You can try again."
		}
		fail(http.StatusForbidden, "zoom_error", msg, nil)
		return
	case state == "" || verifier == "":
		fail(http.StatusBadRequest, "no_state", "This sign-in expired or was started in another browser. Please sign in again.", nil)
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
		fail(http.StatusBadRequest, "bad_state", "This sign-in link does not match the one this browser started. Please sign in again.", nil)
		return
	case q.Get("code") == "":
		fail(http.StatusBadRequest, "no_code", "Zoom sent the browser back without an authorization code. Please sign in again.", nil)
		return
	}
	ctx := r.Context()
	tok, err := s.cfg.Zoom.Exchange(ctx, q.Get("code"), s.redirectURI(), verifier)
	if err != nil {
		fail(http.StatusBadGateway, "token_exchange", "Zoom did not complete the sign-in ("+zoomReason(err)+"). Please try again.", err)
		return
	}
	me, err := s.cfg.Zoom.Me(ctx, tok.Access)
	if err != nil {
		fail(http.StatusBadGateway, "users_me", "Zoom did not tell onair who you are ("+zoomReason(err)+"). Please try again.", err)
		return
	}
	u := store.User{ID: me.ID, Email: me.Email, Name: me.Name()}
	grant := store.ZoomToken{Access: tok.Access, Refresh: tok.Refresh, Expiry: tok.Expiry, Scope: tok.Scope}
	if err := s.startSession(ctx, w, r, u, &grant); err != nil {
		fail(http.StatusServiceUnavailable, "store", "onair could not save the sign-in. Please try again in a moment.", err)
		return
	}
	s.log.Info("signed in with zoom", "user", me.ID)
	http.Redirect(w, r, "/", http.StatusFound)
}

// zoomReason says briefly, for the person signing in, what went wrong.
func zoomReason(err error) string {
	var ze *zoom.Error
	if errors.As(err, &ze) {
		switch {
		case ze.Code == "invalid_client":
			return "Zoom refused onair's app credentials; the operator must check ZOOM_CLIENT_ID and ZOOM_CLIENT_SECRET"
		case ze.Status == http.StatusUnauthorized:
			return "Zoom rejected the access token"
		case ze.Code == "invalid_grant":
			return "the authorization code was not accepted"
		case ze.Status >= 500:
			return "Zoom answered with a server error"
		}
		return "Zoom answered " + http.StatusText(ze.Status)
	}
	return "Zoom could not be reached"
}
