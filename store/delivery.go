package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Kind is what a verified webhook delivery means to onair.
type Kind int

const (
	KindIgnore Kind = iota // recorded so it is not retried; no effect
	KindStart              // meeting or webinar started
	KindEnd                // ended or deleted: final for the uuid
	KindJoin               // participant joined
	KindLeave              // participant left
	KindDeauth             // app_deauthorized
)

// Outcome is what became of a delivery.
type Outcome string

const (
	OutcomeAccepted  Outcome = "accepted"
	OutcomeDuplicate Outcome = "duplicate"
	OutcomeIgnored   Outcome = "ignored"
)

// Delivery is a verified webhook, reduced to what the state needs.
type Delivery struct {
	Event string   // Zoom's event name
	Key   []string // what makes a redelivery the same delivery; stored hashed
	// KeyTime is the time the key carries (event_ts; zero when the event
	// has none), the same in every redelivery: keys are stored in its order.
	KeyTime time.Time
	Kind    Kind
	At      time.Time // event_ts (for app_deauthorized: deauthorization_time)
	// Received is when the request arrived, for the push-latency metric.
	Received time.Time
	Meeting  MeetingInfo
	// Participant is the participant's Zoom user id ("" when not signed in);
	// ParticipantAt orders their joins and leaves (join_time, leave_time).
	Participant   string
	ParticipantAt time.Time
	User          string // app_deauthorized: the user
}

// deliveryKeyLen is how much of the keyed hash a deduplication key keeps:
// 128 bits, so that distinct deliveries never collide.
const deliveryKeyLen = 16

// Ingest records a delivery and applies it, once: a redelivery is reported
// as a duplicate and changes nothing. It returns when the write is durable.
func (s *Store) Ingest(ctx context.Context, d Delivery) (Outcome, error) {
	var out Outcome
	err := s.w.do(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.apply(d)
		return err
	})
	if err != nil {
		return "", err // out is not read: a caller that gave up returns while fn may still run
	}
	return out, nil
}

func (tx *Tx) apply(d Delivery) (Outcome, error) {
	var sum [sha256.Size]byte
	tx.s.sum(&sum, append([]string{"delivery"}, d.Key...)...)
	var keyAt int64
	if !d.KeyTime.IsZero() {
		keyAt = ms(d.KeyTime)
	}
	// Whether the host is known comes back with the insert: one statement
	// (on PostgreSQL, one round trip) fewer per webhook.
	var hostKnown bool
	err := tx.queryRow(`INSERT INTO delivery_keys (at, key, received_at) VALUES (?, ?, ?) ON CONFLICT (at, key) DO NOTHING
		RETURNING EXISTS (SELECT 1 FROM users WHERE id = ?)`,
		keyAt, sum[:deliveryKeyLen], ms(d.Received), d.Meeting.HostID).Scan(&hostKnown)
	if err == sql.ErrNoRows {
		return OutcomeDuplicate, nil
	}
	if err != nil {
		return "", fmt.Errorf("record delivery: %w", err)
	}
	if tx.s.legacyKeys {
		var n int
		err := tx.queryRow(`SELECT 1 FROM deliveries WHERE key = ?`, hex.EncodeToString(sum[:])).Scan(&n)
		switch {
		case err == nil:
			return OutcomeDuplicate, nil
		case err != sql.ErrNoRows:
			return "", fmt.Errorf("record delivery: %w", err)
		}
	}
	if hostKnown {
		tx.known[d.Meeting.HostID] = true
	}
	switch d.Kind {
	case KindStart, KindJoin:
		if d.Meeting.UUID == "" || d.Meeting.HostID == "" {
			return OutcomeIgnored, nil
		}
	case KindEnd, KindLeave:
		if d.Meeting.UUID == "" {
			return OutcomeIgnored, nil
		}
	case KindDeauth:
		if d.User == "" {
			return OutcomeIgnored, nil
		}
		return tx.deauthorize(d)
	default:
		return OutcomeIgnored, nil
	}
	if d.Meeting.HostID != "" {
		gone, err := tx.deauthorized(d.Meeting.HostID)
		if err != nil {
			return "", err
		}
		if gone {
			// Their own events are ignored; others' keep no trace of them.
			if d.Kind == KindStart || d.Participant == d.Meeting.HostID {
				return OutcomeIgnored, nil
			}
			d.Meeting.HostID = ""
		}
	}
	return OutcomeAccepted, tx.applyMeeting(d)
}

