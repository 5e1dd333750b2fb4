package postgres

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// This file holds the range writer shared by the catch-up path (many new
// batches per transaction) and rescore (existing batches re-scored): each
// batch's rows are compared with what the database holds and only the
// difference is written, set-based, for many batches at once.

// keyIDs maps state hashes or producer keys to their ids. In a dry run,
// keys not in the database get negative ids, distinct from every row.
type keyIDs struct {
	ids  map[string]int64
	keys map[int64]string
	fake int64
}

func newKeyIDs() *keyIDs { return &keyIDs{ids: map[string]int64{}, keys: map[int64]string{}} }

func (k *keyIDs) set(key string, id int64) { k.ids[key], k.keys[id] = id, key }

func (k *keyIDs) missing(keys []string) []string {
	var out []string
	for _, v := range keys {
		if _, ok := k.ids[v]; !ok {
			out = append(out, v)
		}
	}
	return out
}

func (k *keyIDs) invent(keys []string) {
	for _, v := range keys {
		if _, ok := k.ids[v]; !ok {
			k.fake--
			k.set(v, k.fake)
		}
	}
}

// loadHashes reads the ids of the given state hashes (those that exist).
func (k *keyIDs) loadHashes(ctx context.Context, tx pgx.Tx, hashes []string) error {
	rows, err := tx.Query(ctx, `SELECT value, id FROM statehash WHERE value = ANY($1::text[])`, k.missing(hashes))
	if err != nil {
		return fmt.Errorf("reading state hash ids: %w", err)
	}
	defer rows.Close()
	var v string
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&v, &id}, func() error { k.set(v, id); return nil })
	if err != nil {
		return fmt.Errorf("reading state hash ids: %w", err)
	}
	return nil
}

// ensureHashes inserts the missing state hashes and reads their ids.
func (k *keyIDs) ensureHashes(ctx context.Context, tx pgx.Tx, hashes []string) error {
	if err := k.loadHashes(ctx, tx, hashes); err != nil {
		return err
	}
	missing := k.missing(hashes)
	if len(missing) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO statehash (value) SELECT v FROM unnest($1::text[]) AS u(v) ORDER BY v
		ON CONFLICT (value) DO NOTHING`, missing); err != nil {
		return fmt.Errorf("inserting state hashes: %w", err)
	}
	if err := k.loadHashes(ctx, tx, missing); err != nil {
		return err
	}
	if m := k.missing(missing); len(m) > 0 {
		return fmt.Errorf("inserting state hashes: %d not found after insert", len(m))
	}
	return nil
}

// loadNodes reads every node's id (a database the original wrote may hold a
// key twice: its first row is used, as the batch path does).
func (k *keyIDs) loadNodes(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT DISTINCT ON (block_producer_key) block_producer_key, id FROM nodes
		WHERE block_producer_key IS NOT NULL ORDER BY block_producer_key, id`)
	if err != nil {
		return fmt.Errorf("reading nodes: %w", err)
	}
	defer rows.Close()
	var v string
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&v, &id}, func() error { k.set(v, id); return nil })
	if err != nil {
		return fmt.Errorf("reading nodes: %w", err)
	}
	return nil
}

// ensureNodes inserts the missing producers and returns how many.
func (k *keyIDs) ensureNodes(ctx context.Context, tx pgx.Tx, producers []string, now time.Time) (int64, error) {
	missing := k.missing(producers)
	if len(missing) == 0 {
		return 0, nil
	}
	slices.Sort(missing)
	rows, err := tx.Query(ctx, `INSERT INTO nodes (block_producer_key, updated_at)
		SELECT k, $2 FROM unnest($1::text[]) AS u(k) ORDER BY k RETURNING block_producer_key, id`, missing, now)
	if err != nil {
		return 0, fmt.Errorf("inserting nodes: %w", err)
	}
	defer rows.Close()
	var v string
	var id int64
	if _, err = pgx.ForEachRow(rows, []any{&v, &id}, func() error { k.set(v, id); return nil }); err != nil {
		return 0, fmt.Errorf("inserting nodes: %w", err)
	}
	return int64(len(missing)), nil
}

