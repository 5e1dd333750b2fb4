// Package evidenceset keeps in memory each producer's outcome (the
// batch_evidence table) in a few recent batches, so that a producer's missed
// batches of the last day and their reasons are answered without reading
// the evidence tables: on a database with months of batches those reads are
// cold, one index probe per batch.
//
// A Set is immutable: Update returns a new Set holding the batches asked
// for, reading only those the previous one lacks (a new batch's rows: one
// index range), so readers never wait for a writer.
package evidenceset

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/api/pointset"
)

// Set is the evidence of some batches.
type Set struct {
	batches map[int64]*batch // by bot_log_id
	names   []string         // outcome names, by code
	// The evidence_producers rows (a dictionary of keys, never deleted):
	// id by key, and the highest id read.
	producers map[string]int32
	maxID     int32
}

type batch struct {
	// summary: the batch has a batch_evidence_summary row (it was scored
	// with evidence); without one its rows say nothing.
	summary   bool
	producers []int32 // evidence_producers ids with a row, ascending
	outcomes  []uint8 // their outcomes, codes into Set.names
}

// Update returns a set of the batches asked for, as of tx's snapshot: those
// prev holds are kept (a batch's evidence is written with it and changes
// only when a rescore rewrites the batch, after which the caller loads
// anew: prev nil), the others are read.
func Update(ctx context.Context, tx pgx.Tx, prev *Set, want []pointset.Batch) (*Set, error) {
	next := &Set{batches: make(map[int64]*batch, len(want)), producers: map[string]int32{}}
	var missing []int64
	if prev != nil {
		next.names, next.producers, next.maxID = prev.names, prev.producers, prev.maxID
	}
	if err := next.readProducers(ctx, tx); err != nil {
		return nil, err
	}
	for _, b := range want {
		if prev != nil {
			if held, ok := prev.batches[b.ID]; ok {
				next.batches[b.ID] = held
				continue
			}
		}
		missing = append(missing, b.ID)
	}
	if len(missing) == 0 {
		return next, nil
	}
	for _, id := range missing {
		next.batches[id] = &batch{}
	}
	rows, err := tx.Query(ctx, `SELECT s.bot_log_id, coalesce(e.producers, '{}'), coalesce(e.outcomes, '{}')
		FROM batch_evidence_summary s
		LEFT JOIN LATERAL (SELECT array_agg(producer_id ORDER BY producer_id) AS producers,
				array_agg(outcome::text ORDER BY producer_id) AS outcomes
			FROM batch_evidence WHERE bot_log_id = s.bot_log_id) e ON true
		WHERE s.bot_log_id = ANY($1)`, missing)
	if err != nil {
		return nil, fmt.Errorf("reading the batch evidence: %w", err)
	}
	names := slices.Clone(next.names)
	var id int64
	var producers []int32
	var outcomes []string
	_, err = pgx.ForEachRow(rows, []any{&id, &producers, &outcomes}, func() error {
		b := &batch{summary: true, producers: slices.Clone(producers), outcomes: make([]uint8, len(outcomes))}
		for i, o := range outcomes {
			code := slices.Index(names, o)
			if code < 0 {
				if len(names) == 255 {
					return fmt.Errorf("more than 255 evidence outcomes")
				}
				code = len(names)
				names = append(names, o)
			}
			b.outcomes[i] = uint8(code)
		}
		next.batches[id] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the batch evidence: %w", err)
	}
	next.names = names
	return next, nil
}

// readProducers adds the evidence_producers rows after the highest id read
// (copying the map when there are any: sets are shared).
func (s *Set) readProducers(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT id, block_producer_key FROM evidence_producers WHERE id > $1 ORDER BY id`, s.maxID)
	if err != nil {
		return fmt.Errorf("reading evidence_producers: %w", err)
	}
	var id int32
	var key string
	copied := false
	_, err = pgx.ForEachRow(rows, []any{&id, &key}, func() error {
		if !copied {
			s.producers, copied = maps.Clone(s.producers), true
		}
		s.producers[key] = id
		s.maxID = max(s.maxID, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading evidence_producers: %w", err)
	}
	return nil
}

// Producer returns the evidence_producers id of a key; ok false when it has
// none (it never submitted).
func (s *Set) Producer(key string) (id int32, ok bool) {
	id, ok = s.producers[key]
	return id, ok
}

// Outcome returns the producer's outcome in batch id: its batch_evidence
// row's outcome, "" when the batch was scored with evidence and the
// producer has no row (it sent nothing in the window). ok is false when the
// set does not hold the batch or the batch was scored without evidence (the
// reason must be derived from the database). producer is the
// evidence_producers id; known false when the key has none.
func (s *Set) Outcome(id int64, producer int32, known bool) (outcome string, ok bool) {
	b, held := s.batches[id]
	if !held || !b.summary {
		return "", false
	}
	if !known {
		return "", true
	}
	i, found := slices.BinarySearch(b.producers, producer)
	if !found {
		return "", true
	}
	return s.names[b.outcomes[i]], true
}

// Batches is the number of batches held.
func (s *Set) Batches() int { return len(s.batches) }

// Rows is the number of evidence rows held.
func (s *Set) Rows() int {
	n := 0
	for _, b := range s.batches {
		n += len(b.producers)
	}
	return n
}
