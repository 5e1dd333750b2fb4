package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// EvidenceDetails is batch_evidence.details.
type EvidenceDetails struct {
	// ErrorExamples: per error class, the raw validation_error of the
	// producer's latest failed submission of the class.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	// StateHashes: for off_chain, the distinct state hashes named.
	StateHashes []string `json:"state_hashes,omitempty"`
}

// producerCache holds evidence_producers ids known to be committed, so
// that a batch looks up only the keys it has not seen before (usually none)
// instead of every producer's. Rows of evidence_producers are never deleted
// (cleanup_old_data keeps them: one small row per key ever seen), so a
// cached id stays valid.
type producerCache struct {
	mu  sync.Mutex
	ids map[string]int32
}

// add records ids of a committed transaction.
func (c *producerCache) add(ids map[string]int32) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = make(map[string]int32, len(ids))
	}
	for k, id := range ids {
		c.ids[k] = id
	}
}

// writeEvidence records a batch's per-producer evidence, its totals and its
// error classes (set-based: at most one statement for the producer ids of
// keys not in cache, one COPY, two inserts), in the batch's transaction. It
// returns the previous batch's error-class shares (nil when the previous
// batch has no evidence) and the producer ids it looked up, which the
// caller adds to cache once the transaction committed.
func writeEvidence(ctx context.Context, tx pgx.Tx, cache *producerCache, prevBotLogID, botLogID int64, ev *coordinator.BatchEvidence) (*coordinator.ClassShares, map[string]int32, error) {
	prev, err := readClassShares(ctx, tx, prevBotLogID)
	if err != nil {
		return nil, nil, err
	}
	known := func(string) (int32, bool) { return 0, false }
	if cache != nil {
		cache.mu.Lock()
		defer cache.mu.Unlock()
		known = func(k string) (int32, bool) { id, ok := cache.ids[k]; return id, ok }
	}
	var missing []string
	for _, p := range ev.Producers {
		if _, ok := known(p.Producer); !ok {
			missing = append(missing, p.Producer)
		}
	}
	looked := map[string]int32{}
	if len(missing) > 0 {
		// New keys are inserted and all keys' ids returned by one statement
		// (the outer SELECT does not see the rows the CTE inserts, the CTE
		// returns them).
		ids, err := idMap(ctx, tx, `WITH keys AS (SELECT unnest($1::text[]) AS k),
			ins AS (INSERT INTO evidence_producers (block_producer_key)
				SELECT k FROM keys WHERE NOT EXISTS (SELECT 1 FROM evidence_producers p WHERE p.block_producer_key = keys.k)
				ORDER BY k ON CONFLICT (block_producer_key) DO NOTHING RETURNING block_producer_key, id)
			SELECT block_producer_key, id FROM ins
			UNION ALL SELECT p.block_producer_key, p.id FROM evidence_producers p JOIN keys ON p.block_producer_key = keys.k`, missing)
		if err != nil {
			return nil, nil, fmt.Errorf("recording evidence producers: %w", err)
		}
		for k, id := range ids {
			looked[k] = int32(id)
		}
	}
	id := func(k string) int32 {
		if id, ok := known(k); ok {
			return id
		}
		return looked[k]
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"batch_evidence"},
		[]string{"bot_log_id", "producer_id", "outcome", "submissions", "valid", "unverified", "invalid_by_class", "details"},
		pgx.CopyFromSlice(len(ev.Producers), func(i int) ([]any, error) {
			p := &ev.Producers[i]
			var byClass, details any
			if p.InvalidByClass != nil {
				byClass = p.InvalidByClass
			}
			if p.Examples != nil || p.StateHashes != nil {
				details = EvidenceDetails{ErrorExamples: p.Examples, StateHashes: p.StateHashes}
			}
			return []any{int32(botLogID), id(p.Producer), p.Outcome, int32(p.Submissions), int32(p.Valid), int32(p.Unverified),
				byClass, details}, nil
		}))
	if err != nil {
		return nil, nil, fmt.Errorf("inserting batch_evidence: %w", err)
	}
	if int(n) != len(ev.Producers) {
		return nil, nil, fmt.Errorf("inserting batch_evidence: copied %d of %d rows", n, len(ev.Producers))
	}
	o := ev.ByOutcome
	if _, err := tx.Exec(ctx, `INSERT INTO batch_evidence_summary (bot_log_id, submissions, valid, unverified, invalid, producers,
		point_producers, off_chain_producers, invalid_producers, unverified_producers) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		botLogID, ev.Submissions, ev.Valid, ev.Unverified, ev.Invalid(), len(ev.Producers),
		o[coordinator.OutcomePoint], o[coordinator.OutcomeOffChain], o[coordinator.OutcomeInvalid], o[coordinator.OutcomeUnverified]); err != nil {
		return nil, nil, fmt.Errorf("inserting batch_evidence_summary: %w", err)
	}
	if len(ev.Classes) > 0 {
		classes, subs, producers, examples := make([]string, len(ev.Classes)), make([]int32, len(ev.Classes)), make([]int32, len(ev.Classes)), make([]string, len(ev.Classes))
		for i, c := range ev.Classes {
			classes[i], subs[i], producers[i], examples[i] = c.Class, int32(c.Submissions), int32(c.Producers), c.Example
		}
		if _, err := tx.Exec(ctx, `INSERT INTO batch_error_classes (bot_log_id, class, submissions, producers, example)
			SELECT $1, * FROM unnest($2::text[], $3::int4[], $4::int4[], $5::text[])`, botLogID, classes, subs, producers, examples); err != nil {
			return nil, nil, fmt.Errorf("inserting batch_error_classes: %w", err)
		}
	}
	return prev, looked, nil
}

// readClassShares reads a batch's error-class counts; nil when the batch has
// no evidence.
func readClassShares(ctx context.Context, tx pgx.Tx, botLogID int64) (*coordinator.ClassShares, error) {
	c := &coordinator.ClassShares{BotLogID: botLogID, ByClass: map[string]int{}}
	err := tx.QueryRow(ctx, `SELECT submissions FROM batch_evidence_summary WHERE bot_log_id = $1`, botLogID).Scan(&c.Submissions)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the previous batch's evidence: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT class, submissions FROM batch_error_classes WHERE bot_log_id = $1`, botLogID)
	if err != nil {
		return nil, fmt.Errorf("reading the previous batch's error classes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var class string
		var n int
		if err := rows.Scan(&class, &n); err != nil {
			return nil, fmt.Errorf("reading the previous batch's error classes: %w", err)
		}
		c.ByClass[class] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the previous batch's error classes: %w", err)
	}
	return c, nil
}

