package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/api/evidenceset"
	"github.com/delegation-program/uptime-coordinator/api/historyset"
	"github.com/delegation-program/uptime-coordinator/api/pointset"
)

// The reader keeps every producer's batches with a point in memory (a
// pointset.Set): loaded whole on first use (one sequential scan of
// points_summary), extended by the batches committed since whenever a
// request or the batch stream sees a newer batch, and loaded anew when a
// rescore rewrites committed batches (Reload). Window scores, leaderboards
// and first/last point batches are computed from it; points_summary needs no
// per-producer index.

// model is what the reader keeps in memory, as of one database snapshot:
// the point set, the last day's evidence (the producer's missed batches)
// and score_history at the chart's batches. After a batch the points are
// extended first (what leaderboards need: modelOf), the evidence and
// history then (what producers need: followedModel), so that the first
// leaderboard request after a batch does not wait for reads it does not
// use.
type model struct {
	points *pointset.Set
	// evidence and history hold the point set's batches when followed;
	// else those of an earlier set (the base Update extends).
	evidence *evidenceset.Set
	history  *historyset.Set
	followed bool
	// chartStep: the chart's batches are every chartStep-th scored batch
	// (by position in the set: ordinal % chartStep == 0) of the
	// UptimeDays window, and the latest.
	chartStep int
}

// ChartPoints bounds the points of a producer's score chart when the
// reader chooses the chart's batches (Reader.ChartStep 0).
const ChartPoints = 180

// pointSet returns the point set as of the bot_logs row l or later.
func (r *Reader) pointSet(ctx context.Context, l Latest) (*pointset.Set, error) {
	m, err := r.modelOf(ctx, l)
	if err != nil {
		return nil, err
	}
	return m.points, nil
}

