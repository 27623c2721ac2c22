package web

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"onair/store"
	"onair/zoom"
)

// ErrSignInAgain says the user's Zoom grant is gone for good (Zoom answered
// invalid_grant): their sessions were ended and they must sign in again.
var ErrSignInAgain = errors.New("zoom grant revoked: sign in again")

// tokenEarly is how long before its expiry an access token is refreshed,
// so that a call made with it does not fail in flight.
const tokenEarly = time.Minute

// zoomTokens hands out users' Zoom access tokens, refreshing an expired
// one once per user at a time: concurrent callers wait for that refresh.
type zoomTokens struct {
	mu       sync.Mutex
	inflight map[string]*refresh
}

type refresh struct {
	done  chan struct{}
	token string
	err   error
}

// ZoomAccess returns a valid Zoom access token for user. The rotated
// refresh token is saved before the new access token is used: a crash after
// Zoom's answer must not leave the old, now dead, refresh token stored.
func (s *Server) ZoomAccess(ctx context.Context, user string) (string, error) {
	if s.cfg.Zoom == nil {
		return "", store.ErrNotFound // without Zoom sign-in, no grant is held
	}
	t, err := s.store.ZoomToken(ctx, user)
	if err != nil {
		return "", err
	}
	if s.cfg.Now().Add(tokenEarly).Before(t.Expiry) {
		return t.Access, nil
	}
	zt := &s.zoomTokens
	zt.mu.Lock()
	if zt.inflight == nil {
		zt.inflight = map[string]*refresh{}
	}
	if r, ok := zt.inflight[user]; ok {
		zt.mu.Unlock()
		select {
		case <-r.done:
			return r.token, r.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	r := &refresh{done: make(chan struct{})}
	zt.inflight[user] = r
	zt.mu.Unlock()

	// The refresh outlives one caller's cancellation: others wait on it.
	r.token, r.err = s.refreshZoomToken(context.WithoutCancel(ctx), user)
	zt.mu.Lock()
	delete(zt.inflight, user)
	zt.mu.Unlock()
	close(r.done)
	return r.token, r.err
}

// refreshZoomToken refreshes the user's grant, one refresh at a time
// across the nodes sharing the database: Zoom kills the old refresh token
// when it hands out the next, so a second refresh with it would fail with
// invalid_grant and sign the user out. A node that finds another's refresh
// running waits for it and reads what it saved.
func (s *Server) refreshZoomToken(ctx context.Context, user string) (string, error) {
	for wait := 0; ; wait++ {
		var token string
		ran, err := s.store.Once(ctx, "zoom-refresh\x00"+user, func(ctx context.Context) error {
			var err error
			token, err = s.refreshOnce(ctx, user)
			return err
		})
		if ran || err != nil {
			return token, err
		}
		if wait == 100 {
			return "", errors.New("another node's refresh of the Zoom grant did not finish within 10 s")
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (s *Server) refreshOnce(ctx context.Context, user string) (string, error) {
	// Read again: a refresh that just finished has saved a new grant.
	t, err := s.store.ZoomToken(ctx, user)
	if err != nil {
		return "", err
	}
	if s.cfg.Now().Add(tokenEarly).Before(t.Expiry) {
		return t.Access, nil
	}
	nt, err := s.cfg.Zoom.Refresh(ctx, t.Refresh)
	if zoom.IsInvalidGrant(err) {
		s.log.Warn("zoom refused the refresh token: the user must sign in again", "user", user)
		if err := s.store.RevokeZoomGrant(ctx, user); err != nil { // its sessions' sockets close on commit
			return "", err
		}
		return "", fmt.Errorf("%w: %w", ErrSignInAgain, err) // still zoom.IsInvalidGrant
	}
	if err != nil {
		return "", err
	}
	// Zoom has already killed the old refresh token: losing the new one
	// would sign the user out at the next refresh, so the save is retried.
	saved := store.ZoomToken{Access: nt.Access, Refresh: nt.Refresh, Expiry: nt.Expiry, Scope: nt.Scope}
	for attempt := 1; ; attempt++ {
		err = s.store.SaveZoomToken(ctx, user, saved)
		if err == nil || errors.Is(err, store.ErrNotFound) || attempt == 3 {
			break
		}
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
	if err != nil {
		s.log.Error("saving a rotated Zoom refresh token failed: the user will have to sign in again", "user", user, "err", err)
		return "", err
	}
	return nt.Access, nil
}