// RecordFailure stores a failed batch attempt (coordinator status shows the
// last one). The error text is cut to 2,000 characters. An attempt that
// failed before the latest batch was read has no window and is not stored
// (the engine logs it, and alerts when it abandons the batch).
func (s *Database) RecordFailure(ctx context.Context, at time.Time, f coordinator.Failure) error {
	if f.Window == nil {
		return nil
	}
	w, attempt, final := *f.Window, f.Attempt, f.Final
	text := []rune(f.Err.Error())
	if len(text) > 2000 {
		text = text[:2000]
	}
	if _, err := s.Pool.Exec(ctx, `INSERT INTO coordinator_failures (failed_at, window_start, window_end, attempt, final, error)
		VALUES ($1, $2, $3, $4, $5, $6)`, at.UTC(), w.Start.UTC(), w.End.UTC(), attempt+1, final, string(text)); err != nil {
		return fmt.Errorf("recording the failed batch attempt: %w", err)
	}
	return nil
}

// ReplaceEvidence deletes a batch's evidence and writes ev in its place, in
// tx (re-scoring a batch). ev nil only deletes.
func ReplaceEvidence(ctx context.Context, tx pgx.Tx, botLogID int64, ev *coordinator.BatchEvidence) error {
	for _, table := range []string{"batch_evidence", "batch_evidence_summary", "batch_error_classes"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE bot_log_id = $1`, botLogID); err != nil {
			return fmt.Errorf("deleting the evidence of bot_logs %d from %s: %w", botLogID, table, err)
		}
	}
	if ev == nil {
		return nil
	}
	_, _, err := writeEvidence(ctx, tx, nil, 0, botLogID, ev)
	return err
}