// modelOf returns the model as of the bot_logs row l or later.
func (r *Reader) modelOf(ctx context.Context, l Latest) (*model, error) {
	r.mu.Lock()
	m, gen := r.model, r.gen
	r.mu.Unlock()
	if m != nil && m.points.Covers(toPointset(l)) {
		return m, nil
	}
	v, err, _ := r.flight.Do("points", func() (any, error) {
		r.mu.Lock()
		m := r.model
		r.mu.Unlock()
		if m != nil && m.points.Covers(toPointset(l)) {
			return m, nil
		}
		var next *model
		err := r.read(ctx, func(tx pgx.Tx) error {
			if m != nil {
				s, ok, err := m.points.Extend(ctx, tx)
				if err != nil || ok {
					next = &model{points: s, evidence: m.evidence, history: m.history, chartStep: m.chartStep}
					return err
				}
				r.logger().Info("the committed batches changed; loading the points anew")
			}
			var err error
			next, err = r.load(ctx, tx)
			return err
		})
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.gen == gen { // no reload began meanwhile
			if cur := r.model; cur != nil && !next.followed && cur.chartStep == next.chartStep {
				// The evidence and history followed meanwhile, if they did.
				next.evidence, next.history = cur.evidence, cur.history
			}
			r.model = next
		}
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*model), nil
}

func (r *Reader) load(ctx context.Context, tx pgx.Tx) (*model, error) {
	began := time.Now()
	s, err := pointset.Load(ctx, tx)
	if err != nil {
		return nil, err
	}
	m := &model{points: s, chartStep: r.ChartStep}
	if m.chartStep <= 0 {
		n := len(r.chartWindow(s, 1))
		m.chartStep = max(1, (n+ChartPoints-2)/(ChartPoints-1)) // the window's grid and the latest fit in ChartPoints
	}
	if err := r.follow(ctx, tx, m, nil); err != nil {
		return nil, err
	}
	r.logger().Info("loaded the points", "batches", len(s.Batches()), "producers", s.Producers(), "points", s.Rows(),
		"mb", s.Bytes()>>20, "evidence_rows", m.evidence.Rows(), "history_batches", m.history.Batches(),
		"history_mb", m.history.Bytes()>>20, "took", time.Since(began).Round(time.Millisecond))
	return m, nil
}

// followedModel returns the model as of the bot_logs row l or later with
// its evidence and history following its points.
func (r *Reader) followedModel(ctx context.Context, l Latest) (*model, error) {
	m, err := r.modelOf(ctx, l)
	if err != nil || m.followed {
		return m, err
	}
	v, err, _ := r.flight.Do("follow", func() (any, error) {
		r.mu.Lock()
		cur, gen := r.model, r.gen
		r.mu.Unlock()
		if cur == nil || !cur.points.Covers(toPointset(l)) { // a reload is under way: m is its own
			cur = m
		}
		if cur.followed {
			return cur, nil
		}
		// The batches are the point set's (a batch's evidence and history
		// change only with a rescore, which loads everything anew).
		next := &model{points: cur.points, chartStep: cur.chartStep, followed: true}
		if err := r.read(ctx, func(tx pgx.Tx) error { return r.follow(ctx, tx, next, cur) }); err != nil {
			return nil, err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.gen == gen {
			if r.model == cur {
				r.model = next
			} else if !r.model.followed { // the points moved on: keep what was read as their base
				moved := *r.model
				moved.evidence, moved.history = next.evidence, next.history
				r.model = &moved
			}
		}
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*model), nil
}

// follow fills m's evidence and history for its point set's batches, from
// prev's where it has them, and marks it followed.
func (r *Reader) follow(ctx context.Context, tx pgx.Tx, m, prev *model) error {
	var prevEv *evidenceset.Set
	var prevHist *historyset.Set
	if prev != nil {
		prevEv, prevHist = prev.evidence, prev.history
	}
	var err error
	if m.evidence, err = evidenceset.Update(ctx, tx, prevEv, dayBatches(m.points)); err != nil {
		return err
	}
	if m.history, err = historyset.Update(ctx, tx, prevHist, r.chartWindow(m.points, m.chartStep)); err != nil {
		return err
	}
	m.followed = true
	return nil
}

// dayBatches are the scored batches that may be in the last day's window:
// those ending within a day of the latest bot_logs row.
func dayBatches(s *pointset.Set) []pointset.Batch {
	batches := s.Batches()
	from := s.Latest().End - day
	i, _ := slices.BinarySearchFunc(batches, from, func(b pointset.Batch, end int64) int { return cmp.Compare(b.End, end) })
	return batches[i:]
}

// chartWindow are the chart's batches: of the scored batches ending in the
// UptimeDays days up to the latest bot_logs row, every step-th by position
// in the set, and the latest.
func (r *Reader) chartWindow(s *pointset.Set, step int) []pointset.Batch {
	batches := s.Batches()
	from := s.Latest().End - int64(max(r.UptimeDays, 1))*day
	i, _ := slices.BinarySearchFunc(batches, from, func(b pointset.Batch, end int64) int { return cmp.Compare(b.End, end) })
	var out []pointset.Batch
	for o := i; o < len(batches); o++ {
		if o%step == 0 || o == len(batches)-1 {
			out = append(out, batches[o])
		}
	}
	return out
}

// Reload loads the point set anew (after a rescore changed committed
// batches) and forgets the leaderboards computed from the old one. Readers
// use the old set until the new one is ready.
func (r *Reader) Reload(ctx context.Context) error {
	r.mu.Lock()
	r.gen++
	gen := r.gen
	r.mu.Unlock()
	var m *model
	err := r.read(ctx, func(tx pgx.Tx) error {
		var err error
		m, err = r.load(ctx, tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("reloading the points: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == gen {
		r.model, r.snap, r.boards = m, nil, nil
	}
	return nil
}

// Loaded reports whether the point set has been loaded (serve is ready).
func (r *Reader) Loaded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.model != nil
}

func toPointset(l Latest) pointset.Latest {
	if l.ID == 0 {
		return pointset.Latest{}
	}
	return pointset.Latest{ID: l.ID, End: l.End.Unix()}
}

// snapshot is what the leaderboards of one batch are computed from: the
// nodes rows and the scoreboard state as of the batch, and the point set.
type snapshot struct {
	batch  Latest
	nodes  []nodeRow
	keys   map[int64]string // block_producer_key by nodes id (a key never changes)
	order  []int            // indexes of nodes by key, then id
	points *pointset.Set
	// rows: the nodes by key, then id, with their key and row in points
	// (-1: none), for the leaderboards' pass.
	rows []snapRow
	// byKey: by key, the index in nodes of its first row (by id) and the
	// number of rows holding it, for the producer's answer.
	byKey map[string]keyRef
	// The coordinator's window for which nodes.score is exact, if any.
	scoreboardEnd  int64
	scoreboardDays int
}

type keyRef struct{ index, count int }

type snapRow struct {
	key  string
	slot int32
	node *nodeRow
}

type nodeRow struct {
	id           int64
	score        *int32
	scorePercent *float64
	status       *bool
}

// snapshotOf returns the snapshot as of the bot_logs row l or later.
func (r *Reader) snapshotOf(ctx context.Context, l Latest) (*snapshot, error) {
	r.mu.Lock()
	s := r.snap
	r.mu.Unlock()
	if s != nil && !newer(l, s.batch) {
		return s, nil
	}
	v, err, _ := r.flight.Do("snapshot", func() (any, error) {
		set, err := r.pointSet(ctx, l)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		prev := r.snap
		r.mu.Unlock()
		s := &snapshot{}
		if prev != nil {
			s.keys = prev.keys
		}
		err = r.read(ctx, func(tx pgx.Tx) error {
			var err error
			if s.batch, err = latest(ctx, tx); err != nil {
				return err
			}
			err = tx.QueryRow(ctx, `SELECT window_end_epoch, uptime_days FROM coordinator_scoreboard`).Scan(&s.scoreboardEnd, &s.scoreboardDays)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("reading the scoreboard state: %w", err)
			}
			rows, err := tx.Query(ctx, `SELECT id, score, score_percent::float8, application_status FROM nodes ORDER BY id`)
			if err != nil {
				return fmt.Errorf("reading the producers: %w", err)
			}
			s.nodes, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (nodeRow, error) {
				var n nodeRow
				err := row.Scan(&n.id, &n.score, &n.scorePercent, &n.status)
				return n, err
			})
			if err != nil {
				return fmt.Errorf("reading the producers: %w", err)
			}
			// The keys of producers new since the previous snapshot.
			var unknown []int64
			for _, n := range s.nodes {
				if _, ok := s.keys[n.id]; !ok {
					unknown = append(unknown, n.id)
				}
			}
			if len(unknown) == 0 {
				return nil
			}
			keys := make(map[int64]string, len(s.nodes))
			for id, k := range s.keys {
				keys[id] = k
			}
			s.keys = keys
			rows, err = tx.Query(ctx, `SELECT id, coalesce(block_producer_key, '') FROM nodes WHERE id = ANY($1)`, unknown)
			if err != nil {
				return fmt.Errorf("reading the producers' keys: %w", err)
			}
			var id int64
			var key string
			_, err = pgx.ForEachRow(rows, []any{&id, &key}, func() error {
				keys[id] = key
				return nil
			})
			if err != nil {
				return fmt.Errorf("reading the producers' keys: %w", err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !set.Covers(toPointset(s.batch)) { // a batch landed in between
			if set, err = r.pointSet(ctx, s.batch); err != nil {
				return nil, err
			}
		}
		s.points = set
		s.order = nodeOrder(prev, s)
		s.byKey = make(map[string]keyRef, len(s.nodes))
		for i, n := range s.nodes { // by id
			key := s.keys[n.id]
			ref, held := s.byKey[key]
			if !held {
				ref.index = i
			}
			ref.count++
			s.byKey[key] = ref
		}
		s.rows = make([]snapRow, len(s.order))
		for i, o := range s.order {
			n := &s.nodes[o]
			slot, ok := set.Slot(n.id)
			if !ok {
				slot = -1
			}
			s.rows[i] = snapRow{key: s.keys[n.id], slot: slot, node: n}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.snap = s
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*snapshot), nil
}

// newer reports whether a is a later bot_logs row than b.
func newer(a, b Latest) bool {
	return a.End.After(b.End) || (a.End.Equal(b.End) && a.ID > b.ID)
}

// nodeOrder returns the indexes of s's nodes by key, then id: the previous
// snapshot's when the producers are the same.
func nodeOrder(prev, s *snapshot) []int {
	if prev != nil && len(prev.nodes) == len(s.nodes) && sameKeys(prev, s) {
		return prev.order
	}
	order := make([]int, len(s.nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := strings.Compare(s.keys[s.nodes[a].id], s.keys[s.nodes[b].id]); c != 0 {
			return c
		}
		return cmp.Compare(s.nodes[a].id, s.nodes[b].id)
	})
	return order
}

func sameKeys(prev, s *snapshot) bool {
	for i := range s.nodes {
		if prev.nodes[i].id != s.nodes[i].id {
			return false
		}
	}
	return true
}
