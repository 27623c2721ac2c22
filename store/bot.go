package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Bot request states. A request is active until it is left, failed or
// cancelled; a user has at most one active request per meeting.
const (
	BotRequested  = "requested"
	BotDispatched = "dispatched"
	BotJoining    = "joining"
	BotJoined     = "joined"
	BotLeft       = "left"
	BotFailed     = "failed"
	BotCancelled  = "cancelled"
)

// Bot is a "send the bot" request as the API and frames show it.
type Bot struct {
	RequestID   string `json:"request_id"`
	MeetingUUID string `json:"meeting_uuid"`
	State       string `json:"state"`
	Detail      string `json:"detail,omitempty"`
	UpdatedAt   Time   `json:"updated_at"`
}

// Active says whether the request can still go anywhere.
func (b Bot) Active() bool {
	return b.State != BotLeft && b.State != BotFailed && b.State != BotCancelled
}

// ErrNotLive says the meeting is not live for the user.
var ErrNotLive = errors.New("meeting is not live for this user")

const botColumns = `id, meeting_uuid, state, detail, updated_at`

func scanBot(row interface{ Scan(...any) error }) (Bot, error) {
	var b Bot
	var updated int64
	if err := row.Scan(&b.RequestID, &b.MeetingUUID, &b.State, &b.Detail, &updated); err != nil {
		return Bot{}, err
	}
	b.UpdatedAt = Time{time.UnixMilli(updated).UTC()}
	return b, nil
}

