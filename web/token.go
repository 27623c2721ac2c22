package web

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrNoTokenSecret means connection tokens are disabled.
var ErrNoTokenSecret = errors.New("connection tokens are disabled (no token secret)")

// MintToken returns a connection token for user: HS256, with sub, iat and exp.
func MintToken(secret []byte, user string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", ErrNoTokenSecret
	}
	claims := jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}

// tokenClaims is what a valid connection token says.
type tokenClaims struct {
	user     string
	issuedAt time.Time // zero without iat
}

// verifyToken accepts an HS256 token with sub and exp, signed by any token secret.
func (s *Server) verifyToken(tok string) (tokenClaims, error) {
	if len(s.cfg.TokenSecrets) == 0 {
		return tokenClaims{}, ErrNoTokenSecret
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.cfg.Now),
	)
	var err error
	for _, secret := range s.cfg.TokenSecrets {
		var claims jwt.RegisteredClaims
		_, err = parser.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return secret, nil })
		if err != nil {
			continue
		}
		if claims.Subject == "" {
			return tokenClaims{}, errors.New("token has no sub")
		}
		c := tokenClaims{user: claims.Subject}
		if claims.IssuedAt != nil {
			c.issuedAt = claims.IssuedAt.Time
		}
		return c, nil
	}
	return tokenClaims{}, err
}
