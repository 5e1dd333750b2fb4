package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

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
	looked, err := writeEvidenceRows(ctx, tx, cache, []int64{botLogID}, []*coordinator.BatchEvidence{ev})
	if err != nil {
		return nil, nil, err
	}
	return prev, looked, nil
}

// writeEvidenceRows records the evidence of many batches (evs[i] of batch
// ids[i]; nil entries are skipped) with one statement per table for all of
// them: the producer ids of keys not in cache, one COPY of the per-producer
// rows, one insert of the totals and one of the error classes. It returns
// the producer ids it looked up (see writeEvidence).
func writeEvidenceRows(ctx context.Context, tx pgx.Tx, cache *producerCache, ids []int64, evs []*coordinator.BatchEvidence) (map[string]int32, error) {
	if cache != nil {
		cache.mu.Lock()
		defer cache.mu.Unlock()
	}
	id, looked, err := evidenceProducerIDs(ctx, tx, cache, evs)
	if err != nil {
		return nil, err
	}
	var rows []evidenceRow
	for k, ev := range evs {
		if ev == nil {
			continue
		}
		for i := range ev.Producers {
			rows = append(rows, evidenceRow{batch: ids[k], p: &ev.Producers[i]})
		}
	}
	if err := copyEvidence(ctx, tx, rows, id); err != nil {
		return nil, err
	}
	if err := insertEvidenceTotals(ctx, tx, ids, evs); err != nil {
		return nil, err
	}
	return looked, nil
}

// evidenceRow is a batch_evidence row to write.
type evidenceRow struct {
	batch int64
	p     *coordinator.ProducerEvidence
}

// evidenceProducerIDs returns the evidence_producers id of every producer
// of evs, inserting the keys seen for the first time, and the ids it looked
// up (those not in cache, whose lock the caller holds).
func evidenceProducerIDs(ctx context.Context, tx pgx.Tx, cache *producerCache, evs []*coordinator.BatchEvidence) (func(string) int32, map[string]int32, error) {
	known := func(string) (int32, bool) { return 0, false }
	if cache != nil {
		known = func(k string) (int32, bool) { id, ok := cache.ids[k]; return id, ok }
	}
	var missing []string
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev == nil {
			continue
		}
		for _, p := range ev.Producers {
			if _, ok := known(p.Producer); !ok && !seen[p.Producer] {
				seen[p.Producer] = true
				missing = append(missing, p.Producer)
			}
		}
	}
	looked := map[string]int32{}
	if len(missing) > 0 {
		// New keys are inserted and all keys' ids returned by one statement
		// (the outer SELECT does not see the rows the CTE inserts, the CTE
		// returns them).
		m, err := idMap(ctx, tx, `WITH keys AS (SELECT unnest($1::text[]) AS k),
			ins AS (INSERT INTO evidence_producers (block_producer_key)
				SELECT k FROM keys WHERE NOT EXISTS (SELECT 1 FROM evidence_producers p WHERE p.block_producer_key = keys.k)
				ORDER BY k ON CONFLICT (block_producer_key) DO NOTHING RETURNING block_producer_key, id)
			SELECT block_producer_key, id FROM ins
			UNION ALL SELECT p.block_producer_key, p.id FROM evidence_producers p JOIN keys ON p.block_producer_key = keys.k`, missing)
		if err != nil {
			return nil, nil, fmt.Errorf("recording evidence producers: %w", err)
		}
		for k, id := range m {
			looked[k] = int32(id)
		}
	}
	return func(k string) int32 {
		if id, ok := known(k); ok {
			return id
		}
		return looked[k]
	}, looked, nil
}

// evidenceJSON returns batch_evidence's invalid_by_class and details of p
// (nil: NULL).
func evidenceJSON(p *coordinator.ProducerEvidence) (byClass, details any) {
	if p.InvalidByClass != nil {
		byClass = p.InvalidByClass
	}
	if p.Examples != nil || p.StateHashes != nil {
		details = EvidenceDetails{ErrorExamples: p.Examples, StateHashes: p.StateHashes}
	}
	return byClass, details
}

