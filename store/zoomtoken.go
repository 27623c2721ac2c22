package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// ZoomToken is a user's Zoom OAuth grant. Both tokens are sealed with
// AES-GCM under Options.SecretKey before they reach the database.
type ZoomToken struct {
	Access  string
	Refresh string
	Expiry  time.Time // of the access token
	Scope   string
}

// ErrNoSecretKey says Zoom tokens cannot be kept: Open was given no key.
var ErrNoSecretKey = errors.New("no secret key to seal Zoom tokens with")

type sealedToken struct {
	access, refresh []byte
	expiry          int64
	scope           string
}

// seal encrypts both tokens; the user id and the field name are the
// additional data, so a sealed value cannot be moved to another row or field.
func (s *Store) seal(user string, t ZoomToken) (sealedToken, error) {
	if s.aead == nil {
		return sealedToken{}, ErrNoSecretKey
	}
	return sealedToken{s.sealBytes("access\x00"+user, t.Access), s.sealBytes("refresh\x00"+user, t.Refresh),
		ms(t.Expiry), t.Scope}, nil
}

func (s *Store) open(user, field string, sealed []byte) (string, error) {
	plain, err := s.openBytes(field+"\x00"+user, sealed)
	if err != nil {
		return "", fmt.Errorf("zoom token: cannot open %s (was ONAIR_SECRET_KEY changed?): %w", field, err)
	}
	return plain, nil
}

// sealBytes seals v with AES-GCM under the secret key, ad naming its place
// (a sealed value moved elsewhere does not open): nonce, then ciphertext.
func (s *Store) sealBytes(ad, v string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(v)+s.aead.Overhead())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, []byte(v), []byte(ad))
}

// openBytes opens what sealBytes sealed for the same place.
func (s *Store) openBytes(ad string, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed value too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(ad))
	return string(plain), err
}

// UseSecretKey sets the key that seals Zoom tokens when it was not known at
// Open (dev mode keeps a generated one in the database). Call it before the
// store is in use.
func (s *Store) UseSecretKey(key []byte) error {
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	s.aead = aead
	return nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key: want 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ZoomToken returns the user's Zoom grant: ErrNotFound when there is none.
func (s *Store) ZoomToken(ctx context.Context, user string) (ZoomToken, error) {
	if s.aead == nil {
		return ZoomToken{}, ErrNoSecretKey
	}
	var access, refresh []byte
	var exp int64
	var t ZoomToken
	err := s.read.QueryRowContext(ctx, `SELECT access, refresh, expires_at, scope FROM zoom_tokens WHERE user_id = ?`, user).
		Scan(&access, &refresh, &exp, &t.Scope)
	if err == sql.ErrNoRows {
		return ZoomToken{}, ErrNotFound
	}
	if err != nil {
		return ZoomToken{}, fmt.Errorf("zoom token: %w", err)
	}
	if t.Access, err = s.open(user, "access", access); err != nil {
		return ZoomToken{}, err
	}
	if t.Refresh, err = s.open(user, "refresh", refresh); err != nil {
		return ZoomToken{}, err
	}
	t.Expiry = time.UnixMilli(exp).UTC()
	return t, nil
}

// SaveZoomToken replaces a known user's Zoom grant (after a refresh, whose
// rotated refresh token must be stored before it is used).
func (s *Store) SaveZoomToken(ctx context.Context, user string, t ZoomToken) error {
	sealed, err := s.seal(user, t)
	if err != nil {
		return err
	}
	return s.w.do(ctx, func(tx *Tx) error {
		ok, err := tx.userExists(user)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound // deauthorized meanwhile: keep nothing
		}
		return tx.saveToken(user, sealed)
	})
}

// RevokeZoomGrant forgets a user's Zoom grant and ends their sessions in one
// transaction (Zoom refused the grant for good): no session may outlive the
// grant it was signed in with.
func (s *Store) RevokeZoomGrant(ctx context.Context, user string) error {
	return s.w.do(ctx, func(tx *Tx) error {
		if _, err := tx.exec(`DELETE FROM zoom_tokens WHERE user_id = ?`, user); err != nil {
			return err
		}
		if _, err := tx.exec(`DELETE FROM sessions WHERE user_id = ?`, user); err != nil {
			return err
		}
		tx.out.Logouts = append(tx.out.Logouts, Logout{User: user})
		return nil
	})
}

func (tx *Tx) saveToken(user string, t sealedToken) error {
	_, err := tx.exec(`INSERT INTO zoom_tokens (user_id, access, refresh, expires_at, scope, updated_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET access = excluded.access, refresh = excluded.refresh,
			expires_at = excluded.expires_at, scope = excluded.scope, updated_at = excluded.updated_at`,
		user, t.access, t.refresh, t.expiry, t.scope, ms(tx.now))
	if err != nil {
		return fmt.Errorf("save zoom token: %w", err)
	}
	return nil
}

// sealString is sealBytes as base64 text, for TEXT columns.
func (s *Store) sealString(ad, v string) string {
	return base64.StdEncoding.EncodeToString(s.sealBytes(ad, v))
}

// openString opens what sealString sealed for the same place.
func (s *Store) openString(ad, sealed string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return "", err
	}
	return s.openBytes(ad, b)
}
