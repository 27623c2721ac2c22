package store

// #include "walbatch.h"
import "C"

import (
	"fmt"
	"sync"
)

// walBatchVFS names the VFS of walbatch.c, through which the writer's
// connection opens the database: it writes each transaction's WAL frames
// at once, as its commit completes.
const walBatchVFS = "onair-walbatch"

var registerWalBatch = sync.OnceValue(func() error {
	// SQLite keeps the name for the process's life: never freed.
	if rc := C.onair_walbatch_register(C.CString(walBatchVFS)); rc != 0 {
		return fmt.Errorf("register the %s VFS: SQLite error %d", walBatchVFS, rc)
	}
	return nil
})

// walGathered is how many bytes walbatch.c has gathered since the process
// started.
func walGathered() uint64 { return uint64(C.onair_walbatch_gathered()) }

// walFailWrites makes walbatch.c's next n writes fail, for tests.
func walFailWrites(n int) { C.onair_walbatch_fail_writes(C.int(n)) }