func (tx *Tx) applyMeeting(d Delivery) error {
	m, err := tx.meeting(d.Meeting.UUID)
	if err != nil {
		return fmt.Errorf("load meeting: %w", err)
	}
	m.merge(d.Meeting)
	switch d.Kind {
	case KindStart, KindJoin:
		// A join is proof of a start: Zoom sometimes sends no meeting.started.
		started := !m.ended && !m.live
		m.live = m.live || started
		if err := tx.saveMeeting(&m); err != nil {
			return err
		}
		if started {
			if err := tx.hostStarted(&m, d); err != nil {
				return err
			}
		}
		if d.Kind == KindJoin {
			return tx.participant(&m, d, "join")
		}
		return nil
	case KindLeave:
		if err := tx.saveMeeting(&m); err != nil {
			return err
		}
		return tx.participant(&m, d, "leave")
	default: // KindEnd
		// An explicit end time beats the event-time fallback, whatever the order.
		if !d.Meeting.EndTime.IsZero() {
			m.EndTime = d.Meeting.EndTime
		} else if m.EndTime.IsZero() {
			m.EndTime = d.At
		}
		if m.ended {
			return tx.saveMeeting(&m)
		}
		m.ended, m.live = true, false
		if err := tx.saveMeeting(&m); err != nil {
			return err
		}
		return tx.endForMembers(&m, d)
	}
}

// hostStarted makes a freshly live meeting live for its host.
func (tx *Tx) hostStarted(m *meetingRow, d Delivery) error {
	if m.HostID == "" {
		return nil // a deauthorized host's meeting, live for participants only
	}
	ok, err := tx.ensureUser(m.HostID)
	if err != nil || !ok {
		return err // a deauthorized host: their events are ignored
	}
	if _, err := tx.exec(`INSERT INTO meeting_members (meeting_n, user_id, role, in_meeting, last_ts, last_kind)
		VALUES (?, ?, ?, 1, ?, 'start')
		ON CONFLICT (meeting_n, user_id) DO UPDATE SET role = excluded.role, in_meeting = 1`,
		m.n, m.HostID, RoleHost, ms(d.At)); err != nil {
		return fmt.Errorf("add host: %w", err)
	}
	if err := tx.emit(m.HostID, "meeting.started", m.view(RoleHost), d); err != nil {
		return err
	}
	if tx.autoSend[m.HostID] { // read by the meeting.started entry just appended
		_, _, err := tx.requestBot(m.HostID, m.UUID)
		return err
	}
	return nil
}

// participant applies a known user's join or leave. Their newest join or
// leave (by join_time/leave_time) wins, so a late retry of an older one
// changes nothing; at equal times a leave wins.
func (tx *Tx) participant(m *meetingRow, d Delivery, kind string) error {
	p := d.Participant
	if p != "" && p == m.HostID && kind == "leave" && !m.ended {
		return tx.hostLeft(m, d)
	}
	if p == "" || p == m.HostID || m.ended {
		return nil // the host's own participant events only ever start a meeting
	}
	known, err := tx.userExists(p)
	if err != nil || !known {
		return err
	}
	ts := ms(d.ParticipantAt)
	var in bool
	var lastTS int64
	var lastKind string
	err = tx.queryRow(`SELECT in_meeting, last_ts, last_kind FROM meeting_members WHERE meeting_n = ? AND user_id = ?`,
		m.n, p).Scan(&in, &lastTS, &lastKind)
	switch {
	case err == sql.ErrNoRows:
	case err != nil:
		return fmt.Errorf("load participant: %w", err)
	case lastTS > ts, lastTS == ts && (lastKind == "leave" || lastKind == kind):
		return nil
	}
	want := kind == "join" && m.live
	if _, err := tx.exec(`INSERT INTO meeting_members (meeting_n, user_id, role, in_meeting, last_ts, last_kind)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (meeting_n, user_id) DO UPDATE SET in_meeting = excluded.in_meeting,
			last_ts = excluded.last_ts, last_kind = excluded.last_kind`,
		m.n, p, RoleParticipant, want, ts, kind); err != nil {
		return fmt.Errorf("save participant: %w", err)
	}
	switch {
	case want && !in:
		return tx.emit(p, "meeting.joined", m.view(RoleParticipant), d)
	case !want && in:
		if err := tx.emit(p, "meeting.left", m.view(RoleParticipant), d); err != nil {
			return err
		}
		return tx.ownerGone(p, m.UUID, OutboxOwnerLeft, "you left the meeting before the bot was sent")
	}
	return nil
}

// hostLeft tells the launcher of the host's bot that its owner left the
// meeting (the meeting stays live: a host may leave and come back). A leave
// from before the request, a late retry, changes nothing.
func (tx *Tx) hostLeft(m *meetingRow, d Delivery) error {
	b, err := tx.activeBot(m.HostID, m.UUID)
	if err == ErrNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	var created int64
	if err := tx.queryRow(`SELECT created_at FROM bot_requests WHERE id = ?`, b.RequestID).Scan(&created); err != nil {
		return fmt.Errorf("load bot request: %w", err)
	}
	if ms(d.ParticipantAt) < created {
		return nil
	}
	return tx.ownerGone(m.HostID, m.UUID, OutboxOwnerLeft, "you left the meeting before the bot was sent")
}

