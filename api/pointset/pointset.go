// Package pointset keeps in memory which producers earned a point in which
// batch (the points_summary table), as one bitmap of batches per producer, so
// that the read API counts a producer's points over any window, or every
// producer's, without a per-producer index on points_summary: such an index
// costs the batch write about 16% at 10,000 producers, since each batch adds
// an entry for every producer, each in a different leaf page.
//
// A Set is immutable: Load reads it whole (one sequential scan of
// points_summary), Extend returns a new Set with the batches committed since
// (an index probe per new batch), so readers never wait for a writer.
package pointset

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Batch is a scored batch (a bot_logs row with files_processed > -1): its id
// and window, in Unix seconds.
type Batch struct {
	ID         int64
	Start, End int64
}

// Set is the batches and each producer's batches with a point, as of one
// database snapshot. Batches are numbered by their position (ordinal) in
// the order of (End, ID).
type Set struct {
	latest  Latest
	maxID   int64       // the highest bot_logs id read
	fp      fingerprint // of the scored batches
	batches []Batch
	ordinal map[int64]int32 // bot_log_id → ordinal
	slot    map[int64]int32 // node id → slot
	stride  int             // words per slot
	words   []uint64        // slot*stride + ordinal/64, bit ordinal%64
	rows    int             // points added
	// lineage is shared by a set and the sets Extend makes from it: their
	// ordinals and slots agree.
	lineage *byte
}

// Latest is the newest bot_logs row (by end, then id, whether scored or
// not); zero when there is none.
type Latest struct{ ID, End int64 }

// Latest returns the newest bot_logs row of the set's snapshot.
func (s *Set) Latest() Latest { return s.latest }

// Covers reports whether the set's snapshot includes the bot_logs row l
// (the set is as of l or a later batch).
func (s *Set) Covers(l Latest) bool {
	return s.latest.End > l.End || (s.latest.End == l.End && s.latest.ID >= l.ID)
}

// Batches returns the scored batches, by (End, ID). The slice is shared:
// do not modify it.
func (s *Set) Batches() []Batch { return s.batches }

// Producers is the number of producers with at least one point.
func (s *Set) Producers() int { return len(s.slot) }

// Bytes is the memory the bitmaps and maps take, roughly.
func (s *Set) Bytes() int {
	return 8*len(s.words) + 24*len(s.batches) + 40*(len(s.ordinal)+len(s.slot))
}

// Rows is the number of points (points_summary rows) in the set.
func (s *Set) Rows() int { return s.rows }

// Has reports whether the set includes batch id.
func (s *Set) Has(id int64) bool {
	_, ok := s.ordinal[id]
	return ok
}

// Mask is a set of batches (a window).
type Mask struct {
	words  []uint64
	lo, hi int // the words that may be non-zero: [lo, hi)
	n      int
}

// Surveys is the number of batches in the mask.
func (m Mask) Surveys() int { return m.n }

// Window returns the batches inside [from, to]: Start >= from and End <= to,
// the coordinator's surveys of a window.
func (s *Set) Window(from, to int64) Mask {
	m := Mask{words: make([]uint64, s.stride), lo: s.stride}
	for i, b := range s.batches {
		if b.Start >= from && b.End <= to {
			m.words[i/64] |= 1 << (i % 64)
			m.lo, m.hi = min(m.lo, i/64), max(m.hi, i/64+1)
			m.n++
		}
	}
	if m.n == 0 {
		m.lo = 0
	}
	return m
}

// Points counts node's batches with a point in the mask.
func (s *Set) Points(node int64, m Mask) int {
	slot, ok := s.slot[node]
	if !ok {
		return 0
	}
	return s.count(slot, m)
}

// Version names a set without holding on to it.
type Version struct {
	lineage *byte
	batches int
}

// Version returns the set's version.
func (s *Set) Version() Version { return Version{s.lineage, len(s.batches)} }

// Follows reports whether s is the set of version v or was extended from
// it (Extend): its batches keep their ordinals and its producers their
// slots in s, so that counts over its masks carry over (see Minus).
func (s *Set) Follows(v Version) bool {
	return v.lineage != nil && s.lineage == v.lineage && len(s.batches) >= v.batches
}

// Slots is the number of producer rows (slots 0 to Slots()-1).
func (s *Set) Slots() int { return len(s.slot) }

// Minus returns the batches in m that are not in o (masks of sets of one
// lineage): a window's count as of a later batch is the earlier count plus
// the count over new.Minus(old) minus the count over old.Minus(new), a few
// words instead of the whole window.
func (m Mask) Minus(o Mask) Mask {
	d := Mask{words: make([]uint64, len(m.words)), lo: len(m.words)}
	for w := m.lo; w < m.hi; w++ {
		x := m.words[w]
		if w < len(o.words) {
			x &^= o.words[w]
		}
		if x != 0 {
			d.words[w] = x
			d.lo, d.hi = min(d.lo, w), w+1
			d.n += bits.OnesCount64(x)
		}
	}
	if d.n == 0 {
		d.lo = 0
	}
	return d
}

