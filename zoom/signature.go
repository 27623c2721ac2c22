// Package zoom holds Zoom's wire formats: webhook signatures, event payloads
// and the URL-validation answer.
package zoom

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"sync"
	"time"
)

// Headers Zoom sets on every webhook delivery.
const (
	HeaderTimestamp = "x-zm-request-timestamp"
	HeaderSignature = "x-zm-signature"
)

var (
	ErrBadTimestamp = errors.New("missing or malformed x-zm-request-timestamp")
	ErrStale        = errors.New("x-zm-request-timestamp outside the accepted window")
	ErrBadSignature = errors.New("missing or wrong x-zm-signature")
)

// Sign returns the x-zm-signature value for a body sent at timestamp ts.
func Sign(secret []byte, ts string, body []byte) string {
	return "v0=" + hex.EncodeToString(mac(secret, ts, body))
}

// mac is HMAC-SHA256 of what Zoom signs: "v0:{timestamp}:{body}".
func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return m.Sum(nil)
}

// CheckTimestamp accepts a Unix-seconds timestamp within maxSkew of now.
func CheckTimestamp(ts string, now time.Time, maxSkew time.Duration) error {
	if ts == "" || len(ts) > 12 {
		return ErrBadTimestamp
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' { // ParseInt alone would take "+1764856000"
			return ErrBadTimestamp
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return ErrBadTimestamp
	}
	d := now.Sub(time.Unix(sec, 0))
	if d > maxSkew || d < -maxSkew {
		return ErrStale
	}
	return nil
}

// Signatures checks webhook signatures against the secrets in use (more than
// one while a secret is rotated). It keeps an HMAC state per secret for
// reuse: a fresh one is ~0.6 KB of garbage per webhook, and collecting
// garbage delays the frames in flight.
type Signatures struct {
	secrets [][]byte
	macs    []sync.Pool // of *macState, one pool per secret
}

// macState is an HMAC state with room for the signed prefix and the sum,
// which would otherwise escape through the hash.Hash interface.
type macState struct {
	h   hash.Hash
	buf [64]byte
}

// NewSignatures returns a Signatures for secrets.
func NewSignatures(secrets [][]byte) *Signatures {
	v := &Signatures{secrets: secrets, macs: make([]sync.Pool, len(secrets))}
	for i, s := range secrets {
		v.macs[i].New = func() any { return &macState{h: hmac.New(sha256.New, s)} }
	}
	return v
}

// Verify checks signature against every secret in constant time and returns
// the secret that produced it: the URL-validation answer must use that one.
func (v *Signatures) Verify(ts string, body []byte, signature string) ([]byte, error) {
	const prefix = "v0="
	if len(signature) != len(prefix)+sha256.Size*2 || signature[:len(prefix)] != prefix {
		return nil, ErrBadSignature
	}
	var got [sha256.Size]byte
	for i := range got {
		hi, ok1 := lowerHex(signature[len(prefix)+2*i])
		lo, ok2 := lowerHex(signature[len(prefix)+2*i+1])
		if !ok1 || !ok2 {
			return nil, ErrBadSignature // not hex, or not lowercase hex
		}
		got[i] = hi<<4 | lo
	}
	var match []byte
	for i, s := range v.secrets {
		m := v.macs[i].Get().(*macState)
		m.h.Reset()
		m.h.Write(append(append(append(m.buf[:0], "v0:"...), ts...), ':'))
		m.h.Write(body)
		equal := hmac.Equal(got[:], m.h.Sum(m.buf[:0]))
		v.macs[i].Put(m)
		// Every secret is tried, so timing does not tell which one matched.
		if equal && match == nil {
			match = s
		}
	}
	if match == nil {
		return nil, ErrBadSignature
	}
	return match, nil
}

// lowerHex is the value of a lowercase hex digit: Zoom signs in lowercase,
// and a signature is compared as Zoom wrote it.
func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// EncryptToken answers endpoint.url_validation: hex(HMAC-SHA256(secret, plainToken)).
func EncryptToken(secret []byte, plainToken string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(plainToken))
	return hex.EncodeToString(m.Sum(nil))
}