// endForMembers tells everyone the meeting was live for that it has ended.
func (tx *Tx) endForMembers(m *meetingRow, d Delivery) error {
	rows, err := tx.query(`SELECT user_id, role FROM meeting_members WHERE meeting_n = ? AND in_meeting = 1 ORDER BY user_id`, m.n)
	if err != nil {
		return fmt.Errorf("load members: %w", err)
	}
	type member struct{ user, role string }
	var members []member
	for rows.Next() {
		var mb member
		if err := rows.Scan(&mb.user, &mb.role); err != nil {
			rows.Close()
			return fmt.Errorf("load members: %w", err)
		}
		members = append(members, mb)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load members: %w", err)
	}
	if len(members) == 0 {
		return nil
	}
	if _, err := tx.exec(`UPDATE meeting_members SET in_meeting = 0 WHERE meeting_n = ?`, m.n); err != nil {
		return fmt.Errorf("end members: %w", err)
	}
	for _, mb := range members {
		if err := tx.emit(mb.user, "meeting.ended", m.view(mb.role), d); err != nil {
			return err
		}
		if err := tx.ownerGone(mb.user, m.UUID, OutboxMeetingEnded, "the meeting ended before the bot was sent"); err != nil {
			return err
		}
	}
	return nil
}

// deauthorize forgets everything of the user and remembers only a keyed
// hash of their id, so later events for them are ignored until they return.
func (tx *Tx) deauthorize(d Delivery) (Outcome, error) {
	h := tx.s.hash("user", d.User)
	at := ms(d.At)
	var prevAt, returnedAt int64
	err := tx.queryRow(`SELECT deauthorized_at, returned_at FROM deauthorizations WHERE user_hash = ?`, h).Scan(&prevAt, &returnedAt)
	switch {
	case err == sql.ErrNoRows:
	case err != nil:
		return "", fmt.Errorf("load deauthorization: %w", err)
	case returnedAt >= at || prevAt >= at:
		return OutcomeIgnored, nil // they came back since, or a later one is known
	}
	if _, err := tx.exec(`INSERT INTO deauthorizations (user_hash, deauthorized_at, returned_at) VALUES (?, ?, 0)
		ON CONFLICT (user_hash) DO UPDATE SET deauthorized_at = excluded.deauthorized_at`, h, at); err != nil {
		return "", fmt.Errorf("save deauthorization: %w", err)
	}
	if err := tx.forgetUser(d.User); err != nil {
		return "", err
	}
	tx.out.Deauthorized = append(tx.out.Deauthorized, d.User)
	return OutcomeAccepted, nil
}

// forgetUser deletes the user's own data: the statements are listed in the
// order foreign keys need.
func (tx *Tx) forgetUser(id string) error {
	tx.known[id] = false
	delete(tx.s.w.users, id) // at once: the writer's cache must never outlive the row
	for _, q := range []string{
		// Bodies built for others' requests about meetings they were part
		// of may name them (sealed or not): they are built again, from the
		// rows as this leaves them, at the next attempt.
		`UPDATE bot_outbox SET body = '', detail = '' WHERE request_id IN (SELECT b.id FROM bot_requests b
			JOIN meetings m ON m.uuid = b.meeting_uuid
			WHERE m.host_id = ? OR m.n IN (SELECT meeting_n FROM meeting_members WHERE user_id = ?))`,
		`DELETE FROM events WHERE user_id = ?`,
		// Meetings only they were part of.
		`DELETE FROM meetings WHERE (host_id = ? OR n IN (SELECT meeting_n FROM meeting_members WHERE user_id = ?))
			AND NOT EXISTS (SELECT 1 FROM meeting_members o WHERE o.meeting_n = meetings.n AND o.user_id <> ?)`,
		`DELETE FROM meeting_members WHERE user_id = ?`,
		`UPDATE meetings SET host_id = '' WHERE host_id = ?`,
		`DELETE FROM users WHERE id = ?`,
	} {
		args := make([]any, strings.Count(q, "?"))
		for i := range args {
			args[i] = id
		}
		if _, err := tx.exec(q, args...); err != nil {
			return fmt.Errorf("forget user: %w", err)
		}
	}
	// Others' logs name them as the host of a meeting they shared: as the
	// meetings row above, those frames keep the meeting but not the host.
	quoted, err := json.Marshal(id)
	if err != nil {
		return err
	}
	field := `"host_id":` + string(quoted)
	like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(field) + "%"
	if _, err := tx.exec(`UPDATE events SET data = replace(data, ?, '"host_id":""') WHERE data LIKE ? ESCAPE '\'`,
		field, like); err != nil {
		return fmt.Errorf("forget user: %w", err)
	}
	return nil
}
