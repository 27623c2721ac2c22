// A VFS that writes a transaction's WAL frames with one write instead of
// two per frame. SQLite appends each frame to the WAL as two pwrite calls,
// its 24-byte header and then its page; a group commit of a few dozen
// webhooks writes a few hundred frames, and those calls were the server's
// largest single cost. This VFS wraps the default one and changes only WAL
// files: frames appended at the end of the log are gathered in memory and
// written out, in order and at once, as soon as the frame that commits the
// transaction is complete: inside SQLite's write of that frame, before
// SQLite publishes the commit. A transaction SQLite reports committed is
// therefore in the kernel exactly as before, and a crash loses what it lost
// before: frames of a transaction that had not committed.
//
// What is gathered never outlives the connection's hold on the WAL's write
// lock: the main database file is wrapped only to drop what is left (frames
// of a transaction that did not commit) as that lock is released, so that
// nothing of this connection reaches the log after another may write it.
//
// Everything else passes through: database files, journals, reads, locks
// and shared memory; and every WAL write that is not an append at the end
// of the current log (a frame rewritten within its transaction, checksums
// fixed after it, the frames of the transaction after a rollback, a log
// whose end is not known until SQLite starts the next one) is written at
// once, after what was gathered.

#include <stdint.h>
#include <string.h>

#include "walbatch.h"

#define WAL_HEADER 32
#define FRAME_HEADER 24
// Frames gathered beyond this are written out mid-transaction (SQLite
// writes a big transaction's frames as it goes, too).
#define MAX_GATHERED (4 << 20)
// The unix VFS writes less than 128 KiB a call (SQLite never asks for more:
// pages are at most 64 KiB).
#define MAX_WRITE (64 << 10)

typedef struct DbFile DbFile;

// Both files begin as a wrapped file: the default VFS's own follows them in
// the same allocation.
typedef struct Wrapped {
	sqlite3_file base;
	sqlite3_file *real;
} Wrapped;

typedef struct WalFile {
	Wrapped w;
	DbFile *db;         // the main database file of the same connection
	unsigned char *buf; // frames appended but not yet written
	sqlite3_int64 bufOff;
	int bufLen, bufCap;
	// logEnd is where the current log's next frame goes (-1 unknown: until
	// SQLite starts a log by writing its header, everything passes through).
	sqlite3_int64 logEnd;
	int frameSize; // FRAME_HEADER + page size, from the log's header
} WalFile;

struct DbFile {
	Wrapped w;
	WalFile *wal; // its WAL, while open
};

static sqlite3_vfs *baseVfs;
static sqlite3_vfs walVfs;
// For tests: bytes gathered, and writes still to fail.
static unsigned long long gathered;
static int failWrites;

