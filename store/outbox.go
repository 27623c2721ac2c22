package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Outbox item types: the request itself, then the notices that follow it.
const (
	OutboxRequested    = "bot.requested"
	OutboxOwnerLeft    = "owner.left"
	OutboxMeetingEnded = "meeting.ended"
	OutboxCancelled    = "bot.cancelled"
)

// enqueue puts an item in the outbox, due now. An item of the same type for
// the request already there stays as it is.
func (tx *Tx) enqueue(requestID, typ, body string) error {
	if _, err := tx.exec(`INSERT INTO bot_outbox (request_id, type, body, next_at, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (request_id, type) DO NOTHING`, requestID, typ, body, ms(tx.now), ms(tx.now)); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	tx.out.Outbox = true
	return nil
}

// OutboxItem is something due for the launcher, with what it takes to
// build it.
type OutboxItem struct {
	N         int64
	RequestID string
	Type      string
	Body      string // empty until first built
	Detail    string // what the built body lacks (join data Zoom refused)
	Attempts  int
	Queued    time.Time // when it entered the outbox: a notice's "at"
	// Claim is the worker's hold on the item (ClaimOutbox): every change
	// to the item checks it, so a worker whose lease ran out changes
	// nothing another took over.
	Claim  string
	nextAt time.Time
	// The request as it is now, and who made it.
	State       string
	User        string
	UserEmail   string
	RequestedAt time.Time
	// Meeting is the meeting as the requesting user sees it; Live says
	// whether it is still live for them.
	Meeting Meeting
	Live    bool
}

// outboxSelect reads items with what it takes to build them.
const outboxSelect = `SELECT o.n, o.request_id, o.type, o.claim, o.body, o.detail, o.attempts, o.created_at, o.next_at,
			b.state, b.user_id, u.email, b.created_at, b.meeting_uuid, COALESCE(mm.role, ''), COALESCE(mm.in_meeting, 0)
		FROM bot_outbox o JOIN bot_requests b ON b.id = o.request_id JOIN users u ON u.id = b.user_id
			LEFT JOIN meetings m ON m.uuid = b.meeting_uuid
			LEFT JOIN meeting_members mm ON mm.meeting_n = m.n AND mm.user_id = b.user_id`

// DueOutbox returns up to limit items due by now, oldest first, and when
// the next one after them is due (zero when there is none). It only reads:
// ClaimOutbox is how a worker takes items.
func (s *Store) DueOutbox(ctx context.Context, limit int) ([]OutboxItem, time.Time, error) {
	items, err := s.outboxItems(ctx, outboxSelect+` ORDER BY o.next_at, o.n LIMIT ?`, limit+1)
	if err != nil {
		return nil, time.Time{}, err
	}
	now := s.opts.Now()
	var due []OutboxItem
	var next time.Time
	for _, it := range items {
		if it.nextAt.After(now) || len(due) == limit {
			next = it.nextAt
			break
		}
		due = append(due, it)
	}
	return due, next, s.viewMeetings(ctx, due)
}