// copyEvidence COPYs rows into batch_evidence.
func copyEvidence(ctx context.Context, tx pgx.Tx, rows []evidenceRow, id func(string) int32) error {
	if len(rows) == 0 {
		return nil
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"batch_evidence"},
		[]string{"bot_log_id", "producer_id", "outcome", "submissions", "valid", "unverified", "invalid_by_class", "details"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			p := rows[i].p
			byClass, details := evidenceJSON(p)
			return []any{int32(rows[i].batch), id(p.Producer), p.Outcome, int32(p.Submissions), int32(p.Valid), int32(p.Unverified),
				byClass, details}, nil
		}))
	if err != nil {
		return fmt.Errorf("inserting batch_evidence: %w", err)
	}
	if int(n) != len(rows) {
		return fmt.Errorf("inserting batch_evidence: copied %d of %d rows", n, len(rows))
	}
	return nil
}

// insertEvidenceTotals inserts the batch_evidence_summary and
// batch_error_classes rows of evs (evs[i] of batch ids[i]; nil skipped).
func insertEvidenceTotals(ctx context.Context, tx pgx.Tx, ids []int64, evs []*coordinator.BatchEvidence) error {
	var sum [10][]int64
	var cls struct {
		batch           []int64
		class, example  []string
		subs, producers []int32
	}
	for k, ev := range evs {
		if ev == nil {
			continue
		}
		o := ev.ByOutcome
		for j, v := range []int{int(ids[k]), ev.Submissions, ev.Valid, ev.Unverified, ev.Invalid(), len(ev.Producers),
			o[coordinator.OutcomePoint], o[coordinator.OutcomeOffChain], o[coordinator.OutcomeInvalid], o[coordinator.OutcomeUnverified]} {
			sum[j] = append(sum[j], int64(v))
		}
		for _, c := range ev.Classes {
			cls.batch, cls.class, cls.example = append(cls.batch, ids[k]), append(cls.class, c.Class), append(cls.example, c.Example)
			cls.subs, cls.producers = append(cls.subs, int32(c.Submissions)), append(cls.producers, int32(c.Producers))
		}
	}
	if len(sum[0]) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO batch_evidence_summary (bot_log_id, submissions, valid, unverified, invalid, producers,
			point_producers, off_chain_producers, invalid_producers, unverified_producers)
			SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[])`,
			sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], sum[6], sum[7], sum[8], sum[9]); err != nil {
			return fmt.Errorf("inserting batch_evidence_summary: %w", err)
		}
	}
	if len(cls.batch) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO batch_error_classes (bot_log_id, class, submissions, producers, example)
			SELECT * FROM unnest($1::int8[], $2::text[], $3::int4[], $4::int4[], $5::text[])`,
			cls.batch, cls.class, cls.subs, cls.producers, cls.example); err != nil {
			return fmt.Errorf("inserting batch_error_classes: %w", err)
		}
	}
	return nil
}

// evidenceKey identifies a batch_evidence row.
type evidenceKey struct {
	batch    int64
	producer int32
}

// oldEvidence is a batch_evidence row as read (JSON as text; nil: NULL).
type oldEvidence struct {
	outcome                        string
	submissions, valid, unverified int32
	byClass, details               []byte
}

