// Package zoom holds Zoom's wire formats: webhook signatures, event payloads
// and the URL-validation answer.
package zoom

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
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

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v0:"))
	m.Write([]byte(ts))
	m.Write([]byte(":"))
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

// Verify checks signature against every secret in constant time and returns
// the secret that produced it: the URL-validation answer must use that one.
func Verify(secrets [][]byte, ts string, body []byte, signature string) ([]byte, error) {
	const prefix = "v0="
	if len(signature) != len(prefix)+sha256.Size*2 || signature[:len(prefix)] != prefix {
		return nil, ErrBadSignature
	}
	got, err := hex.DecodeString(signature[len(prefix):])
	if err != nil || hex.EncodeToString(got) != signature[len(prefix):] {
		return nil, ErrBadSignature // not hex, or not lowercase hex
	}
	var match []byte
	for _, s := range secrets {
		// Every secret is tried, so timing does not tell which one matched.
		if hmac.Equal(got, mac(s, ts, body)) && match == nil {
			match = s
		}
	}
	if match == nil {
		return nil, ErrBadSignature
	}
	return match, nil
}

// EncryptToken answers endpoint.url_validation: hex(HMAC-SHA256(secret, plainToken)).
func EncryptToken(secret []byte, plainToken string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(plainToken))
	return hex.EncodeToString(m.Sum(nil))
}
