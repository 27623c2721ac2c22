package main

import (
	"context"
	"fmt"
	"io"

	"onair/store"
)

func runBackup(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	to := o.add("to", "", "", "file to write the copy to (must not exist)")
	db := o.add("db", "ONAIR_DB", "./data/onair.db", "SQLite file to copy")
	dbURL := o.add("database-url", "ONAIR_DATABASE_URL", "", "PostgreSQL URL")
	if err := o.parse(args); err != nil {
		return err
	}
	if dbURL.str() != "" {
		return usageErrorf("onair backup copies SQLite only; on PostgreSQL use pg_dump")
	}
	if to.str() == "" {
		return usageErrorf("--to is required")
	}
	if err := store.Backup(ctx, db.str(), to.str()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup of %s written to %s\n", db.str(), to.str())
	return nil
}
