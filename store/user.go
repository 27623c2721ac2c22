package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// User is an onair user: a Zoom user id and what onair keeps about them.
type User struct {
	ID          string
	Email       string
	Name        string
	AutoSendBot bool
}

// User returns a known user, or ErrNotFound.
func (s *Store) User(ctx context.Context, id string) (User, error) {
	u := User{ID: id}
	err := s.read.QueryRowContext(ctx, `SELECT email, name, auto_send_bot FROM users WHERE id = ?`, id).
		Scan(&u.Email, &u.Name, &u.AutoSendBot)
	if err == sql.ErrNoRows {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("user: %w", err)
	}
	return u, nil
}

const qAdmit = `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?),
		(SELECT deauthorized_at FROM deauthorizations WHERE user_hash = ?)`

// Admit makes id a known user on the strength of a credential issued at
// issuedAt (zero when unknown). After an app_deauthorized, only a
// credential issued since then admits the user, and marks their return.
func (s *Store) Admit(ctx context.Context, id string, issuedAt time.Time) error {
	h := s.hash("user", id)
	var exists bool
	var deauthAt sql.NullInt64
	err := s.readStmts[qAdmit].QueryRowContext(ctx, id, h).Scan(&exists, &deauthAt)
	if err != nil {
		return fmt.Errorf("admit: %w", err)
	}
	if deauthAt.Valid && !issuedAfter(issuedAt, deauthAt.Int64) {
		return ErrDeauthorized
	}
	if exists {
		return nil
	}
	return s.w.do(ctx, func(tx *Tx) error {
		var deauthAt sql.NullInt64
		err := tx.queryRow(`SELECT deauthorized_at FROM deauthorizations WHERE user_hash = ?`, h).Scan(&deauthAt)
		if err != nil && err != sql.ErrNoRows {
			return fmt.Errorf("admit: %w", err)
		}
		if deauthAt.Valid {
			if !issuedAfter(issuedAt, deauthAt.Int64) {
				return ErrDeauthorized
			}
			if _, err := tx.exec(`UPDATE deauthorizations SET returned_at = ? WHERE user_hash = ?`, ms(tx.now), h); err != nil {
				return fmt.Errorf("admit: %w", err)
			}
		}
		return tx.createUser(id)
	})
}

// issuedAfter compares a credential's issue time (whole seconds, as JWT iat)
// with a deauthorization time in milliseconds: the same second counts as after.
func issuedAfter(issuedAt time.Time, deauthMS int64) bool {
	return !issuedAt.IsZero() && issuedAt.Unix() >= deauthMS/1000
}

func (tx *Tx) userExists(id string) (bool, error) {
	if ok, cached := tx.known[id]; cached {
		return ok, nil
	}
	if _, ok := tx.s.w.users[id]; ok {
		tx.known[id] = true
		return true, nil
	}
	var n int
	err := tx.queryRow(`SELECT 1 FROM users WHERE id = ?`, id).Scan(&n)
	if err == sql.ErrNoRows {
		tx.known[id] = false
		return false, nil
	}
	if err != nil {
		return false, err
	}
	tx.known[id] = true
	return true, nil
}

// ensureUser makes a host known; false when they are deauthorized (a user
// row exists exactly when a user is known and not deauthorized).
func (tx *Tx) ensureUser(id string) (bool, error) {
	if ok, err := tx.userExists(id); ok || err != nil {
		return ok, err
	}
	if gone, err := tx.deauthorized(id); gone || err != nil {
		return false, err
	}
	return true, tx.createUser(id)
}

// deauthorized reports whether id deauthorized the app and has not come back.
func (tx *Tx) deauthorized(id string) (bool, error) {
	if ok, err := tx.userExists(id); ok || err != nil {
		return false, err
	}
	var n int
	err := tx.queryRow(`SELECT 1 FROM deauthorizations WHERE user_hash = ? AND returned_at < deauthorized_at`,
		tx.s.hash("user", id)).Scan(&n)
	switch {
	case err == nil:
		return true, nil
	case err != sql.ErrNoRows:
		return false, fmt.Errorf("load deauthorization: %w", err)
	}
	return false, nil
}

func (tx *Tx) createUser(id string) error {
	_, err := tx.exec(`INSERT INTO users (id, gen, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		id, randomHex(4), ms(tx.now))
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	tx.known[id] = true
	return nil
}

// SetAutoSendBot changes the user's auto-send setting and returns the user.
func (s *Store) SetAutoSendBot(ctx context.Context, id string, on bool) (User, error) {
	err := s.w.do(ctx, func(tx *Tx) error {
		res, err := tx.exec(`UPDATE users SET auto_send_bot = ? WHERE id = ?`, on, id)
		if err != nil {
			return fmt.Errorf("settings: %w", err)
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return User{}, err
	}
	return s.User(ctx, id)
}