static uint32_t get32(const unsigned char *p) {
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// writeOut writes p through the default VFS and reports how much of it is
// written.
static int writeOut(WalFile *f, const unsigned char *p, sqlite3_int64 n, sqlite3_int64 off, sqlite3_int64 *done) {
	*done = 0;
	while (*done < n) {
		int piece = n - *done > MAX_WRITE ? MAX_WRITE : (int)(n - *done);
		if (__atomic_load_n(&failWrites, __ATOMIC_RELAXED) > 0 && __atomic_sub_fetch(&failWrites, 1, __ATOMIC_RELAXED) >= 0) {
			return SQLITE_IOERR_WRITE;
		}
		int rc = f->w.real->pMethods->xWrite(f->w.real, p + *done, piece, off + *done);
		if (rc != SQLITE_OK) {
			return rc;
		}
		*done += piece;
	}
	return SQLITE_OK;
}

// flush writes out what is gathered. What a failed write leaves stays
// gathered, to be written before anything after it: the log never has a
// hole SQLite does not know of. Gathering stops until the next log.
static int flush(WalFile *f) {
	sqlite3_int64 done;
	int rc = writeOut(f, f->buf, f->bufLen, f->bufOff, &done);
	if (rc != SQLITE_OK) {
		memmove(f->buf, f->buf + done, f->bufLen - done);
		f->bufOff += done;
		f->bufLen -= (int)done;
		f->logEnd = -1;
		return rc;
	}
	f->bufLen = 0;
	return SQLITE_OK;
}

static int overlaps(WalFile *f, sqlite3_int64 off, sqlite3_int64 n) {
	return f->bufLen > 0 && off < f->bufOff + f->bufLen && f->bufOff < off + n;
}

static int writeThrough(WalFile *f, const void *p, int n, sqlite3_int64 off) {
	sqlite3_int64 done;
	int rc = flush(f);
	return rc != SQLITE_OK ? rc : writeOut(f, p, n, off, &done);
}

static int gather(WalFile *f, const void *p, int n, sqlite3_int64 off) {
	int rc;
	if (f->bufLen + (sqlite3_int64)n > MAX_GATHERED && (rc = flush(f)) != SQLITE_OK) {
		return rc;
	}
	if (n > MAX_GATHERED) {
		return writeThrough(f, p, n, off);
	}
	if (f->bufLen + n > f->bufCap) {
		sqlite3_int64 cap = f->bufCap ? f->bufCap : 256 << 10;
		while (cap < f->bufLen + n) {
			cap *= 2;
		}
		unsigned char *b = sqlite3_realloc64(f->buf, cap);
		if (!b) {
			return writeThrough(f, p, n, off); // no memory to gather in
		}
		f->buf = b;
		f->bufCap = (int)cap;
	}
	if (f->bufLen == 0) {
		f->bufOff = off;
	}
	memcpy(f->buf + f->bufLen, p, n);
	f->bufLen += n;
	__atomic_fetch_add(&gathered, n, __ATOMIC_RELAXED);
	return SQLITE_OK;
}

// committed says whether the frame that starts at h is a commit's: bytes
// 4-7 of its header, the database's size, are set only by one.
static int committed(WalFile *f, sqlite3_int64 h, int *yes) {
	unsigned char size[4];
	int rc;
	if (f->bufLen > 0 && h + 4 >= f->bufOff) {
		memcpy(size, f->buf + (h + 4 - f->bufOff), 4);
	} else {
		// Written already (gathering was cut short by a size limit).
		if (overlaps(f, h + 4, 4) && (rc = flush(f)) != SQLITE_OK) {
			return rc;
		}
		if ((rc = f->w.real->pMethods->xRead(f->w.real, size, 4, h + 4)) != SQLITE_OK) {
			return rc;
		}
	}
	*yes = get32(size) != 0;
	return SQLITE_OK;
}

static int walWrite(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off) {
	WalFile *f = (WalFile *)pf;
	int rc;
	if (off == 0 && n >= WAL_HEADER) {
		// SQLite starts a log: its header gives the frame size.
		if ((rc = flush(f)) != SQLITE_OK) {
			return rc;
		}
		uint32_t page = get32((const unsigned char *)p + 8);
		f->logEnd = page >= 512 && page <= 65536 && (page & (page - 1)) == 0 ? 0 : -1;
		f->frameSize = FRAME_HEADER + (int)page;
	}
	if (f->logEnd < 0 || off != f->logEnd) {
		if (f->logEnd >= 0 && off + n > f->logEnd) {
			f->logEnd = -1; // not how SQLite writes: stop gathering until the next log
		}
		return writeThrough(f, p, n, off);
	}
	if ((rc = gather(f, p, n, off)) != SQLITE_OK) {
		f->logEnd = -1;
		return rc;
	}
	f->logEnd = off + n;
	// Frames are found by position, whatever the pieces SQLite writes them in.
	sqlite3_int64 end = f->logEnd - WAL_HEADER;
	if (end > 0 && end % f->frameSize == 0) {
		int yes = 0;
		if ((rc = committed(f, f->logEnd - f->frameSize, &yes)) == SQLITE_OK && yes) {
			rc = flush(f); // the commit's frame is complete: out, before SQLite publishes it
		}
		if (rc != SQLITE_OK) {
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
	return f->w.real->pMethods->xRead(f->w.real, p, n, off);
}

// walClose drops what is gathered, as dbShmLock does: no commit's.
static int walClose(sqlite3_file *pf) {
	WalFile *f = (WalFile *)pf;
	if (f->db) {
		f->db->wal = 0;
	}
	sqlite3_free(f->buf);
	f->buf = 0;
	f->bufLen = f->bufCap = 0;
	return f->w.real->pMethods->xClose(f->w.real);
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
	return f->w.real->pMethods->xTruncate(f->w.real, size);
}

static int walSync(sqlite3_file *pf, int flags) {
	WalFile *f = (WalFile *)pf;
	int rc = flush(f);
	return rc != SQLITE_OK ? rc : f->w.real->pMethods->xSync(f->w.real, flags);
}

static int walFileSize(sqlite3_file *pf, sqlite3_int64 *size) {
	WalFile *f = (WalFile *)pf;
	int rc = flush(f);
	return rc != SQLITE_OK ? rc : f->w.real->pMethods->xFileSize(f->w.real, size);
}

static int walFetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp) {
	WalFile *f = (WalFile *)pf;
	int rc;
	*pp = 0;
	if (overlaps(f, off, n) && (rc = flush(f)) != SQLITE_OK) {
		return rc;
	}
	if (f->w.real->pMethods->iVersion < 3 || !f->w.real->pMethods->xFetch) {
		return SQLITE_OK; // no memory map: SQLite reads instead
	}
	return f->w.real->pMethods->xFetch(f->w.real, off, n, pp);
}

#define REAL(pf) (((Wrapped *)(pf))->real)

static int passLock(sqlite3_file *pf, int l) { return REAL(pf)->pMethods->xLock(REAL(pf), l); }
static int passUnlock(sqlite3_file *pf, int l) { return REAL(pf)->pMethods->xUnlock(REAL(pf), l); }
static int passCheckReservedLock(sqlite3_file *pf, int *out) {
	return REAL(pf)->pMethods->xCheckReservedLock(REAL(pf), out);
}
static int passFileControl(sqlite3_file *pf, int op, void *arg) {
	return REAL(pf)->pMethods->xFileControl(REAL(pf), op, arg);
}
static int passSectorSize(sqlite3_file *pf) { return REAL(pf)->pMethods->xSectorSize(REAL(pf)); }
static int passDeviceCharacteristics(sqlite3_file *pf) {
	return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf));
}
static int passShmMap(sqlite3_file *pf, int pg, int sz, int extend, void volatile **pp) {
	return REAL(pf)->pMethods->xShmMap(REAL(pf), pg, sz, extend, pp);
}
static int passShmLock(sqlite3_file *pf, int off, int n, int flags) {
	return REAL(pf)->pMethods->xShmLock(REAL(pf), off, n, flags);
}
static void passShmBarrier(sqlite3_file *pf) { REAL(pf)->pMethods->xShmBarrier(REAL(pf)); }
static int passShmUnmap(sqlite3_file *pf, int del) { return REAL(pf)->pMethods->xShmUnmap(REAL(pf), del); }
static int passUnfetch(sqlite3_file *pf, sqlite3_int64 off, void *p) {
	if (REAL(pf)->pMethods->iVersion < 3 || !REAL(pf)->pMethods->xUnfetch) {
		return SQLITE_OK;
	}
	return REAL(pf)->pMethods->xUnfetch(REAL(pf), off, p);
}

