package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Session is a signed-in browser. Its id lives only in the browser's
// cookie; the store keeps a keyed hash of it.
type Session struct {
	User    string
	Expires time.Time
}

// SessionKey is what the store keeps of a session id, and what groups the
// session's sockets (so logout can close exactly those).
func (s *Store) SessionKey(id string) string { return s.hash("session", id) }

const qSession = `SELECT user_id, expires_at FROM sessions WHERE id_hash = ? AND expires_at > ?`

// Session returns the live session with this id: ErrNotFound when there is
// none or it has expired.
func (s *Store) Session(ctx context.Context, id string) (Session, error) {
	var sess Session
	var exp int64
	err := s.readStmts[qSession].QueryRowContext(ctx, s.SessionKey(id), ms(s.opts.Now())).Scan(&sess.User, &exp)
	if err == sql.ErrNoRows {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	sess.Expires = time.UnixMilli(exp).UTC()
	return sess, nil
}

// RenewSession moves a live session's expiry to expires (sliding renewal).
func (s *Store) RenewSession(ctx context.Context, id string, expires time.Time) error {
	return s.w.do(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE sessions SET expires_at = ? WHERE id_hash = ? AND expires_at > ?`,
			ms(expires), s.SessionKey(id), ms(tx.now))
		return err
	})
}

// EndSession deletes a session (its sockets are closed on commit, as a
// Logout); ending one that is gone is not an error.
func (s *Store) EndSession(ctx context.Context, id string) error {
	key := s.SessionKey(id)
	return s.w.do(ctx, func(tx *Tx) error {
		var user string
		err := tx.queryRow(`DELETE FROM sessions WHERE id_hash = ? RETURNING user_id`, key).Scan(&user)
		if err == sql.ErrNoRows {
			return nil
		}
		if err != nil {
			return err
		}
		tx.out.Logouts = append(tx.out.Logouts, Logout{User: user, Session: key})
		return nil
	})
}

// SignIn is a completed sign-in: who it is, their Zoom tokens (nil for the
// dev-mode demo user) and the new session.
type SignIn struct {
	User           User // ID, Email, Name; settings are left as they are
	Token          *ZoomToken
	SessionID      string
	SessionExpires time.Time
}

// SignIn records a sign-in in one transaction: the user becomes known (a
// sign-in is a return after an app_deauthorized), their profile and Zoom
// tokens are saved and the session is created.
func (s *Store) SignIn(ctx context.Context, in SignIn) error {
	var sealed sealedToken
	if in.Token != nil {
		var err error
		if sealed, err = s.seal(in.User.ID, *in.Token); err != nil {
			return err
		}
	}
	return s.w.do(ctx, func(tx *Tx) error {
		// Recorded even with no deauthorization known: one that Zoom
		// delivers late, from before this sign-in, must not undo it.
		if _, err := tx.exec(`INSERT INTO deauthorizations (user_hash, deauthorized_at, returned_at) VALUES (?, 0, ?)
			ON CONFLICT (user_hash) DO UPDATE SET returned_at = excluded.returned_at`,
			s.hash("user", in.User.ID), ms(tx.now)); err != nil {
			return fmt.Errorf("sign in: %w", err)
		}
		if err := tx.createUser(in.User.ID); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE users SET email = ?, name = ? WHERE id = ?`,
			in.User.Email, in.User.Name, in.User.ID); err != nil {
			return fmt.Errorf("sign in: %w", err)
		}
		if in.Token != nil {
			if err := tx.saveToken(in.User.ID, sealed); err != nil {
				return err
			}
		}
		if _, err := tx.exec(`INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			s.SessionKey(in.SessionID), in.User.ID, ms(tx.now), ms(in.SessionExpires)); err != nil {
			return fmt.Errorf("create session: %w", err)
		}
		return nil
	})
}