// pointRow is a points row without its id and created_at.
type pointRow struct {
	Node, Hash int64
	File       string
	At         int64 // file_timestamps, unix microseconds
	Epoch      int64 // blockchain_epoch, -1 NULL
	Height     int64 // blockchain_height, -1 NULL
	Amount     int32
}

// shortRow is a bot_logs_statehash row without its id.
type shortRow struct {
	Hash, Parent int64 // Parent 0: NULL
	Weight       int32
}

// batchRows is what one batch writes, in ids.
type batchRows struct {
	ID      int64
	Files   int
	FileTS  int64 // unix microseconds
	Points  []pointRow
	subs    []*coordinator.Submission // the points' submissions, same order
	Short   []shortRow
	Summary []int64 // node ids with a point, sorted
}

func toRows(rec *coordinator.Record, hashes, nodes *keyIDs) batchRows {
	r := rec.Result
	b := batchRows{Files: rec.FilesProcessed(), FileTS: rec.FileTimestamp().UnixMicro()}
	seen := map[int64]bool{}
	for _, p := range r.Points {
		s := p.Submission
		row := pointRow{Node: nodes.ids[s.Submitter], Hash: hashes.ids[p.StateHash], File: p.FileName,
			At: s.SubmittedAt.UnixMicro(), Epoch: -1, Height: -1, Amount: 1}
		if e := coordinator.BlockchainEpoch(s); e != nil {
			row.Epoch = *e
		}
		if s.Height != nil {
			row.Height = *s.Height
		}
		b.Points = append(b.Points, row)
		b.subs = append(b.subs, s)
		if !seen[row.Node] {
			seen[row.Node] = true
			b.Summary = append(b.Summary, row.Node)
		}
	}
	slices.Sort(b.Summary)
	for _, h := range r.Shortlist {
		row := shortRow{Hash: hashes.ids[h.StateHash], Weight: int32(h.Weight)}
		if h.Parent != "" {
			if id, ok := hashes.ids[h.Parent]; ok {
				row.Parent = id
			}
		}
		b.Short = append(b.Short, row)
	}
	sortShort(b.Short)
	return b
}

func sortShort(s []shortRow) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Hash != s[j].Hash {
			return s[i].Hash < s[j].Hash
		}
		if s[i].Parent != s[j].Parent {
			return s[i].Parent < s[j].Parent
		}
		return s[i].Weight < s[j].Weight
	})
}

// existingRows is what the database holds for a set of batches.
type existingRows struct {
	points  map[int64][]oldPoint // batch -> its points rows, as read
	files   []byte               // the file_name of every oldPoint, one after the other
	summary map[int64][]int64    // batch -> node ids, sorted
	short   map[int64][]shortRow
	fileCnt map[int64]int
	fileTS  map[int64]int64
}

// oldPoint is a points row as read: its file_name is files[file[0]:file[1]]
// of the existingRows it belongs to (no string per row: a rescore reads
// millions).
type oldPoint struct {
	pointRow // File unset
	id       int64
	tid      pgtype.TID // where the row is: deletes go straight to it
	file     [2]int32
}

// fileName returns p's file_name.
func (ex *existingRows) fileName(p *oldPoint) []byte { return ex.files[p.file[0]:p.file[1]] }

