package store

import (
	"context"
	"fmt"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
)

// AuditFilter selects records for ListEvents.
type AuditFilter = auth.AuditFilter

// AppendEvents stores records that belong to no host change (logins,
// tokens, users, profiles), in one transaction; empty times become now and
// zero records are skipped.
func (db *DB) AppendEvents(ctx context.Context, recs ...host.Record) error {
	err := db.write(ctx, func(tx *gorm.DB) error { return insertEvents(tx, now(), recs) })
	if err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	return nil
}

// ListEvents returns the audit records f selects, newest (highest id)
// first. Page with Before: the next page starts below the last id returned.
func (db *DB) ListEvents(ctx context.Context, f AuditFilter) ([]host.Record, error) {
	q := db.read(ctx).Model(&eventRow{})
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Host != "" {
		q = q.Where("host_name = ?", f.Host)
	}
	if f.Action != "" {
		// Record.Kind: the lifecycle event, else the action.
		q = q.Where("(event = ? OR (event = '' AND action = ?))", f.Action, f.Action)
	}
	if !f.Since.IsZero() {
		q = q.Where("time >= ?", utc(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where("time < ?", utc(f.Until))
	}
	if f.Before > 0 {
		q = q.Where("id < ?", f.Before)
	}
	q = q.Order("id DESC")
	if f.Limit > 0 {
		q = q.Limit(f.Limit)
	}
	var rows []eventRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list events: %w", dbErr(err))
	}
	out := make([]host.Record, len(rows))
	for i, r := range rows {
		out[i] = r.toRecord()
	}
	return out, nil
}

// PruneEvents deletes the records older than olderThan (retention) and
// returns how many. It is the only call that deletes audit records.
func (db *DB) PruneEvents(ctx context.Context, olderThan time.Time) (int, error) {
	var n int
	err := db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("time < ?", utc(olderThan)).Delete(&eventRow{})
		n = int(res.RowsAffected)
		return dbErr(res.Error)
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune events: %w", err)
	}
	return n, nil
}
