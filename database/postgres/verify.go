package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// Unverified returns the submissions with submitted_at in [w.Start, w.End)
// that no verifier has looked at yet (verified IS NULL), ordered by
// submitted_at and submitter: what a verifier needs of them (submitter,
// submitted_at and block_hash; snark_work is not read).
func (s *Database) Unverified(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error) {
	rows, err := s.Pool.Query(ctx, `SELECT submitted_at_date, submitted_at, submitter, block_hash
		FROM submissions WHERE submitted_at >= $1 AND submitted_at < $2 AND verified IS NULL
		ORDER BY submitted_at, submitter`, w.Start.UTC(), w.End.UTC())
	if err != nil {
		return nil, fmt.Errorf("reading unverified submissions: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (coordinator.Submission, error) {
		var c coordinator.Submission
		err := row.Scan(&c.SubmittedAtDate, &c.SubmittedAt, &c.Submitter, &c.BlockHash)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading unverified submissions: %w", err)
	}
	return subs, nil
}

// UpdateVerification stores what a verifier found for subs: state_hash,
// parent, height, slot, validation_error and verified of each submission,
// identified by (submitter, submitted_at). It is one set-based statement, so
// either every row is written or none, and it touches only rows whose
// verified IS NULL: re-verifying a window changes nothing.
func (s *Database) UpdateVerification(ctx context.Context, subs []coordinator.Submission) error {
	if len(subs) == 0 {
		return nil
	}
	n := len(subs)
	var (
		submitters                         = make([]string, n)
		at                                 = make([]time.Time, n)
		stateHash, parent, validationError = make([]*string, n), make([]*string, n), make([]*string, n)
		heights, slots                     = make([]*int32, n), make([]*int32, n)
		verified                           = make([]*bool, n)
	)
	for i, c := range subs {
		submitters[i], at[i] = c.Submitter, c.SubmittedAt.UTC()
		stateHash[i], parent[i], validationError[i], verified[i] = c.StateHash, c.Parent, c.ValidationError, c.Verified
		var err error
		if heights[i], err = narrow(c.Height); err != nil {
			return fmt.Errorf("submission of %s at %s: height: %w", c.Submitter, c.SubmittedAt.Format(time.RFC3339Nano), err)
		}
		if slots[i], err = narrow(c.Slot); err != nil {
			return fmt.Errorf("submission of %s at %s: slot: %w", c.Submitter, c.SubmittedAt.Format(time.RFC3339Nano), err)
		}
	}
	_, err := s.Pool.Exec(ctx, `UPDATE submissions s SET state_hash = u.state_hash, parent = u.parent,
			height = u.height, slot = u.slot, validation_error = u.validation_error, verified = u.verified
		FROM unnest($1::text[], $2::timestamp[], $3::text[], $4::text[], $5::int4[], $6::int4[], $7::text[], $8::bool[])
			AS u(submitter, submitted_at, state_hash, parent, height, slot, validation_error, verified)
		WHERE s.submitter = u.submitter AND s.submitted_at = u.submitted_at AND s.verified IS NULL`,
		submitters, at, stateHash, parent, heights, slots, validationError, verified)
	if err != nil {
		return fmt.Errorf("storing the verification of %d submissions: %w", n, err)
	}
	return nil
}

// narrow converts a height or slot to the INTEGER column's type.
func narrow(v *int64) (*int32, error) {
	if v == nil {
		return nil, nil
	}
	if *v < math.MinInt32 || *v > math.MaxInt32 {
		return nil, fmt.Errorf("%d does not fit the INTEGER column", *v)
	}
	n := int32(*v)
	return &n, nil
}
