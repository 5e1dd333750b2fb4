package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// submissionColumns are the columns scoring reads, in the order
// readSubmissions scans them.
const submissionColumns = `submitted_at, submitter, created_at, state_hash, parent, height, slot, validation_error, verified`

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readSubmissions runs sql, which selects submissionColumns, and returns its
// rows. A catch-up reads hundreds of thousands of rows that name a few
// thousand producers and state hashes: each distinct string is allocated
// once, and the values the pointer fields point at are allocated in blocks,
// which keeps the garbage collector's work small. Every Submission still
// has pointers of its own (only the strings are shared).
func readSubmissions(ctx context.Context, q queryer, sql string, args ...any) ([]coordinator.Submission, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading submissions: %w", err)
	}
	defer rows.Close()
	var (
		chunks                     [][]coordinator.Submission // filled one after the other: no regrowing copies
		cur                        []coordinator.Submission
		in                         = interner{}
		a                          arena
		submitter, hash, parent, e pgtype.DriverBytes
		created                    pgtype.Timestamp
		height, slot               pgtype.Int4
		verified                   pgtype.Bool
	)
	for rows.Next() {
		var c coordinator.Submission
		if err := rows.Scan(&c.SubmittedAt, &submitter, &created, &hash, &parent, &height, &slot, &e, &verified); err != nil {
			return nil, fmt.Errorf("reading submissions: %w", err)
		}
		c.Submitter = in.string(submitter)
		if created.Valid {
			if created.InfinityModifier != pgtype.Finite {
				return nil, fmt.Errorf("reading submissions: created_at of %s at %s is infinite", c.Submitter, c.SubmittedAt)
			}
			c.CreatedAt = a.time(created.Time)
		}
		c.StateHash, c.Parent, c.ValidationError = a.str(in, hash), a.str(in, parent), a.str(in, e)
		if height.Valid {
			c.Height = a.int(int64(height.Int32))
		}
		if slot.Valid {
			c.Slot = a.int(int64(slot.Int32))
		}
		if verified.Valid {
			c.Verified = a.bool(verified.Bool)
		}
		if len(cur) == cap(cur) {
			if cur != nil {
				chunks = append(chunks, cur)
			}
			cur = make([]coordinator.Submission, 0, max(1024, 2*cap(cur)))
		}
		cur = append(cur, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading submissions: %w", err)
	}
	if len(chunks) == 0 {
		return cur, nil
	}
	n := len(cur)
	for _, c := range chunks {
		n += len(c)
	}
	out := make([]coordinator.Submission, 0, n)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, cur...), nil
}

// interner returns one string per distinct value.
type interner map[string]string

func (in interner) string(b []byte) string {
	if s, ok := in[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	in[s] = s
	return s
}

// arena hands out pointers to values allocated in blocks.
type arena struct {
	times []time.Time
	strs  []string
	ints  []int64
	bools []bool
}

const arenaBlock = 4096

func (a *arena) time(t time.Time) *time.Time {
	if len(a.times) == cap(a.times) {
		a.times = make([]time.Time, 0, arenaBlock)
	}
	a.times = append(a.times, t)
	return &a.times[len(a.times)-1]
}

// str returns nil for NULL (b nil), else a pointer to the interned string.
func (a *arena) str(in interner, b []byte) *string {
	if b == nil {
		return nil
	}
	if len(a.strs) == cap(a.strs) {
		a.strs = make([]string, 0, arenaBlock)
	}
	a.strs = append(a.strs, in.string(b))
	return &a.strs[len(a.strs)-1]
}

func (a *arena) int(v int64) *int64 {
	if len(a.ints) == cap(a.ints) {
		a.ints = make([]int64, 0, arenaBlock)
	}
	a.ints = append(a.ints, v)
	return &a.ints[len(a.ints)-1]
}

func (a *arena) bool(v bool) *bool {
	if len(a.bools) == cap(a.bools) {
		a.bools = make([]bool, 0, arenaBlock)
	}
	a.bools = append(a.bools, v)
	return &a.bools[len(a.bools)-1]
}
