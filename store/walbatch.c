// A VFS that writes a transaction's WAL frames with one write instead of
// two per frame. SQLite appends each frame to the WAL as two pwrite calls,
// its 24-byte header and then its page; a group commit of a few dozen
// webhooks writes a few hundred frames, and those calls were the server's
// biggest single cost. This VFS wraps the default one and changes only WAL
// files: frames appended at the end of the log are gathered in memory and
// written out, in order and at once, as soon as the frame that commits the
// transaction is complete, before SQLite goes on to publish the commit. A
// transaction SQLite reports committed is therefore in the kernel exactly
// as before, and a crash loses what it lost before: frames of a transaction
// that had not committed.
//
// Everything else passes through: database files, journals, reads,
// locks and shared memory; and every WAL write that is not an append at the
// end of the current log (SQLite rewriting a frame, or a log whose end is
// not known, until the next one starts) is written at once, after the
// gathered frames.

#include <stdint.h>
#include <string.h>

#include "walbatch.h"

#define WAL_HEADER 32
#define FRAME_HEADER 24
// Frames gathered beyond this are written out mid-transaction (SQLite
// writes a big transaction's frames as it goes, too).
#define MAX_GATHERED (4 << 20)
#define MAX_WRITE (64 << 10)

typedef struct WalFile {
	sqlite3_file base;
	sqlite3_file *real; // the default VFS's file, in the same allocation
	unsigned char *buf; // frames appended but not yet written
	sqlite3_int64 bufOff;
	int bufLen, bufCap;
	// logEnd is where the current log's next frame goes (-1 unknown: until
	// SQLite starts a log by writing its header, everything passes through).
	sqlite3_int64 logEnd;
	int frameSize; // FRAME_HEADER + page size, from the log's header
	// The last frame header appended, and whether it commits.
	sqlite3_int64 hdrOff;
	int hdrCommits;
} WalFile;

static sqlite3_vfs *baseVfs;
static sqlite3_vfs walVfs;

