package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"onair/store"
	"onair/web"
)

func runToken(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	user := o.add("user", "", "", "Zoom user id the token is for (required)")
	ttl := o.add("ttl", "", "1h", "how long the token is valid")
	secret := o.add("token-secret", "ONAIR_TOKEN_SECRET", "", "HMAC key(s) for connection tokens; the first signs")
	db := o.add("db", "ONAIR_DB", "./data/onair.db", "SQLite file holding the dev-mode token secret")
	dbURL := o.add("database-url", "ONAIR_DATABASE_URL", "", "PostgreSQL URL: the dev-mode secret is read from there")
	if err := o.parse(args); err != nil {
		return err
	}
	if user.str() == "" {
		return usageErrorf("--user is required")
	}
	d, err := ttl.duration()
	if err != nil {
		return err
	}
	if d <= 0 {
		return usageErrorf("--ttl must be more than 0")
	}
	key, err := signingSecret(ctx, secret, db, dbURL, "token")
	if err != nil {
		return err
	}
	tok, err := web.MintToken(key, user.str(), d, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// signingSecret is the first of the configured secrets, or else the
// dev-mode secret the server generated and kept in the database.
func signingSecret(ctx context.Context, configured, db, dbURL *optSpec, name string) ([]byte, error) {
	if s := configured.secrets(); len(s) > 0 {
		return s[0], nil
	}
	where := db.str()
	if dbURL.str() != "" {
		where = "the PostgreSQL database"
	}
	v, err := store.LookupSecret(ctx, store.Options{Path: db.str(), DatabaseURL: dbURL.str()}, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, usageErrorf("no %s and no dev-mode secret in %s (start onair in dev mode once, or set %s)",
			configured.name(), where, configured.env)
	}
	if err != nil {
		return nil, err
	}
	return []byte(v), nil
}