// readEvidence reads the batch_evidence rows of batches ids.
func readEvidence(ctx context.Context, q queryer, ids []int64) (map[evidenceKey]oldEvidence, error) {
	old := map[evidenceKey]oldEvidence{}
	rows, err := q.Query(ctx, `SELECT bot_log_id, producer_id, outcome::text, submissions, valid, unverified, invalid_by_class::text, details::text
		FROM batch_evidence WHERE bot_log_id = ANY($1::int8[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading batch_evidence: %w", err)
	}
	var k evidenceKey
	var o oldEvidence
	var byClass, details pgtype.DriverBytes
	if _, err := pgx.ForEachRow(rows, []any{&k.batch, &k.producer, &o.outcome, &o.submissions, &o.valid, &o.unverified, &byClass, &details}, func() error {
		o.byClass, o.details = bytes.Clone(byClass), bytes.Clone(details)
		old[k] = o
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading batch_evidence: %w", err)
	}
	return old, nil
}

// replaceEvidenceRows turns the evidence of batches ids, whose
// batch_evidence rows are old (nil: read them), into evs (evs[i] of batch
// ids[i]; nil: none) writing only what differs: the per-producer rows are
// compared (JSON by value, as jsonb compares) and only the changed, new and
// gone ones are deleted and COPYed; the totals and error classes (a few
// rows per batch) are replaced.
func replaceEvidenceRows(ctx context.Context, tx pgx.Tx, ids []int64, evs []*coordinator.BatchEvidence, old map[evidenceKey]oldEvidence) error {
	id, _, err := evidenceProducerIDs(ctx, tx, nil, evs)
	if err != nil {
		return err
	}
	if old == nil {
		if old, err = readEvidence(ctx, tx, ids); err != nil {
			return err
		}
	}
	var write []evidenceRow
	var delBatch []int64
	var delProducer []int32
	for b, ev := range evs {
		if ev == nil {
			continue
		}
		for i := range ev.Producers {
			p := &ev.Producers[i]
			k := evidenceKey{ids[b], id(p.Producer)}
			o, had := old[k]
			if had {
				delete(old, k)
				same, err := sameEvidence(p, o.outcome, o.submissions, o.valid, o.unverified, o.byClass, o.details)
				if err != nil {
					return err
				}
				if same {
					continue
				}
				delBatch, delProducer = append(delBatch, k.batch), append(delProducer, k.producer)
			}
			write = append(write, evidenceRow{batch: ids[b], p: p})
		}
	}
	for k := range old {
		delBatch, delProducer = append(delBatch, k.batch), append(delProducer, k.producer)
	}
	if len(delBatch) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM batch_evidence e USING unnest($1::int8[], $2::int4[]) AS d(b, p)
			WHERE e.bot_log_id = d.b AND e.producer_id = d.p`, delBatch, delProducer); err != nil {
			return fmt.Errorf("replacing batch_evidence rows: %w", err)
		}
	}
	if err := copyEvidence(ctx, tx, write, id); err != nil {
		return err
	}
	for _, table := range []string{"batch_evidence_summary", "batch_error_classes"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE bot_log_id = ANY($1::int8[])`, ids); err != nil {
			return fmt.Errorf("replacing the evidence in %s: %w", table, err)
		}
	}
	return insertEvidenceTotals(ctx, tx, ids, evs)
}

// sameEvidence reports whether a batch_evidence row holds p: the JSON
// columns are compared as values (decoded, numbers kept as written), as
// jsonb would compare them.
func sameEvidence(p *coordinator.ProducerEvidence, outcome string, submissions, valid, unverified int32, byClass, details []byte) (bool, error) {
	if outcome != p.Outcome || int(submissions) != p.Submissions || int(valid) != p.Valid || int(unverified) != p.Unverified {
		return false, nil
	}
	wantClass, wantDetails := evidenceJSON(p)
	for _, c := range []struct {
		have []byte
		want any
	}{{byClass, wantClass}, {details, wantDetails}} {
		if (c.have == nil) != (c.want == nil) {
			return false, nil
		}
		if c.have == nil {
			continue
		}
		w, err := json.Marshal(c.want)
		if err != nil {
			return false, fmt.Errorf("encoding evidence of %s: %w", p.Producer, err)
		}
		a, err := jsonValue(c.have)
		if err != nil {
			return false, err
		}
		b, err := jsonValue(w)
		if err != nil {
			return false, err
		}
		if !reflect.DeepEqual(a, b) {
			return false, nil
		}
	}
	return true, nil
}

func jsonValue(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding evidence JSON: %w", err)
	}
	return v, nil
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
// one transaction. ev nil only deletes.
func ReplaceEvidence(ctx context.Context, pool *pgxpool.Pool, botLogID int64, ev *coordinator.BatchEvidence) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
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
	})
}