static uint32_t get32(const unsigned char *p) {
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// writeOut writes through the default VFS, in pieces it takes: the unix
// VFS writes at most 128 KiB - 1 per call (it never gets more from SQLite,
// whose pages are at most 64 KiB).
static int writeOut(WalFile *f, const unsigned char *p, sqlite3_int64 n, sqlite3_int64 off) {
	while (n > 0) {
		int piece = n > MAX_WRITE ? MAX_WRITE : (int)n;
		int rc = f->real->pMethods->xWrite(f->real, p, piece, off);
		if (rc != SQLITE_OK) {
			return rc;
		}
		p += piece;
		n -= piece;
		off += piece;
	}
	return SQLITE_OK;
}

static int flush(WalFile *f) {
	int rc = writeOut(f, f->buf, f->bufLen, f->bufOff);
	f->bufLen = 0;
	return rc;
}

static int overlaps(WalFile *f, sqlite3_int64 off, sqlite3_int64 n) {
	return f->bufLen > 0 && off < f->bufOff + f->bufLen && f->bufOff < off + n;
}

static int gather(WalFile *f, const void *p, int n, sqlite3_int64 off) {
	int rc;
	if (f->bufLen + (sqlite3_int64)n > MAX_GATHERED && (rc = flush(f)) != SQLITE_OK) {
		return rc;
	}
	if (n > MAX_GATHERED) {
		return writeOut(f, p, n, off);
	}
	if (f->bufLen + n > f->bufCap) {
		sqlite3_int64 cap = f->bufCap ? f->bufCap : 256 << 10;
		while (cap < f->bufLen + n) {
			cap *= 2;
		}
		unsigned char *b = sqlite3_realloc64(f->buf, cap);
		if (!b) {
			// No memory to gather in: write what is gathered, then this.
			if ((rc = flush(f)) != SQLITE_OK) {
				return rc;
			}
			return writeOut(f, p, n, off);
		}
		f->buf = b;
		f->bufCap = (int)cap;
	}
	if (f->bufLen == 0) {
		f->bufOff = off;
	}
	memcpy(f->buf + f->bufLen, p, n);
	f->bufLen += n;
	return SQLITE_OK;
}

static int walWrite(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off) {
	WalFile *f = (WalFile *)pf;
	const unsigned char *b = p;
	int rc;
	if (off == 0 && n >= WAL_HEADER) {
		// SQLite starts a log: its header gives the frame size.
		if ((rc = flush(f)) != SQLITE_OK) {
			return rc;
		}
		uint32_t page = get32(b + 8);
		// Frames are found by their size: with a page size SQLite never
		// writes, nothing is gathered.
		f->logEnd = page >= 512 && page <= 65536 && (page & (page - 1)) == 0 ? 0 : -1;
		f->frameSize = FRAME_HEADER + (int)page;
		f->hdrOff = -1;
	}
	if (f->logEnd < 0 || off != f->logEnd) {
		// Not an append: a frame rewritten in its transaction, a checksum
		// fixed after it, or the first frames after a rollback, written over
		// the rolled-back ones. Written now, after what was gathered.
		if ((rc = flush(f)) != SQLITE_OK) {
			return rc;
		}
		if (f->logEnd >= 0 && off + n > f->logEnd) {
			f->logEnd = -1; // not how SQLite writes: stop gathering until the next log
		}
		return f->real->pMethods->xWrite(f->real, p, n, off);
	}
	if (off >= WAL_HEADER && (off - WAL_HEADER) % f->frameSize == 0 && n >= FRAME_HEADER) {
		f->hdrOff = off;
		f->hdrCommits = get32(b + 4) != 0; // the database's size, given only by a commit
	}
	if ((rc = gather(f, p, n, off)) != SQLITE_OK) {
		f->logEnd = -1;
		return rc;
	}
	f->logEnd = off + n;
	if (f->hdrCommits && f->logEnd == f->hdrOff + f->frameSize) {
		// The commit's frame is complete: out, before SQLite publishes it.
		f->hdrCommits = 0;
		if ((rc = flush(f)) != SQLITE_OK) {
			f->logEnd = -1;
			return rc;
		}
	}
	return SQLITE_OK;
}

static int walRead(sqlite3_file *pf, void *p, int n, sqlite3_int64 off) {
	WalFile *f = (WalFile *)pf;
	int rc;
	if (overlaps(f, off, n) && (rc = flush(f)) != SQLITE_OK) {
		return rc;
	}
	return f->real->pMethods->xRead(f->real, p, n, off);
}

static int walClose(sqlite3_file *pf) {
	WalFile *f = (WalFile *)pf;
	int rc = flush(f);
	int rc2 = f->real->pMethods->xClose(f->real);
	sqlite3_free(f->buf);
	f->buf = 0;
	f->bufCap = 0;
	return rc != SQLITE_OK ? rc : rc2;
}

static int walTruncate(sqlite3_file *pf, sqlite3_int64 size) {
	WalFile *f = (WalFile *)pf;
	int rc = flush(f);
	if (rc != SQLITE_OK) {
		return rc;
	}
	if (f->logEnd > size) {
		f->logEnd = -1;
	}
	return f->real->pMethods->xTruncate(f->real, size);
}

static int walSync(sqlite3_file *pf, int flags) {
	WalFile *f = (WalFile *)pf;
	int rc = flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int walFileSize(sqlite3_file *pf, sqlite3_int64 *size) {
	WalFile *f = (WalFile *)pf;
	int rc = flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int walFetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp) {
	WalFile *f = (WalFile *)pf;
	int rc;
	*pp = 0;
	if (overlaps(f, off, n) && (rc = flush(f)) != SQLITE_OK) {
		return rc;
	}
	if (f->real->pMethods->iVersion < 3 || !f->real->pMethods->xFetch) {
		return SQLITE_OK; // no memory map: SQLite reads instead
	}
	return f->real->pMethods->xFetch(f->real, off, n, pp);
}

#define REAL(pf) (((WalFile *)(pf))->real)

static int walLock(sqlite3_file *pf, int l) { return REAL(pf)->pMethods->xLock(REAL(pf), l); }
static int walUnlock(sqlite3_file *pf, int l) { return REAL(pf)->pMethods->xUnlock(REAL(pf), l); }
static int walCheckReservedLock(sqlite3_file *pf, int *out) {
	return REAL(pf)->pMethods->xCheckReservedLock(REAL(pf), out);
}
static int walFileControl(sqlite3_file *pf, int op, void *arg) {
	return REAL(pf)->pMethods->xFileControl(REAL(pf), op, arg);
}
static int walSectorSize(sqlite3_file *pf) { return REAL(pf)->pMethods->xSectorSize(REAL(pf)); }
static int walDeviceCharacteristics(sqlite3_file *pf) {
	return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf));
}
static int walShmMap(sqlite3_file *pf, int pg, int sz, int extend, void volatile **pp) {
	return REAL(pf)->pMethods->xShmMap(REAL(pf), pg, sz, extend, pp);
}
static int walShmLock(sqlite3_file *pf, int off, int n, int flags) {
	return REAL(pf)->pMethods->xShmLock(REAL(pf), off, n, flags);
}
static void walShmBarrier(sqlite3_file *pf) { REAL(pf)->pMethods->xShmBarrier(REAL(pf)); }
static int walShmUnmap(sqlite3_file *pf, int del) { return REAL(pf)->pMethods->xShmUnmap(REAL(pf), del); }
static int walUnfetch(sqlite3_file *pf, sqlite3_int64 off, void *p) {
	if (REAL(pf)->pMethods->iVersion < 3 || !REAL(pf)->pMethods->xUnfetch) {
		return SQLITE_OK;
	}
	return REAL(pf)->pMethods->xUnfetch(REAL(pf), off, p);
}

static const sqlite3_io_methods walMethods = {
	3, walClose, walRead, walWrite, walTruncate, walSync, walFileSize,
	walLock, walUnlock, walCheckReservedLock, walFileControl, walSectorSize, walDeviceCharacteristics,
	walShmMap, walShmLock, walShmBarrier, walShmUnmap, walFetch, walUnfetch,
};

static int walOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *pf, int flags, int *outFlags) {
	(void)vfs;
	if (!(flags & SQLITE_OPEN_WAL)) {
		// Not a WAL: the default VFS's own file, in the room SQLite made.
		return baseVfs->xOpen(baseVfs, name, pf, flags, outFlags);
	}
	WalFile *f = (WalFile *)pf;
	memset(f, 0, sizeof *f);
	f->real = (sqlite3_file *)(f + 1);
	f->logEnd = -1;
	f->hdrOff = -1;
	int rc = baseVfs->xOpen(baseVfs, name, f->real, flags, outFlags);
	// SQLite calls xClose whenever pMethods is set, even after a failure.
	f->base.pMethods = f->real->pMethods ? &walMethods : 0;
	return rc;
}

// onair_walbatch_register registers the VFS under name, once.
int onair_walbatch_register(const char *name) {
	if (walVfs.zName) {
		return SQLITE_OK;
	}
	baseVfs = sqlite3_vfs_find(0);
	if (!baseVfs) {
		return SQLITE_ERROR;
	}
	walVfs = *baseVfs;
	walVfs.pNext = 0;
	walVfs.zName = name;
	walVfs.szOsFile = (int)sizeof(WalFile) + baseVfs->szOsFile;
	walVfs.xOpen = walOpen;
	return sqlite3_vfs_register(&walVfs, 0);
}
