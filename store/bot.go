package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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
// live for them, pushed as bot.updated. While a request for that meeting is
// active, it is returned instead (created false): a repeat is idempotent.
func (s *Store) RequestBot(ctx context.Context, user, meetingUUID string) (Bot, bool, error) {
	// The results are read only once the write is done: a caller that gave
	// up returns while the writer may still be running fn.
	var b Bot
	var created bool
	err := s.w.do(ctx, func(tx *Tx) error {
		var live int
		err := tx.queryRow(`SELECT 1 FROM meeting_members WHERE meeting_uuid = ? AND user_id = ? AND in_meeting = 1`,
			meetingUUID, user).Scan(&live)
		if err == sql.ErrNoRows {
			return ErrNotLive
		}
		if err != nil {
			return fmt.Errorf("request bot: %w", err)
		}
		if b, err = tx.activeBot(user, meetingUUID); err != ErrNotFound {
			return err
		}
		b = Bot{RequestID: "br_" + randomHex(12), MeetingUUID: meetingUUID, State: BotRequested, UpdatedAt: Time{tx.now.UTC()}}
		if _, err := tx.exec(`INSERT INTO bot_requests (id, user_id, meeting_uuid, state, active, created_at, updated_at)
			VALUES (?, ?, ?, ?, 1, ?, ?)`, b.RequestID, user, meetingUUID, b.State, ms(tx.now), ms(tx.now)); err != nil {
			return fmt.Errorf("request bot: %w", err)
		}
		created = true
		return tx.botUpdated(user, b)
	})
	if err != nil {
		return Bot{}, false, err
	}
	return b, created, nil
}

// CancelBot cancels the user's active request for the meeting, pushed as
// bot.updated; ErrNotFound when there is none. prev is the state it had.
func (s *Store) CancelBot(ctx context.Context, user, meetingUUID string) (Bot, string, error) {
	var b Bot
	var prev string
	err := s.w.do(ctx, func(tx *Tx) error {
		var err error
		if b, err = tx.activeBot(user, meetingUUID); err != nil {
			return err
		}
		prev = b.State
		b.State, b.Detail, b.UpdatedAt = BotCancelled, "", Time{tx.now.UTC()}
		if _, err := tx.exec(`UPDATE bot_requests SET state = ?, detail = '', active = 0, updated_at = ? WHERE id = ?`,
			b.State, ms(tx.now), b.RequestID); err != nil {
			return fmt.Errorf("cancel bot: %w", err)
		}
		return tx.botUpdated(user, b)
	})
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

// liveBots returns the newest request of each meeting live for the user.
func liveBots(ctx context.Context, q querier, user string) ([]Bot, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+botColumns+` FROM bot_requests b
		WHERE b.user_id = ? AND b.n = (SELECT max(o.n) FROM bot_requests o
				WHERE o.user_id = b.user_id AND o.meeting_uuid = b.meeting_uuid)
			AND EXISTS (SELECT 1 FROM meeting_members mm WHERE mm.meeting_uuid = b.meeting_uuid
				AND mm.user_id = b.user_id AND mm.in_meeting = 1)
		ORDER BY b.n`, user)
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

// cancelUnsent cancels the user's request for an ended meeting if it was
// never sent: a bot must not be sent into a meeting that is over.
func (tx *Tx) cancelUnsent(user, meetingUUID string) error {
	b, err := tx.activeBot(user, meetingUUID)
	if err == ErrNotFound || (err == nil && b.State != BotRequested) {
		return nil
	}
	if err != nil {
		return err
	}
	b.State, b.Detail, b.UpdatedAt = BotCancelled, "the meeting ended before the bot was sent", Time{tx.now.UTC()}
	if _, err := tx.exec(`UPDATE bot_requests SET state = ?, detail = ?, active = 0, updated_at = ? WHERE id = ?`,
		b.State, b.Detail, ms(tx.now), b.RequestID); err != nil {
		return fmt.Errorf("cancel bot: %w", err)
	}
	return tx.botUpdated(user, b)
}