// Slot returns node's row in the set (stable while the set is extended),
// for Count; ok false when the node has no point.
func (s *Set) Slot(node int64) (slot int32, ok bool) {
	slot, ok = s.slot[node]
	return slot, ok
}

// Count counts the batches with a point in the mask of the producer in row
// slot (from Slot).
func (s *Set) Count(slot int32, m Mask) int { return s.count(slot, m) }

func (s *Set) count(slot int32, m Mask) int {
	row := s.words[int(slot)*s.stride : int(slot+1)*s.stride]
	n := 0
	for w := m.lo; w < m.hi; w++ {
		n += bits.OnesCount64(row[w] & m.words[w])
	}
	return n
}

// EachPoints calls f with every producer that has a point in the mask and
// its number of points, in no particular order.
func (s *Set) EachPoints(m Mask, f func(node int64, points int)) {
	for node, slot := range s.slot {
		if n := s.count(slot, m); n > 0 {
			f(node, n)
		}
	}
}

// First returns node's first batch with a point (by End, ID).
func (s *Set) First(node int64) (Batch, bool) {
	slot, ok := s.slot[node]
	if !ok {
		return Batch{}, false
	}
	row := s.words[int(slot)*s.stride : int(slot+1)*s.stride]
	for w, x := range row {
		if x != 0 {
			return s.batches[w*64+bits.TrailingZeros64(x)], true
		}
	}
	return Batch{}, false
}

// Last returns node's latest batch with a point (by End, ID) among the
// batches ending at or before end.
func (s *Set) Last(node, end int64) (Batch, bool) {
	slot, ok := s.slot[node]
	if !ok {
		return Batch{}, false
	}
	n, _ := slices.BinarySearchFunc(s.batches, end+1, func(b Batch, end int64) int { return cmp.Compare(b.End, end) })
	if n == 0 {
		return Batch{}, false
	}
	row := s.words[int(slot)*s.stride : int(slot+1)*s.stride]
	last := n - 1 // the last ordinal to look at
	for w := last / 64; w >= 0; w-- {
		x := row[w]
		if w == last/64 {
			x &= ^uint64(0) >> (63 - last%64)
		}
		if x != 0 {
			return s.batches[w*64+63-bits.LeadingZeros64(x)], true
		}
	}
	return Batch{}, false
}

// Point reports whether node earned a point in batch id.
func (s *Set) Point(node, id int64) bool {
	slot, ok := s.slot[node]
	if !ok {
		return false
	}
	o, ok := s.ordinal[id]
	if !ok {
		return false
	}
	return s.words[int(slot)*s.stride+int(o)/64]&(1<<(o%64)) != 0
}

// New returns a set of batches (in any order) with no point yet, as of the
// bot_logs row latest.
func New(latest Latest, batches []Batch) *Set {
	s := &Set{latest: latest, batches: slices.Clone(batches), slot: map[int64]int32{}, lineage: new(byte)}
	slices.SortFunc(s.batches, compare)
	s.stride = strideFor(len(s.batches))
	s.index()
	return s
}

