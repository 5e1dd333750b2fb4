package evidenceset_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/api/evidenceset"
	"github.com/delegation-program/uptime-coordinator/api/pointset"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func update(t *testing.T, pool *pgxpool.Pool, prev *evidenceset.Set, ids ...int64) *evidenceset.Set {
	t.Helper()
	var batches []pointset.Batch
	for _, id := range ids {
		batches = append(batches, pointset.Batch{ID: id, Start: id * 1200, End: (id + 1) * 1200})
	}
	var s *evidenceset.Set
	err := pgx.BeginTxFunc(context.Background(), pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		s, err = evidenceset.Update(context.Background(), tx, prev, batches)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// outcome is Outcome as one comparable string.
func outcome(s *evidenceset.Set, batch int64, producer int32, known bool) string {
	o, ok := s.Outcome(batch, producer, known)
	if !ok {
		return "?"
	}
	if o == "" {
		return "none"
	}
	return o
}

func TestOutcomes(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	// Batches 1 and 2 scored with evidence, 3 without (before evidence
	// existed); producer 7 submitted in 1 (off chain) and 2 (a point),
	// producer 8 only in 1 (invalid).
	if _, err := pool.Exec(ctx, `
		INSERT INTO batch_evidence_summary (bot_log_id, submissions, valid, unverified, invalid, producers, point_producers,
			off_chain_producers, invalid_producers, unverified_producers) VALUES (1, 3, 2, 0, 1, 2, 0, 1, 1, 0), (2, 1, 1, 0, 0, 1, 1, 0, 0, 0);
		INSERT INTO batch_evidence (bot_log_id, producer_id, outcome, submissions, valid, unverified) VALUES
			(1, 7, 'off_chain', 2, 2, 0), (1, 8, 'invalid', 1, 0, 0), (2, 7, 'point', 1, 1, 0);
		INSERT INTO batch_evidence (bot_log_id, producer_id, outcome, submissions, valid, unverified) VALUES (3, 7, 'unverified', 1, 0, 1)`); err != nil {
		t.Fatal(err)
	}
	s := update(t, pool, nil, 1, 3)
	for _, c := range []struct {
		batch    int64
		producer int32
		known    bool
		want     string
	}{
		{1, 7, true, "off_chain"}, {1, 8, true, "invalid"}, {1, 9, true, "none"}, {1, 0, false, "none"},
		{3, 7, true, "?"}, // scored without evidence: the rows say nothing
		{2, 7, true, "?"}, // not held
	} {
		if got := outcome(s, c.batch, c.producer, c.known); got != c.want {
			t.Errorf("batch %d producer %d: %s, want %s", c.batch, c.producer, got, c.want)
		}
	}
	// The next set keeps batch 1 without reading it again (its rows are
	// gone from the table and it still answers), reads batch 2 and drops 3.
	if _, err := pool.Exec(ctx, `DELETE FROM batch_evidence WHERE bot_log_id = 1`); err != nil {
		t.Fatal(err)
	}
	next := update(t, pool, s, 1, 2)
	for _, c := range []struct {
		batch    int64
		producer int32
		want     string
	}{{1, 7, "off_chain"}, {1, 8, "invalid"}, {2, 7, "point"}, {2, 8, "none"}, {3, 7, "?"}} {
		if got := outcome(next, c.batch, c.producer, true); got != c.want {
			t.Errorf("next: batch %d producer %d: %s, want %s", c.batch, c.producer, got, c.want)
		}
	}
	if next.Batches() != 2 || next.Rows() != 3 {
		t.Errorf("next holds %d batches, %d rows; want 2, 3", next.Batches(), next.Rows())
	}
}