func readExisting(ctx context.Context, tx queryer, ids []int64) (*existingRows, error) {
	ex := &existingRows{points: map[int64][]oldPoint{}, summary: map[int64][]int64{}, short: map[int64][]shortRow{},
		fileCnt: map[int64]int{}, fileTS: map[int64]int64{}}
	// file_timestamps is read as it is stored (binary microseconds):
	// converting it in SQL (extract(epoch ...)) costs numeric arithmetic
	// per row.
	rows, err := tx.Query(ctx, `SELECT id, ctid, bot_log_id, coalesce(node_id, 0), coalesce(statehash_id, 0), file_name, file_timestamps,
		coalesce(blockchain_epoch, -1), coalesce(blockchain_height, -1), coalesce(amount, 0) FROM points WHERE bot_log_id = ANY($1::int8[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading points: %w", err)
	}
	var b int64
	var p oldPoint
	var file pgtype.DriverBytes
	var ts pgtype.Timestamptz
	if _, err := pgx.ForEachRow(rows, []any{&p.id, &p.tid, &b, &p.Node, &p.Hash, &file, &ts, &p.Epoch, &p.Height, &p.Amount}, func() error {
		switch {
		case !ts.Valid:
			p.At = -1
		case ts.InfinityModifier != pgtype.Finite:
			p.At = math.MinInt64 // no new row has it: the row is replaced
		default:
			p.At = ts.Time.UnixMicro()
		}
		if len(ex.files)+len(file) > math.MaxInt32 {
			return fmt.Errorf("more than 2 GB of file names in one read")
		}
		p.file = [2]int32{int32(len(ex.files)), int32(len(ex.files) + len(file))}
		ex.files = append(ex.files, file...)
		ex.points[b] = append(ex.points[b], p)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading points: %w", err)
	}
	if ex.summary, err = readSummaries(ctx, tx, ids); err != nil {
		return nil, err
	}
	for _, v := range ex.summary {
		slices.Sort(v)
	}
	rows, err = tx.Query(ctx, `SELECT bot_log_id, coalesce(statehash_id, 0), coalesce(parent_statehash_id, 0), weight
		FROM bot_logs_statehash WHERE bot_log_id = ANY($1::int8[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading bot_logs_statehash: %w", err)
	}
	var s shortRow
	if _, err := pgx.ForEachRow(rows, []any{&b, &s.Hash, &s.Parent, &s.Weight}, func() error {
		ex.short[b] = append(ex.short[b], s)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading bot_logs_statehash: %w", err)
	}
	for _, v := range ex.short {
		sortShort(v)
	}
	rows, err = tx.Query(ctx, `SELECT id, coalesce(files_processed, -1), coalesce((extract(epoch FROM file_timestamps) * 1000000)::int8, -1)
		FROM bot_logs WHERE id = ANY($1::int8[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading bot_logs: %w", err)
	}
	var files int
	var fts int64
	if _, err := pgx.ForEachRow(rows, []any{&b, &files, &fts}, func() error {
		ex.fileCnt[b], ex.fileTS[b] = files, fts
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading bot_logs: %w", err)
	}
	return ex, nil
}

// rangeDiff is the set of writes that turn the existing rows into the new.
type rangeDiff struct {
	delPoints   []int64 // ids of the points rows to delete
	delTIDs     []pgtype.TID
	insPoints   []pointRow
	insBatch    []int64 // bot_log_id of each inserted point
	insSubs     []*coordinator.Submission
	delSummary  [][2]int64 // (bot_log_id, node_id)
	insSummary  [][2]int64
	shortBatch  []int64 // batches whose shortlist is replaced
	insShort    []shortRow
	insShortFor []int64
	updBatch    []int64 // bot_logs rows whose files_processed / file_timestamps change
	updFiles    []int32
	updTS       []time.Time

	// scratch space of diffBatch, reused from batch to batch
	byKey map[[2]int64]int32 // (node, file_timestamps) -> last old row with it
	next  []int32            // old row -> previous old row with the same key, -1 none
	used  []bool
}

func (d *rangeDiff) empty() bool {
	return len(d.delPoints)+len(d.insPoints)+len(d.delSummary)+len(d.insSummary)+len(d.shortBatch)+len(d.updBatch) == 0
}

// diffBatch adds to d what turns ex's rows of batch id into nb.
func (d *rangeDiff) diffBatch(id int64, nb batchRows, ex *existingRows) {
	old := ex.points[id]
	// The old rows by (node, file_timestamps), which a submission's point
	// has one of; a new row keeps an equal old row (every column).
	if d.byKey == nil {
		d.byKey = map[[2]int64]int32{}
	}
	clear(d.byKey)
	d.next, d.used = d.next[:0], d.used[:0]
	for i := range old {
		k := [2]int64{old[i].Node, old[i].At}
		j, ok := d.byKey[k]
		if !ok {
			j = -1
		}
		d.next, d.used = append(d.next, j), append(d.used, false)
		d.byKey[k] = int32(i)
	}
	for i, p := range nb.Points {
		j, ok := d.byKey[[2]int64{p.Node, p.At}]
		for ok && j >= 0 {
			o := &old[j]
			if !d.used[j] && o.Hash == p.Hash && o.Epoch == p.Epoch && o.Height == p.Height && o.Amount == p.Amount &&
				string(ex.fileName(o)) == p.File {
				d.used[j] = true
				break
			}
			j = d.next[j]
		}
		if ok && j >= 0 {
			continue
		}
		d.insPoints, d.insBatch, d.insSubs = append(d.insPoints, p), append(d.insBatch, id), append(d.insSubs, nb.subs[i])
	}
	for j := range old {
		if !d.used[j] {
			d.delPoints, d.delTIDs = append(d.delPoints, old[j].id), append(d.delTIDs, old[j].tid)
		}
	}
	was := ex.summary[id]
	for _, n := range nb.Summary {
		if _, found := slices.BinarySearch(was, n); !found {
			d.insSummary = append(d.insSummary, [2]int64{id, n})
		}
	}
	for _, n := range was {
		if _, found := slices.BinarySearch(nb.Summary, n); !found {
			d.delSummary = append(d.delSummary, [2]int64{id, n})
		}
	}
	if !slices.Equal(ex.short[id], nb.Short) {
		d.shortBatch = append(d.shortBatch, id)
		for _, s := range nb.Short {
			d.insShort, d.insShortFor = append(d.insShort, s), append(d.insShortFor, id)
		}
	}
	if f, ok := ex.fileCnt[id]; !ok || f != nb.Files || ex.fileTS[id] != nb.FileTS {
		d.updBatch, d.updFiles, d.updTS = append(d.updBatch, id), append(d.updFiles, int32(nb.Files)), append(d.updTS, time.UnixMicro(nb.FileTS).UTC())
	}
}

// apply writes d. With bulk, points are COPYed in replica mode after the
// referenced rows are locked FOR KEY SHARE (see CanBulkWritePoints), and
// the new points_summary rows COPYed (replica mode skips the trigger);
// without bulk they are inserted explicitly too (the trigger has inserted
// the same rows and the explicit insert then adds nothing).
func (d *rangeDiff) apply(ctx context.Context, tx pgx.Tx, now time.Time, bulk bool, cp coordinator.Checkpoint) error {
	if len(d.updBatch) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE bot_logs b SET files_processed = u.f, file_timestamps = u.ts
			FROM unnest($1::int8[], $2::int4[], $3::timestamptz[]) AS u(id, f, ts) WHERE b.id = u.id`, d.updBatch, d.updFiles, d.updTS); err != nil {
			return fmt.Errorf("updating bot_logs: %w", err)
		}
	}
	if len(d.shortBatch) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM bot_logs_statehash WHERE bot_log_id = ANY($1::int8[])`, d.shortBatch); err != nil {
			return fmt.Errorf("replacing bot_logs_statehash: %w", err)
		}
		hashes, parents, weights := make([]int64, len(d.insShort)), make([]*int64, len(d.insShort)), make([]int32, len(d.insShort))
		for i, s := range d.insShort {
			hashes[i], weights[i] = s.Hash, s.Weight
			if s.Parent != 0 {
				p := s.Parent
				parents[i] = &p
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO bot_logs_statehash (parent_statehash_id, statehash_id, weight, bot_log_id)
			SELECT * FROM unnest($1::int8[], $2::int8[], $3::int4[], $4::int8[])`, parents, hashes, weights, d.insShortFor); err != nil {
			return fmt.Errorf("inserting bot_logs_statehash: %w", err)
		}
	}
	cp.Reach(ctx, "tx_shortlist")
	if len(d.delPoints) > 0 {
		// Straight to each row (a TID scan), checked by its id: no index
		// lookup per row.
		tag, err := tx.Exec(ctx, `DELETE FROM points p USING unnest($1::tid[], $2::int8[]) AS u(t, id)
			WHERE p.ctid = u.t AND p.id = u.id`, d.delTIDs, d.delPoints)
		if err != nil {
			return fmt.Errorf("deleting points: %w", err)
		}
		if n := tag.RowsAffected(); n != int64(len(d.delPoints)) {
			return fmt.Errorf("deleting points: %d of %d rows found where they were read (points changed during the rescore?)", n, len(d.delPoints))
		}
	}
	if len(d.delSummary) > 0 {
		b, n := pairs(d.delSummary)
		if _, err := tx.Exec(ctx, `DELETE FROM points_summary ps USING unnest($1::int8[], $2::int8[]) AS u(b, n)
			WHERE ps.bot_log_id = u.b AND ps.node_id = u.n`, b, n); err != nil {
			return fmt.Errorf("deleting points_summary: %w", err)
		}
	}
	if len(d.insPoints) > 0 {
		if bulk {
			if err := lockReferenced(ctx, tx, d.insPoints, d.insBatch); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
				return fmt.Errorf("entering the bulk points path: %w", err)
			}
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"points"},
			[]string{"file_name", "file_timestamps", "blockchain_epoch", "blockchain_height", "amount", "created_at", "node_id", "bot_log_id", "statehash_id"},
			pgx.CopyFromSlice(len(d.insPoints), func(i int) ([]any, error) {
				p, s := d.insPoints[i], d.insSubs[i]
				return []any{p.File, s.SubmittedAt.UTC(), coordinator.BlockchainEpoch(s), s.Height, p.Amount, now, p.Node, d.insBatch[i], p.Hash}, nil
			}))
		if err != nil {
			return fmt.Errorf("inserting points: %w", err)
		}
		if int(n) != len(d.insPoints) {
			return fmt.Errorf("inserting points: copied %d of %d rows", n, len(d.insPoints))
		}
	}
	switch {
	case len(d.insSummary) == 0:
	case bulk:
		// Replica mode: the trigger did not run, and the rows are new
		// (those the batches already had were left out by diffBatch).
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"points_summary"}, []string{"bot_log_id", "node_id"},
			pgx.CopyFromSlice(len(d.insSummary), func(i int) ([]any, error) {
				return []any{int32(d.insSummary[i][0]), int32(d.insSummary[i][1])}, nil
			}))
		if err != nil {
			return fmt.Errorf("inserting points_summary: %w", err)
		}
		if int(n) != len(d.insSummary) {
			return fmt.Errorf("inserting points_summary: copied %d of %d rows", n, len(d.insSummary))
		}
	default:
		b, n := pairs(d.insSummary)
		if _, err := tx.Exec(ctx, `INSERT INTO points_summary (bot_log_id, node_id)
			SELECT * FROM unnest($1::int8[], $2::int8[]) ON CONFLICT (bot_log_id, node_id) DO NOTHING`, b, n); err != nil {
			return fmt.Errorf("inserting points_summary: %w", err)
		}
	}
	if bulk && len(d.insPoints) > 0 {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = origin`); err != nil {
			return fmt.Errorf("leaving the bulk path: %w", err)
		}
	}
	cp.Reach(ctx, "tx_points")
	return nil
}

// lockReferenced locks the rows the new points reference FOR KEY SHARE, in
// one statement per table: what the foreign-key checks replica mode skips
// would have locked.
func lockReferenced(ctx context.Context, tx pgx.Tx, points []pointRow, batches []int64) error {
	nodes, hashes := map[int64]bool{}, map[int64]bool{}
	for _, p := range points {
		nodes[p.Node], hashes[p.Hash] = true, true
	}
	bs := map[int64]bool{}
	for _, b := range batches {
		bs[b] = true
	}
	for _, l := range []struct {
		table string
		ids   map[int64]bool
	}{{"nodes", nodes}, {"statehash", hashes}, {"bot_logs", bs}} {
		ids := make([]int64, 0, len(l.ids))
		for id := range l.ids {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		if _, err := tx.Exec(ctx, `SELECT FROM `+l.table+` WHERE id = ANY($1::int8[]) FOR KEY SHARE`, ids); err != nil {
			return fmt.Errorf("locking %s: %w", l.table, err)
		}
	}
	return nil
}

func pairs(p [][2]int64) ([]int64, []int64) {
	a, b := make([]int64, len(p)), make([]int64, len(p))
	for i, v := range p {
		a[i], b[i] = v[0], v[1]
	}
	return a, b
}

// writeEvidenceRange writes the evidence of many new batches (evs[i] of
// batch ids[i]; nil entries are skipped) with writeEvidenceRows.
func writeEvidenceRange(ctx context.Context, tx pgx.Tx, ids []int64, evs []*coordinator.BatchEvidence, cp coordinator.Checkpoint) error {
	if _, err := writeEvidenceRows(ctx, tx, nil, ids, evs); err != nil {
		return err
	}
	cp.Reach(ctx, "tx_evidence")
	return nil
}