static const sqlite3_io_methods walMethods = {
	3, walClose, walRead, walWrite, walTruncate, walSync, walFileSize,
	passLock, passUnlock, passCheckReservedLock, passFileControl, passSectorSize, passDeviceCharacteristics,
	passShmMap, passShmLock, passShmBarrier, passShmUnmap, walFetch, passUnfetch,
};

static int dbClose(sqlite3_file *pf) {
	DbFile *d = (DbFile *)pf;
	if (d->wal) {
		d->wal->db = 0;
	}
	return d->w.real->pMethods->xClose(d->w.real);
}
static int dbRead(sqlite3_file *pf, void *p, int n, sqlite3_int64 off) {
	return REAL(pf)->pMethods->xRead(REAL(pf), p, n, off);
}
static int dbWrite(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off) {
	return REAL(pf)->pMethods->xWrite(REAL(pf), p, n, off);
}
static int dbTruncate(sqlite3_file *pf, sqlite3_int64 size) { return REAL(pf)->pMethods->xTruncate(REAL(pf), size); }
static int dbSync(sqlite3_file *pf, int flags) { return REAL(pf)->pMethods->xSync(REAL(pf), flags); }
static int dbFileSize(sqlite3_file *pf, sqlite3_int64 *size) {
	return REAL(pf)->pMethods->xFileSize(REAL(pf), size);
}
static int dbFetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp) {
	*pp = 0;
	if (REAL(pf)->pMethods->iVersion < 3 || !REAL(pf)->pMethods->xFetch) {
		return SQLITE_OK;
	}
	return REAL(pf)->pMethods->xFetch(REAL(pf), off, n, pp);
}

