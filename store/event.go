package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Frame types of the event log.
const (
	TypeMeetingStarted = "meeting.started"
	TypeMeetingEnded   = "meeting.ended"
	TypeMeetingJoined  = "meeting.joined"
	TypeMeetingLeft    = "meeting.left"
	TypeBotUpdated     = "bot.updated"
)

// Entry is one committed event of a user's log.
type Entry struct {
	User  string
	Seq   int64
	Epoch string
	Type  string
	At    time.Time
	// Data is the frame's payload object (the meeting or the bot), as JSON.
	Data json.RawMessage
	// Received is when the webhook that caused it arrived; zero on replay.
	Received time.Time
}

// emit appends an event to the user's log, taking the next seq in this
// transaction: seq is gap-free because only a commit makes it visible.
func (tx *Tx) emit(user, typ string, m Meeting, d Delivery) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	at := d.At
	if at.IsZero() {
		at = d.Received
	}
	return tx.append(user, typ, data, at, d.Received)
}

// append adds an entry with its payload object data to the user's log.
func (tx *Tx) append(user, typ string, data []byte, at, received time.Time) error {
	seq, gen, autoSend, err := tx.s.eng.appendEvent(tx, user, typ, at, data)
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	tx.autoSend[user] = autoSend // read on the way, for meeting.started: no statement of its own
	tx.out.Entries = append(tx.out.Entries, Entry{
		User: user, Seq: seq, Epoch: tx.s.userEpoch(gen), Type: typ, At: at.UTC(), Data: data, Received: received,
	})
	return nil
}

// userEpoch names one user's log: it changes with a new database, a restored
// backup, or the user's log starting over after a deauthorization.
func (s *Store) userEpoch(gen string) string { return s.epoch + "-" + gen }

// Position is a place in a user's log.
type Position struct {
	Epoch string
	Seq   int64
}

// Welcome is what a connecting client starts from: either the live
// snapshot at Seq, or (Resumed) the entries it missed after its position.
type Welcome struct {
	Epoch    string
	Seq      int64
	Resumed  bool
	Meetings []Meeting
	Bots     []Bot // with a snapshot: the requests of the live meetings
	Entries  []Entry
}

// Welcome reads, in one snapshot, the user's position and either the
// entries after since (when all are still retained and at most maxReplay)
// or the live meetings. ErrNotFound when the user is unknown.
func (s *Store) Welcome(ctx context.Context, user string, since *Position, maxReplay int) (Welcome, error) {
	tx, err := s.read.BeginTx(ctx, s.eng.readTx())
	if err != nil {
		return Welcome{}, fmt.Errorf("welcome: %w", err)
	}
	defer tx.Rollback()
	var w Welcome
	var gen string
	q := s.reader(tx)
	err = q.QueryRowContext(ctx, qPosition, user).Scan(&w.Seq, &gen)
	if err == sql.ErrNoRows {
		return Welcome{}, ErrNotFound
	}
	if err != nil {
		return Welcome{}, fmt.Errorf("welcome: %w", err)
	}
	w.Epoch = s.userEpoch(gen)
	if since != nil && since.Epoch == w.Epoch && since.Seq >= 0 && since.Seq <= w.Seq && w.Seq-since.Seq <= int64(maxReplay) {
		entries, err := entriesAfter(ctx, q, user, w.Epoch, since.Seq, w.Seq)
		if err != nil {
			return Welcome{}, err
		}
		// Resumable only when nothing in between was swept by retention.
		if int64(len(entries)) == w.Seq-since.Seq {
			w.Resumed, w.Seq, w.Entries = true, since.Seq, entries
			return w, nil
		}
	}
	if w.Meetings, err = liveMeetings(ctx, q, user); err != nil {
		return Welcome{}, err
	}
	if w.Bots, err = liveBots(ctx, q, user); err != nil {
		return Welcome{}, err
	}
	return w, nil
}

const (
	qPosition     = `SELECT seq, gen FROM users WHERE id = ?`
	qEntriesAfter = `SELECT seq, type, at, data FROM events WHERE user_id = ? AND seq > ? AND seq <= ? ORDER BY seq`
)

func entriesAfter(ctx context.Context, q querier, user, epoch string, after, upto int64) ([]Entry, error) {
	rows, err := q.QueryContext(ctx, qEntriesAfter, user, after, upto)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	var entries []Entry
	for rows.Next() {
		e := Entry{User: user, Epoch: epoch}
		var at int64
		var data string
		if err := rows.Scan(&e.Seq, &e.Type, &at, &data); err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		e.At, e.Data = time.UnixMilli(at).UTC(), json.RawMessage(data)
		entries = append(entries, e)
	}
	return entries, rows.Err()
}