// RequestBot records the user's request to send the bot into a meeting
// live for them, pushed as bot.updated (and, with a launcher, put in the
// outbox). While a request for that meeting is active, it is returned
// instead (created false): a repeat is idempotent.
func (s *Store) RequestBot(ctx context.Context, user, meetingUUID string) (Bot, bool, error) {
	// The results are read only once the write is done: a caller that gave
	// up returns while the writer may still be running fn.
	var b Bot
	var created bool
	var refused error // a refusal writes nothing: not an error of the batch
	err := s.w.do(ctx, func(tx *Tx) error {
		var live int
		err := tx.queryRow(`SELECT 1 FROM meeting_members mm JOIN meetings m ON m.n = mm.meeting_n
			WHERE m.uuid = ? AND mm.user_id = ? AND mm.in_meeting = 1`,
			meetingUUID, user).Scan(&live)
		if err == sql.ErrNoRows {
			refused = ErrNotLive
			return nil
		}
		if err != nil {
			return fmt.Errorf("request bot: %w", err)
		}
		b, created, err = tx.requestBot(user, meetingUUID)
		return err
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return Bot{}, false, err
	}
	return b, created, nil
}

// requestBot creates the user's request for a meeting live for them, or
// returns the active one.
func (tx *Tx) requestBot(user, meetingUUID string) (Bot, bool, error) {
	if b, err := tx.activeBot(user, meetingUUID); err != ErrNotFound {
		return b, false, err
	}
	b := Bot{RequestID: "br_" + randomHex(12), MeetingUUID: meetingUUID, State: BotRequested, UpdatedAt: Time{tx.now.UTC()}}
	if _, err := tx.exec(`INSERT INTO bot_requests (id, user_id, meeting_uuid, state, active, created_at, updated_at)
		VALUES (?, ?, ?, ?, 1, ?, ?)`, b.RequestID, user, meetingUUID, b.State, ms(tx.now), ms(tx.now)); err != nil {
		return Bot{}, false, fmt.Errorf("request bot: %w", err)
	}
	if tx.s.opts.Launcher {
		if err := tx.enqueue(b.RequestID, OutboxRequested, ""); err != nil {
			return Bot{}, false, err
		}
	}
	return b, true, tx.botUpdated(user, b)
}

// CancelBot cancels the user's active request for the meeting, pushed as
// bot.updated; ErrNotFound when there is none. prev is the state it had.
func (s *Store) CancelBot(ctx context.Context, user, meetingUUID string) (Bot, string, error) {
	var b Bot
	var prev string
	var refused error // a refusal writes nothing: not an error of the batch
	err := s.w.do(ctx, func(tx *Tx) error {
		var err error
		if b, err = tx.activeBot(user, meetingUUID); err == ErrNotFound {
			refused = err
			return nil
		} else if err != nil {
			return err
		}
		prev = b.State
		b, err = tx.endRequest(user, b, BotCancelled, "", OutboxCancelled)
		return err
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return Bot{}, "", err
	}
	return b, prev, nil
}

func (tx *Tx) activeBot(user, meetingUUID string) (Bot, error) {
	b, err := scanBot(tx.queryRow(`SELECT `+botColumns+` FROM bot_requests WHERE user_id = ? AND meeting_uuid = ? AND active = 1`,
		user, meetingUUID))
	if err == sql.ErrNoRows {
		return Bot{}, ErrNotFound
	}
	if err != nil {
		return Bot{}, fmt.Errorf("load bot request: %w", err)
	}
	return b, nil
}

func (tx *Tx) botUpdated(user string, b Bot) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return tx.append(user, TypeBotUpdated, data, tx.now, time.Time{})
}

const qLiveBots = `SELECT ` + botColumns + ` FROM bot_requests b
		WHERE b.user_id = ? AND b.n = (SELECT max(o.n) FROM bot_requests o
				WHERE o.user_id = b.user_id AND o.meeting_uuid = b.meeting_uuid)
			AND EXISTS (SELECT 1 FROM meeting_members mm JOIN meetings m ON m.n = mm.meeting_n
				WHERE m.uuid = b.meeting_uuid AND mm.user_id = b.user_id AND mm.in_meeting = 1)
		ORDER BY b.n`

// liveBots returns the newest request of each meeting live for the user.
func liveBots(ctx context.Context, q querier, user string) ([]Bot, error) {
	rows, err := q.QueryContext(ctx, qLiveBots, user)
	if err != nil {
		return nil, fmt.Errorf("live bots: %w", err)
	}
	defer rows.Close()
	bots := []Bot{}
	for rows.Next() {
		b, err := scanBot(rows)
		if err != nil {
			return nil, fmt.Errorf("live bots: %w", err)
		}
		bots = append(bots, b)
	}
	return bots, rows.Err()
}

// endRequest moves an active request to a final state (cancelled or
// failed) and pushes it. The launcher is told with notice, when it had the
// request; an unsent request simply leaves the outbox.
func (tx *Tx) endRequest(user string, b Bot, state, detail, notice string) (Bot, error) {
	b.State, b.Detail, b.UpdatedAt = state, detail, Time{tx.now.UTC()}
	if _, err := tx.exec(`UPDATE bot_requests SET state = ?, detail = ?, active = 0, updated_at = ? WHERE id = ?`,
		b.State, b.Detail, ms(tx.now), b.RequestID); err != nil {
		return Bot{}, fmt.Errorf("end bot request: %w", err)
	}
	if _, err := tx.exec(`DELETE FROM bot_outbox WHERE request_id = ? AND type = ?`, b.RequestID, OutboxRequested); err != nil {
		return Bot{}, fmt.Errorf("end bot request: %w", err)
	}
	if notice != "" {
		if err := tx.noticeIfSent(b.RequestID, notice); err != nil {
			return Bot{}, err
		}
	}
	return b, tx.botUpdated(user, b)
}

// ownerGone handles the end of the user's presence in a meeting (it ended,
// or they left): a request never sent is cancelled (a bot must not arrive
// late), and the launcher of one it has is told, so its bot can leave.
func (tx *Tx) ownerGone(user, meetingUUID, notice, unsentDetail string) error {
	b, err := tx.activeBot(user, meetingUUID)
	if err == ErrNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	sent, err := tx.requestSent(b.RequestID)
	if err != nil {
		return err
	}
	if !sent {
		_, err := tx.endRequest(user, b, BotCancelled, unsentDetail, "")
		return err
	}
	return tx.noticeIfSent(b.RequestID, notice)
}

func (tx *Tx) requestSent(requestID string) (bool, error) {
	var sent bool
	if err := tx.queryRow(`SELECT sent FROM bot_requests WHERE id = ?`, requestID).Scan(&sent); err != nil {
		return false, fmt.Errorf("load bot request: %w", err)
	}
	return sent, nil
}

// noticeIfSent queues a notice for the launcher if it has the request.
func (tx *Tx) noticeIfSent(requestID, notice string) error {
	sent, err := tx.requestSent(requestID)
	if err != nil || !sent {
		return err
	}
	return tx.enqueue(requestID, notice, "")
}

// ErrIllegalMove says a bot request cannot go to that state from its own.
var ErrIllegalMove = errors.New("illegal bot state change")

// botMoves lists, for each state a launcher reports, the states it may come
// from: requested or dispatched → joining → joined → left (joining may be
// skipped); any state but left → failed, where a cancelled request stays
// cancelled (issue 5: the user's cancel is final) and the report is a no-op.
var botMoves = map[string][]string{
	BotJoining: {BotRequested, BotDispatched},
	BotJoined:  {BotRequested, BotDispatched, BotJoining},
	BotLeft:    {BotJoined},
	BotFailed:  {BotRequested, BotDispatched, BotJoining, BotJoined},
}

// BotStatus applies the launcher's report on a request, pushed as
// bot.updated. Repeating the current state changes nothing (changed
// false): launchers retry. ErrNotFound for an unknown request,
// ErrIllegalMove for a move the state machine does not allow.
func (s *Store) BotStatus(ctx context.Context, requestID, state, detail string) (Bot, bool, error) {
	from, ok := botMoves[state]
	if !ok {
		return Bot{}, false, ErrIllegalMove
	}
	var b Bot
	var changed bool
	var refused error // a refusal writes nothing: not an error of the batch
	err := s.w.do(ctx, func(tx *Tx) error {
		var user string
		var err error
		if b, err = tx.botByID(requestID); err == ErrNotFound {
			refused = err
			return nil
		} else if err != nil {
			return err
		}
		if b.State == state || (b.State == BotCancelled && state == BotFailed) {
			return nil // a repeat; or the bot of a cancelled request failed: it stays cancelled
		}
		if !slices.Contains(from, b.State) {
			refused = ErrIllegalMove
			return nil
		}
		if err := tx.queryRow(`SELECT user_id FROM bot_requests WHERE id = ?`, requestID).Scan(&user); err != nil {
			return err
		}
		b.State, b.Detail, b.UpdatedAt = state, detail, Time{tx.now.UTC()}
		active := state != BotLeft && state != BotFailed
		// A launcher reporting on a request has it, whether or not its 2xx
		// reached onair: later notices must go to it.
		if _, err := tx.exec(`UPDATE bot_requests SET state = ?, detail = ?, active = ?, sent = 1, updated_at = ? WHERE id = ?`,
			b.State, b.Detail, active, ms(tx.now), requestID); err != nil {
			return fmt.Errorf("bot status: %w", err)
		}
		if !active {
			// Nothing more for the launcher about a bot it reports gone.
			if _, err := tx.exec(`DELETE FROM bot_outbox WHERE request_id = ? AND type <> ?`, requestID, OutboxCancelled); err != nil {
				return err
			}
		}
		changed = true
		return tx.botUpdated(user, b)
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return Bot{}, false, err
	}
	return b, changed, nil
}