// dbShmLock drops what the WAL still holds as the write lock (lock 0 of the
// shared memory) is let go. A commit is written out before SQLite reports
// it, so what is left belongs to a transaction that did not commit: frames
// of one rolled back after SQLite spilled pages of it, which SQLite would
// have written and never read again, or what a failed write kept of one
// whose commit failed, which must never reach the file (recovery after a
// crash would find a whole transaction that was reported failed).
static int dbShmLock(sqlite3_file *pf, int off, int n, int flags) {
	DbFile *d = (DbFile *)pf;
	if (d->wal && (flags & SQLITE_SHM_UNLOCK) && (flags & SQLITE_SHM_EXCLUSIVE) && off <= 0 && off + n > 0) {
		d->wal->bufLen = 0;
	}
	return d->w.real->pMethods->xShmLock(d->w.real, off, n, flags);
}

static const sqlite3_io_methods dbMethods = {
	3, dbClose, dbRead, dbWrite, dbTruncate, dbSync, dbFileSize,
	passLock, passUnlock, passCheckReservedLock, passFileControl, passSectorSize, passDeviceCharacteristics,
	passShmMap, dbShmLock, passShmBarrier, passShmUnmap, dbFetch, passUnfetch,
};

static int walOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *pf, int flags, int *outFlags) {
	(void)vfs;
	int rc;
	if (flags & SQLITE_OPEN_WAL) {
		WalFile *f = (WalFile *)pf;
		memset(f, 0, sizeof *f);
		f->w.real = (sqlite3_file *)(f + 1);
		f->logEnd = -1;
		rc = baseVfs->xOpen(baseVfs, name, f->w.real, flags, outFlags);
		// SQLite calls xClose whenever pMethods is set, even after a failure.
		f->w.base.pMethods = f->w.real->pMethods ? &walMethods : 0;
		sqlite3_file *db = sqlite3_database_file_object(name);
		if (rc == SQLITE_OK && db && db->pMethods == &dbMethods) {
			f->db = (DbFile *)db;
			f->db->wal = f;
		}
		return rc;
	}
	if (flags & SQLITE_OPEN_MAIN_DB) {
		DbFile *d = (DbFile *)pf;
		memset(d, 0, sizeof *d);
		d->w.real = (sqlite3_file *)(d + 1);
		rc = baseVfs->xOpen(baseVfs, name, d->w.real, flags, outFlags);
		d->w.base.pMethods = d->w.real->pMethods ? &dbMethods : 0;
		return rc;
	}
	// Anything else is the default VFS's own file, in the room SQLite made.
	return baseVfs->xOpen(baseVfs, name, pf, flags, outFlags);
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
	walVfs.szOsFile = (int)(sizeof(WalFile) > sizeof(DbFile) ? sizeof(WalFile) : sizeof(DbFile)) + baseVfs->szOsFile;
	walVfs.xOpen = walOpen;
	return sqlite3_vfs_register(&walVfs, 0);
}

unsigned long long onair_walbatch_gathered(void) { return __atomic_load_n(&gathered, __ATOMIC_RELAXED); }

void onair_walbatch_fail_writes(int n) { __atomic_store_n(&failWrites, n, __ATOMIC_RELAXED); }
