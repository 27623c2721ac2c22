package store

import (
	"context"
	"fmt"
	"time"
)

// ClaimReconcile records that the user's live meetings are being checked
// against Zoom now, unless they were less than gap ago (false then). The
// claim is in the database, so a restart does not reset the throttle.
func (s *Store) ClaimReconcile(ctx context.Context, user string, gap time.Duration) (bool, error) {
	var claimed bool
	err := s.w.do(ctx, func(tx *Tx) error {
		res, err := tx.exec(`UPDATE users SET reconciled_at = ? WHERE id = ? AND reconciled_at <= ?`,
			ms(tx.now), user, ms(tx.now.Add(-gap)))
		if err != nil {
			return fmt.Errorf("claim reconcile: %w", err)
		}
		n, err := res.RowsAffected()
		claimed = n == 1
		return err
	})
	if err != nil {
		return false, err
	}
	return claimed, nil
}

// TokenUsers lists the users whose Zoom tokens onair holds.
func (s *Store) TokenUsers(ctx context.Context) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT user_id FROM zoom_tokens ORDER BY user_id`)
	if err != nil {
		return nil, fmt.Errorf("token users: %w", err)
	}
	defer rows.Close()
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

// StaleMeetings lists live meetings with no event for longer than after
// whose host has no Zoom token to ask Zoom about them with (only the host's
// reconciliation checks a meeting, and another user's token cannot read it).
func (s *Store) StaleMeetings(ctx context.Context, after time.Duration) ([]MeetingInfo, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT uuid, id, host_id FROM meetings m
		WHERE live = 1 AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM zoom_tokens t WHERE t.user_id = m.host_id)
		ORDER BY updated_at LIMIT 1000`, ms(s.opts.Now().Add(-after)))
	if err != nil {
		return nil, fmt.Errorf("stale meetings: %w", err)
	}
	defer rows.Close()
	var out []MeetingInfo
	for rows.Next() {
		var m MeetingInfo
		if err := rows.Scan(&m.UUID, &m.ID, &m.HostID); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
