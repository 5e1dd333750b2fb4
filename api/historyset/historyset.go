// Package historyset keeps in memory every producer's score_history row at
// a few batches (the points of the producer page's score chart), so that
// the chart is drawn without reading score_history: on a database with
// months of batches each of those reads is an index probe on a different
// page of a table larger than memory.
//
// A Set is immutable: Update returns a new Set holding the batches asked
// for, reading only those the previous one lacks (a batch's rows are
// contiguous in score_history's score_at index), so readers never wait for
// a writer.
package historyset

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/api/pointset"
)

// Set is score_history at some batches: for each batch, the row of each
// producer scored at its end (score_at = the batch's end).
type Set struct {
	cols []*column // by (End, ID)
}

type column struct {
	batch pointset.Batch
	nodes []int32 // node ids with a row, ascending (nodes.id is an int4)
	score []int32 // coalesce(score, 0)
	pct   []int32 // score_percent in hundredths; -1 for NULL
}

// Point is one score_history row.
type Point struct {
	At           time.Time // score_at (the batch's end)
	Score        int
	ScorePercent *float64
}

// Update returns a set of the batches asked for, as of tx's snapshot: those
// prev holds are kept (a batch's score_history rows are written with it and
// change only when a rescore rewrites the batch, after which the caller
// loads anew: prev nil), the others are read, all of them in one query.
func Update(ctx context.Context, tx pgx.Tx, prev *Set, want []pointset.Batch) (*Set, error) {
	held := map[int64]*column{}
	if prev != nil {
		for _, c := range prev.cols {
			held[c.batch.ID] = c
		}
	}
	next := &Set{cols: make([]*column, 0, len(want))}
	byEnd := map[int64]*column{}
	fresh := map[*column]bool{} // the columns read now (the others are shared: never modified)
	var ats []time.Time
	for _, b := range want {
		if c, ok := held[b.ID]; ok && c.batch == b {
			next.cols = append(next.cols, c)
			continue
		}
		c := &column{batch: b}
		fresh[c] = true
		next.cols = append(next.cols, c)
		if _, dup := byEnd[b.End]; !dup {
			byEnd[b.End] = c
			ats = append(ats, time.Unix(b.End, 0).UTC())
		}
	}
	slices.SortFunc(next.cols, func(a, b *column) int {
		if c := cmp.Compare(a.batch.End, b.batch.End); c != 0 {
			return c
		}
		return cmp.Compare(a.batch.ID, b.batch.ID)
	})
	if len(ats) == 0 {
		return next, nil
	}
	rows, err := tx.Query(ctx, `SELECT score_at, array_agg(node_id ORDER BY node_id), array_agg(coalesce(score, 0) ORDER BY node_id),
			array_agg(coalesce((score_percent * 100)::int4, -1) ORDER BY node_id)
		FROM score_history WHERE score_at = ANY($1::timestamp[]) AND node_id IS NOT NULL GROUP BY score_at`, ats)
	if err != nil {
		return nil, fmt.Errorf("reading score_history: %w", err)
	}
	var at time.Time
	var nodes []int32
	var score, pct []int32
	_, err = pgx.ForEachRow(rows, []any{&at, &nodes, &score, &pct}, func() error {
		c := byEnd[at.Unix()]
		if c == nil {
			return fmt.Errorf("score_history row at %s, which was not asked for", at)
		}
		c.nodes, c.score, c.pct = slices.Clone(nodes), slices.Clone(score), slices.Clone(pct)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading score_history: %w", err)
	}
	// Batches that end at the same time share score_history's rows; a
	// batch's producers are mostly the previous one's: share the list.
	for i, c := range next.cols {
		if !fresh[c] {
			continue
		}
		if first := byEnd[c.batch.End]; first != nil && first != c && c.nodes == nil {
			c.nodes, c.score, c.pct = first.nodes, first.score, first.pct
		}
		if i > 0 && !sameSlice(c.nodes, next.cols[i-1].nodes) && slices.Equal(c.nodes, next.cols[i-1].nodes) {
			c.nodes = next.cols[i-1].nodes
		}
	}
	return next, nil
}

// Points returns node's rows at the set's batches ending in [from, to],
// oldest first (batches where it has none are left out).
func (s *Set) Points(node int64, from, to time.Time) []Point {
	var out []Point
	for _, c := range s.cols {
		if c.batch.End < from.Unix() || c.batch.End > to.Unix() {
			continue
		}
		if node > math.MaxInt32 {
			return nil
		}
		i, ok := slices.BinarySearch(c.nodes, int32(node))
		if !ok {
			continue
		}
		p := Point{At: time.Unix(c.batch.End, 0).UTC(), Score: int(c.score[i])}
		if c.pct[i] >= 0 {
			v := float64(c.pct[i]) / 100
			p.ScorePercent = &v
		}
		if len(out) > 0 && out[len(out)-1].At.Equal(p.At) {
			continue // two batches ending together: one score_history row
		}
		out = append(out, p)
	}
	return out
}

func sameSlice(a, b []int32) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// Batches is the number of batches held.
func (s *Set) Batches() int { return len(s.cols) }

// Bytes is the memory the rows take, roughly.
func (s *Set) Bytes() int {
	n := 0
	for i, c := range s.cols {
		n += 8 * len(c.score)
		if i == 0 || !sameSlice(c.nodes, s.cols[i-1].nodes) {
			n += 4 * len(c.nodes)
		}
	}
	return n
}