// ClaimOutbox takes up to limit items due by now, oldest first, for lease:
// until it ends no other worker, of this node or another, gets them (so
// each is delivered by one), and a worker that dies mid-delivery leaves
// them to the others after it. It also returns when the next unclaimed
// item is due (zero when there is none).
func (s *Store) ClaimOutbox(ctx context.Context, limit int, lease time.Duration) ([]OutboxItem, time.Time, error) {
	claim := randomHex(8)
	var claimed int
	var next sql.NullInt64
	err := s.w.do(ctx, func(tx *Tx) error {
		claimed = 0
		rows, err := tx.query(`SELECT n FROM bot_outbox WHERE next_at <= ? ORDER BY next_at, n LIMIT ?`+tx.s.eng.skipLocked(),
			ms(tx.now), limit)
		if err != nil {
			return err
		}
		var ns []int64
		for rows.Next() {
			var n int64
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			ns = append(ns, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, n := range ns {
			if _, err := tx.exec(`UPDATE bot_outbox SET next_at = ?, claim = ? WHERE n = ?`, ms(tx.now.Add(lease)), claim, n); err != nil {
				return err
			}
		}
		claimed = len(ns)
		return tx.queryRow(`SELECT MIN(next_at) FROM bot_outbox`).Scan(&next)
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("outbox: %w", err)
	}
	var nextAt time.Time
	if next.Valid {
		nextAt = time.UnixMilli(next.Int64).UTC()
	}
	if claimed == 0 {
		return nil, nextAt, nil
	}
	items, err := s.outboxItems(ctx, outboxSelect+` WHERE o.claim = ? ORDER BY o.n`, claim)
	if err != nil {
		return nil, time.Time{}, err
	}
	return items, nextAt, s.viewMeetings(ctx, items)
}

func (s *Store) outboxItems(ctx context.Context, query string, args ...any) ([]OutboxItem, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	defer rows.Close()
	var items []OutboxItem
	for rows.Next() {
		var it OutboxItem
		var queued, nextAt, requested int64
		if err := rows.Scan(&it.N, &it.RequestID, &it.Type, &it.Claim, &it.Body, &it.Detail, &it.Attempts, &queued, &nextAt,
			&it.State, &it.User, &it.UserEmail, &requested, &it.Meeting.UUID, &it.Meeting.Role, &it.Live); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		it.Queued, it.RequestedAt = time.UnixMilli(queued).UTC(), time.UnixMilli(requested).UTC()
		it.nextAt = time.UnixMilli(nextAt).UTC()
		if it.Body != "" && s.aead != nil {
			if it.Body, err = s.openString("outbox\x00"+it.RequestID+"\x00"+it.Type, it.Body); err != nil {
				it.Body = "" // built again at the next attempt
			}
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

// viewMeetings puts in each item its meeting as the requesting user sees it.
func (s *Store) viewMeetings(ctx context.Context, items []OutboxItem) error {
	for i := range items {
		m, err := scanMeetingRow(s.read.QueryRowContext(ctx, `SELECT `+meetingColumns+` FROM meetings WHERE uuid = ?`, items[i].Meeting.UUID))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			items[i].Live = false
		case err != nil:
			return fmt.Errorf("outbox: %w", err)
		default:
			role := items[i].Meeting.Role
			if role == "" {
				role = RoleHost
			}
			items[i].Meeting = m.view(role)
		}
	}
	return nil
}

// ErrOutboxGone says an item is no longer due as it was read: delivered,
// given up, or its request ended meanwhile.
var ErrOutboxGone = errors.New("outbox item gone")

// itemWhere identifies an item by more than its row number (SQLite reuses
// the number of a deleted last row), and by the claim it was read with.
const itemWhere = `n = ? AND request_id = ? AND type = ? AND claim = ?`

func itemArgs(it OutboxItem, before ...any) []any {
	return append(before, it.N, it.RequestID, it.Type, it.Claim)
}

// ReadyToSend is the last check before an item goes out: it is still in the
// outbox and, for a request, the request is still waiting and its meeting
// live for its owner (ErrOutboxGone otherwise; a request cancelled or ended
// while its join data was fetched is not sent late). A body built for this
// attempt is kept, so every retry sends the same bytes; with a secret key
// it is sealed, as it may carry join secrets.
//
// The claim is held until, long enough to send it and record the answer;
// ErrOutboxGone when it was lost (another worker took the item over).
func (s *Store) ReadyToSend(ctx context.Context, it OutboxItem, body, detail string, until time.Time) error {
	var stored string
	if body != "" && s.aead != nil {
		stored = s.sealString("outbox\x00"+it.RequestID+"\x00"+it.Type, body)
	} else {
		stored = body
	}
	return s.w.do(ctx, func(tx *Tx) error {
		var state string
		var live bool
		err := tx.queryRow(`SELECT b.state, COALESCE((SELECT mm.in_meeting FROM meeting_members mm
				JOIN meetings m ON m.n = mm.meeting_n WHERE m.uuid = b.meeting_uuid AND mm.user_id = b.user_id), 0)
			FROM bot_outbox o JOIN bot_requests b ON b.id = o.request_id WHERE o.`+itemWhere, itemArgs(it)...).Scan(&state, &live)
		if err == sql.ErrNoRows {
			return ErrOutboxGone
		}
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		if it.Type == OutboxRequested && (state != BotRequested || !live) {
			return ErrOutboxGone
		}
		if stored == "" {
			_, err = tx.exec(`UPDATE bot_outbox SET next_at = ? WHERE `+itemWhere, itemArgs(it, ms(until))...)
			return err
		}
		_, err = tx.exec(`UPDATE bot_outbox SET next_at = ?, body = ?, detail = ? WHERE `+itemWhere,
			itemArgs(it, ms(until), stored, detail)...)
		return err
	})
}

// OutboxRetry schedules another attempt at an item.
func (s *Store) OutboxRetry(ctx context.Context, it OutboxItem, at time.Time, lastErr string) error {
	return s.w.do(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE bot_outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE `+itemWhere,
			itemArgs(it, ms(at), lastErr)...)
		return err
	})
}

// OutboxRelease gives up a claim on an item before its attempt was made:
// it is due again at once, for any worker.
func (s *Store) OutboxRelease(ctx context.Context, it OutboxItem) error {
	return s.w.do(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE bot_outbox SET next_at = ?, claim = '' WHERE `+itemWhere, itemArgs(it, ms(tx.now))...)
		return err
	})
}

// deleteItem removes an item; false when it was no longer there.
func (tx *Tx) deleteItem(it OutboxItem) (bool, error) {
	res, err := tx.exec(`DELETE FROM bot_outbox WHERE `+itemWhere, itemArgs(it)...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// OutboxDelivered records the launcher's 2xx for an item. A request becomes
// dispatched (with the item's detail: what its join data lacks), unless it
// was cancelled while it was on its way: then the launcher is told so.
func (s *Store) OutboxDelivered(ctx context.Context, it OutboxItem) error {
	return s.w.do(ctx, func(tx *Tx) error {
		if ok, err := tx.deleteItem(it); err != nil || (!ok && it.Type != OutboxRequested) {
			return err
		}
		if it.Type != OutboxRequested {
			return nil
		}
		// Even when the row went meanwhile (the request was cancelled while
		// it was on its way), the launcher has it now.
		if _, err := tx.exec(`UPDATE bot_requests SET sent = 1 WHERE id = ?`, it.RequestID); err != nil {
			return err
		}
		b, err := tx.botByID(it.RequestID)
		if err != nil {
			return err
		}
		switch b.State {
		case BotRequested:
			b.State, b.Detail, b.UpdatedAt = BotDispatched, it.Detail, Time{tx.now.UTC()}
			if _, err := tx.exec(`UPDATE bot_requests SET state = ?, detail = ?, updated_at = ? WHERE id = ?`,
				b.State, b.Detail, ms(tx.now), b.RequestID); err != nil {
				return err
			}
			return tx.botUpdated(it.User, b)
		case BotCancelled:
			return tx.enqueue(b.RequestID, OutboxCancelled, "")
		}
		return nil
	})
}

// OutboxGiveUp removes an item that will not be delivered. A request still
// waiting for it fails with the reason.
func (s *Store) OutboxGiveUp(ctx context.Context, it OutboxItem, reason string) error {
	return s.w.do(ctx, func(tx *Tx) error {
		if ok, err := tx.deleteItem(it); err != nil || !ok || it.Type != OutboxRequested {
			return err
		}
		b, err := tx.botByID(it.RequestID)
		if err != nil || b.State != BotRequested {
			return err // the launcher reported on it: BotStatus marked it sent
		}
		_, err = tx.endRequest(it.User, b, BotFailed, reason, "")
		return err
	})
}

// OutboxCancelUnsent cancels a request whose meeting is no longer live for
// its owner before it could be sent.
func (s *Store) OutboxCancelUnsent(ctx context.Context, it OutboxItem, reason string) error {
	return s.w.do(ctx, func(tx *Tx) error {
		b, err := tx.botByID(it.RequestID)
		if err != nil {
			return err
		}
		if b.State != BotRequested {
			_, err := tx.deleteItem(it)
			return err
		}
		_, err = tx.endRequest(it.User, b, BotCancelled, reason, "")
		return err
	})
}

func (tx *Tx) botByID(requestID string) (Bot, error) {
	b, err := scanBot(tx.queryRow(`SELECT `+botColumns+` FROM bot_requests WHERE id = ?`, requestID))
	if err == sql.ErrNoRows {
		return Bot{}, ErrNotFound
	}
	return b, err
}
