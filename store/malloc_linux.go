//go:build linux && cgo

package store

/*
#include <malloc.h>

// SQLite frees a statement's journal as the statement ends. Once 128 KiB
// are free at the top of a thread's heap, glibc hands them back to the
// kernel with an madvise whose TLB flush interrupts every core, thousands
// of times a second under load (5% of the server's CPU in an ingest run).
// Up to 64 MiB stay free for the next statement instead.
static void keepFreedMemory(void) {
#ifdef M_TRIM_THRESHOLD
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}
*/
import "C"

func init() { C.keepFreedMemory() }