func compare(a, b Batch) int {
	if c := cmp.Compare(a.End, b.End); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// strideFor leaves room for a quarter more batches (a few days at 90 days
// of history) before the bitmaps must be laid out again.
func strideFor(batches int) int { return (batches+batches/4)/64 + 1 }

func (s *Set) index() {
	s.ordinal = make(map[int64]int32, len(s.batches))
	for i, b := range s.batches {
		s.ordinal[b.ID] = int32(i)
	}
}

// add records a point of node in batch id; points in batches outside the
// set are ignored (it reports false). Only while the set is built.
func (s *Set) add(id, node int64) bool {
	o, ok := s.ordinal[id]
	if !ok {
		return false
	}
	slot, ok := s.slot[node]
	if !ok {
		slot = int32(len(s.slot))
		s.slot[node] = slot
		s.words = append(s.words, make([]uint64, s.stride)...)
	}
	w := &s.words[int(slot)*s.stride+int(o)/64]
	if *w&(1<<(o%64)) == 0 {
		*w |= 1 << (o % 64)
		s.rows++
	}
	return true
}

// loadChunk is how many batches Load reads at a time.
const loadChunk = 256

// Load reads the scored batches and every points_summary row in tx (one
// snapshot: use a repeatable-read transaction).
func Load(ctx context.Context, tx pgx.Tx) (*Set, error) {
	latest, batches, maxID, err := readBatches(ctx, tx, 0)
	if err != nil {
		return nil, err
	}
	s := New(latest, batches)
	s.maxID = maxID
	if _, s.fp, err = fingerprints(ctx, tx, maxID); err != nil {
		return nil, err
	}
	// By ranges of batch ids, each read in the order of points_summary's
	// (bot_log_id, node_id) index and aggregated by the server: a row per
	// batch rather than one per point.
	ids := make([]int64, len(batches))
	for i, b := range batches {
		ids[i] = b.ID
	}
	slices.Sort(ids)
	for i := 0; i < len(ids); i += loadChunk {
		last := ids[min(i+loadChunk, len(ids))-1]
		if err := s.readPoints(ctx, tx, `SELECT bot_log_id, array_agg(node_id) FROM points_summary
			WHERE bot_log_id >= $1 AND bot_log_id <= $2 GROUP BY bot_log_id`, ids[i], last); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Extend returns the set as of tx's snapshot: a new set with the batches
// committed after s's and their points, or ok false when the batches
// changed otherwise (a batch removed, rewritten or inserted before the
// latest: load the set anew).
func (s *Set) Extend(ctx context.Context, tx pgx.Tx) (next *Set, ok bool, err error) {
	// The batches the set has are as they were (their fingerprint), and
	// the rows added since sort after them.
	old, all, err := fingerprints(ctx, tx, s.maxID)
	if err != nil || old != s.fp {
		return nil, false, err
	}
	latest, added, maxID, err := readBatches(ctx, tx, s.maxID)
	if err != nil {
		return nil, false, err
	}
	slices.SortFunc(added, compare)
	if len(added) > 0 && len(s.batches) > 0 && compare(added[0], s.batches[len(s.batches)-1]) <= 0 {
		return nil, false, nil
	}
	if s.Covers(latest) { // nothing newer
		latest = s.latest
	}
	if len(added) == 0 {
		next := *s
		next.latest, next.maxID, next.fp = latest, max(maxID, s.maxID), all
		return &next, true, nil
	}
	batches := append(slices.Clip(s.batches), added...)
	next = &Set{latest: latest, maxID: max(maxID, s.maxID), fp: all, batches: batches, slot: make(map[int64]int32, len(s.slot)),
		stride: s.stride, rows: s.rows, lineage: s.lineage}
	for node, slot := range s.slot {
		next.slot[node] = slot
	}
	if len(batches) > 64*s.stride {
		next.stride = strideFor(len(batches))
		next.words = make([]uint64, len(s.slot)*next.stride)
		for slot := range len(s.slot) {
			copy(next.words[slot*next.stride:], s.words[slot*s.stride:(slot+1)*s.stride])
		}
	} else {
		next.words = slices.Clone(s.words)
	}
	next.index()
	ids := make([]int64, len(added))
	for i, b := range added {
		ids[i] = b.ID
	}
	if err := next.readPoints(ctx, tx, `SELECT bot_log_id, array_agg(node_id) FROM points_summary
		WHERE bot_log_id = ANY($1) GROUP BY bot_log_id`, ids); err != nil {
		return nil, false, err
	}
	return next, true, nil
}

// readBatches reads the scored batches, the latest bot_logs row and the
// highest id among the bot_logs rows with an id above after.
func readBatches(ctx context.Context, tx pgx.Tx, after int64) (Latest, []Batch, int64, error) {
	rows, err := tx.Query(ctx, `SELECT id, coalesce(batch_start_epoch, 0), batch_end_epoch, coalesce(files_processed > -1, false)
		FROM bot_logs WHERE id > $1 AND batch_end_epoch IS NOT NULL`, after)
	if err != nil {
		return Latest{}, nil, 0, fmt.Errorf("reading the batches: %w", err)
	}
	var latest Latest
	var batches []Batch
	var b Batch
	var scored bool
	_, err = pgx.ForEachRow(rows, []any{&b.ID, &b.Start, &b.End, &scored}, func() error {
		if b.End > latest.End || (b.End == latest.End && b.ID > latest.ID) {
			latest = Latest{ID: b.ID, End: b.End}
		}
		if scored {
			batches = append(batches, b)
		}
		after = max(after, b.ID)
		return nil
	})
	if err != nil {
		return Latest{}, nil, 0, fmt.Errorf("reading the batches: %w", err)
	}
	return latest, batches, after, nil
}

// fingerprint sums a hash of each scored batch's id and window: a batch
// added, removed or changed changes it.
type fingerprint struct{ count, sum int64 }

// fingerprints returns the fingerprint of the scored batches with an id up
// to upTo, and of all of them.
func fingerprints(ctx context.Context, tx pgx.Tx, upTo int64) (old, all fingerprint, err error) {
	err = tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE id <= $1), coalesce(sum(h) FILTER (WHERE id <= $1), 0), count(*), coalesce(sum(h), 0)
		FROM (SELECT id, hashint8(id::int8 * 1000003 + coalesce(batch_start_epoch, 0))::int8 * 7 + hashint8(batch_end_epoch * 1009 + id::int8) AS h
			FROM bot_logs WHERE files_processed > -1 AND batch_end_epoch IS NOT NULL) b`, upTo).Scan(&old.count, &old.sum, &all.count, &all.sum)
	if err != nil {
		return old, all, fmt.Errorf("reading the batches' fingerprint: %w", err)
	}
	return old, all, nil
}

// readPoints adds the points of a query's rows: bot_log_id and the array of
// its node_ids.
func (s *Set) readPoints(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("reading points_summary: %w", err)
	}
	var id int64
	var nodes []int64
	_, err = pgx.ForEachRow(rows, []any{&id, &nodes}, func() error {
		for _, n := range nodes {
			s.add(id, n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading points_summary: %w", err)
	}
	return nil
}
