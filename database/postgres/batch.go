package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// batchLockKey serialises batch transactions on one database (an
// transaction-level advisory lock): two writers never interleave.
const batchLockKey = 0x7570_7469_6d65 // "uptime"

// Database is the coordinator's Postgres database as the engine and the
// bundled verifier see it: the coordinator.Ledger (bot_logs, points,
// scores) and, when the collector writes to Postgres, the
// coordinator.SubmissionSource and the verifier's submission store.
type Database struct {
	Pool *pgxpool.Pool
	// BulkPoints writes a batch's points with the fast path (see
	// CanBulkWritePoints). Set it from CanBulkWritePoints.
	BulkPoints bool
	// Steps run in the batch's transaction after its own steps (see
	// batchSteps): the alert rules and their outbox. An error rolls the
	// batch back.
	Steps []Step
	// Checkpoint, when set, is reached between the steps of the batch
	// transaction; fault-injection tests only.
	Checkpoint coordinator.Checkpoint
	// Logger, when set, gets a debug record with the time each step of the
	// batch transaction took (LOG_LEVEL=debug).
	Logger *slog.Logger

	// producers caches committed evidence_producers ids (see producerCache).
	producers producerCache
	// Lock, when set, fences every commit: the batch transaction checks
	// that the lock connection still holds the coordinator's advisory lock,
	// and commits nothing (ErrLockLost) when it does not.
	Lock *HeldLock
}

// Step is a named step of the batch transaction that another package
// contributes; it reads what the batch wrote and may write more. The
// transaction reaches the checkpoint "tx_" + Name after it.
type Step struct {
	Name string
	Run  func(ctx context.Context, tx pgx.Tx, rec *coordinator.Record, out coordinator.Committed) error
}

// CanBulkWritePoints reports whether points can be written with the fast
// path, and why not. The fast path COPYs the points (and appends
// score_history) with
// session_replication_role = replica, which skips the per-row foreign-key
// checks and the per-row points_summary trigger (together about 95% of the
// cost of writing 36,000 points), and then writes exactly the rows they
// would have: the referenced nodes and state hashes are locked FOR KEY SHARE
// in one statement each (what the foreign-key checks lock row by row) and
// points_summary gets one row per (batch, node) in one INSERT. It needs a
// role allowed to set session_replication_role (a superuser, or GRANT SET ON
// PARAMETER session_replication_role TO <user> on PostgreSQL 15+), and points
// points, points_summary, nodes and score_history must have no trigger other
// than trg_after_insert_points, since replica mode would skip it.
func CanBulkWritePoints(ctx context.Context, pool *pgxpool.Pool) (bool, string, error) {
	var allowed bool
	err := pool.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&allowed)
	if err != nil {
		return false, "", fmt.Errorf("reading the role's privileges: %w", err)
	}
	if !allowed {
		// has_parameter_privilege exists from PostgreSQL 15 on.
		var version int
		if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
			return false, "", fmt.Errorf("reading the server version: %w", err)
		}
		if version >= 150000 {
			if err := pool.QueryRow(ctx, `SELECT has_parameter_privilege('session_replication_role', 'SET')`).Scan(&allowed); err != nil {
				return false, "", fmt.Errorf("reading the role's privileges: %w", err)
			}
		}
	}
	if !allowed {
		return false, "the role may not set session_replication_role (GRANT SET ON PARAMETER session_replication_role TO <user> enables the fast path)", nil
	}
	var others []string
	rows, err := pool.Query(ctx, `SELECT tgrelid::regclass || '.' || tgname || CASE WHEN tgenabled = 'O' THEN '' ELSE ' (not enabled as origin)' END
		FROM pg_trigger WHERE tgrelid IN ('points'::regclass, 'points_summary'::regclass, 'nodes'::regclass, 'score_history'::regclass)
		AND NOT tgisinternal AND NOT (tgname = 'trg_after_insert_points' AND tgrelid = 'points'::regclass AND tgenabled = 'O') ORDER BY 1`)
	if err != nil {
		return false, "", fmt.Errorf("reading the triggers of points: %w", err)
	}
	if others, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return false, "", fmt.Errorf("reading the triggers of points: %w", err)
	}
	if len(others) > 0 {
		return false, fmt.Sprintf("triggers %v would be skipped by the fast path", others), nil
	}
	return true, "", nil
}

var (
	_ coordinator.Ledger           = (*Database)(nil)
	_ coordinator.SubmissionSource = (*Database)(nil)
)

// LastBatch returns the bot_logs row with the largest batch_end_epoch.
func (s *Database) LastBatch(ctx context.Context) (coordinator.LastBatch, error) {
	last, err := lastBatch(ctx, s.Pool)
	return last, classify(err)
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func lastBatch(ctx context.Context, q querier) (coordinator.LastBatch, error) {
	var id, end int64
	err := q.QueryRow(ctx, `SELECT id, batch_end_epoch FROM bot_logs
		WHERE batch_end_epoch IS NOT NULL ORDER BY batch_end_epoch DESC, id DESC LIMIT 1`).Scan(&id, &end)
	if errors.Is(err, pgx.ErrNoRows) {
		return coordinator.LastBatch{}, coordinator.ErrNoBatch
	}
	if err != nil {
		return coordinator.LastBatch{}, fmt.Errorf("reading the latest bot_logs row: %w", err)
	}
	return coordinator.LastBatch{ID: id, End: time.Unix(end, 0).UTC()}, nil
}

// Submissions returns the submissions with submitted_at in [w.Start, w.End),
// ordered by submitted_at and submitter, with the columns scoring reads
// (submitted_at, submitter, created_at and the verification columns); the
// collector's other columns are left empty.
func (s *Database) Submissions(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error) {
	subs, err := readSubmissions(ctx, s.Pool, `SELECT `+submissionColumns+`
		FROM submissions WHERE submitted_at >= $1 AND submitted_at < $2 ORDER BY submitted_at, submitter`,
		w.Start.UTC(), w.End.UTC())
	return subs, classify(err)
}

// fence opens a batch (or range) transaction: it takes the batch lock,
// checks that this coordinator still holds its advisory lock and that last
// is still the latest batch, and returns last's shortlist.
func (s *Database) fence(ctx context.Context, tx pgx.Tx, last coordinator.LastBatch) ([]coordinator.ShortlistedHash, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(batchLockKey)); err != nil {
		return nil, fmt.Errorf("taking the batch lock: %w", err)
	}
	if s.Lock != nil {
		held, err := holdsLock(ctx, tx, s.Lock.PID())
		if err != nil {
			return nil, err
		}
		if !held {
			return nil, ErrLockLost
		}
	}
	latest, err := lastBatch(ctx, tx)
	if err != nil {
		return nil, err
	}
	if latest != last {
		return nil, fmt.Errorf("%w: expected bot_logs %d ending %s, found %d ending %s", coordinator.ErrConcurrentBatch,
			last.ID, last.End.Format(time.DateTime), latest.ID, latest.End.Format(time.DateTime))
	}
	return shortlist(ctx, tx, last.ID)
}

// CommitBatch writes a batch in one transaction; see coordinator.Ledger.
func (s *Database) CommitBatch(ctx context.Context, last coordinator.LastBatch, build func([]coordinator.ShortlistedHash) (*coordinator.Record, error)) (coordinator.Committed, error) {
	var out coordinator.Committed
	var staged map[string]int32 // evidence producer ids this batch inserted
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		staged = nil
		prev, err := s.fence(ctx, tx, last)
		if err != nil {
			return err
		}
		rec, err := build(prev)
		if err != nil {
			return err
		}
		b, err := s.write(ctx, tx, last, rec)
		if err != nil {
			return err
		}
		out, staged = b.out, b.staged
		return nil
	})
	if err == nil {
		s.producers.add(staged)
	}
	return out, classify(err)
}

// shortlist reads a batch's bot_logs_statehash rows.
func shortlist(ctx context.Context, tx pgx.Tx, botLogID int64) ([]coordinator.ShortlistedHash, error) {
	rows, err := tx.Query(ctx, `SELECT s.value, coalesce(p.value, ''), b.weight
		FROM bot_logs_statehash b JOIN statehash s ON s.id = b.statehash_id
		LEFT JOIN statehash p ON p.id = b.parent_statehash_id
		WHERE b.bot_log_id = $1 AND s.value IS NOT NULL`, botLogID)
	if err != nil {
		return nil, fmt.Errorf("reading the previous batch's shortlist: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (coordinator.ShortlistedHash, error) {
		var h coordinator.ShortlistedHash
		err := row.Scan(&h.StateHash, &h.Parent, &h.Weight)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the previous batch's shortlist: %w", err)
	}
	return out, nil
}

// batchTx is one batch transaction: the record being written and what its
// steps have written so far.
type batchTx struct {
	tx   pgx.Tx
	last coordinator.LastBatch // the batch this one follows
	rec  *coordinator.Record
	bulk bool

	hashIDs map[string]int64 // statehash.value -> id of the batch's hashes
	nodeIDs map[string]int64 // block_producer_key -> nodes.id of its producers
	out     coordinator.Committed

	producers *producerCache   // evidence_producers ids committed before
	staged    map[string]int32 // evidence_producers ids this batch inserted
}

// batchStep is one step of the batch transaction. After a step the
// transaction reaches the checkpoint "tx_" + name.
type batchStep struct {
	name string
	run  func(b *batchTx, ctx context.Context) error
}

// batchSteps are the steps of a batch transaction, in order: a new write
// (another table, an outbox row, a NOTIFY) is a new step here, or a Step
// another package adds to Database.Steps (run after these, before notify). A
// step may use what the steps before it wrote (hashIDs, nodeIDs,
// out.BotLogID). Add its checkpoint to the crash tests
// (cmd/coordinator/crash_test.go).
var batchSteps = []batchStep{
	{"copied", (*batchTx).copySubmissions},
	{"statehash", (*batchTx).insertStateHashes},
	{"nodes", (*batchTx).insertNodes},
	{"bot_logs", (*batchTx).insertBotLog},
	{"shortlist", (*batchTx).insertShortlist},
	{"points", (*batchTx).insertPoints},
	{"scores", (*batchTx).updateScores},
	{"scoreboard", (*batchTx).appendScoreHistory},
	{"evidence", (*batchTx).insertEvidence},
}

// notifyStep is the last step: readers (coordinator serve) learn of the
// batch when it commits.
var notifyStep = batchStep{"notify", (*batchTx).notify}

// write runs the batch steps in tx, then the Database's Steps and the notify
// step, reaching the checkpoint "tx_begin" first and "tx_<step>" after each
// step.
func (s *Database) write(ctx context.Context, tx pgx.Tx, last coordinator.LastBatch, rec *coordinator.Record) (*batchTx, error) {
	b := &batchTx{tx: tx, last: last, rec: rec, bulk: s.BulkPoints, producers: &s.producers}
	steps := slices.Clone(batchSteps)
	for _, st := range s.Steps {
		steps = append(steps, batchStep{st.Name, func(b *batchTx, ctx context.Context) error {
			if err := st.Run(ctx, b.tx, b.rec, b.out); err != nil {
				return fmt.Errorf("%s: %w", st.Name, err)
			}
			return nil
		}})
	}
	steps = append(steps, notifyStep)
	s.Checkpoint.Reach(ctx, "tx_begin")
	debug := s.Logger != nil && s.Logger.Enabled(ctx, slog.LevelDebug)
	for _, step := range steps {
		began := time.Now()
		if err := step.run(b, ctx); err != nil {
			return nil, err
		}
		if debug {
			s.Logger.DebugContext(ctx, "batch transaction step done", "step", step.name, "took", time.Since(began))
		}
		s.Checkpoint.Reach(ctx, "tx_"+step.name)
	}
	return b, nil
}

// copySubmissions copies the batch's submissions into Postgres when
// Cassandra is the primary store.
func (b *batchTx) copySubmissions(ctx context.Context) error {
	if b.rec.Copy == nil {
		return nil
	}
	return copySubmissions(ctx, b.tx, b.rec.Copy)
}

// insertStateHashes inserts the state hashes the batch references and reads
// their ids.
func (b *batchTx) insertStateHashes(ctx context.Context) error {
	hashes := b.rec.StateHashes()
	if _, err := b.tx.Exec(ctx, `INSERT INTO statehash (value)
		SELECT v FROM unnest($1::text[]) AS u(v)
		WHERE NOT EXISTS (SELECT 1 FROM statehash s WHERE s.value = u.v) ORDER BY v
		ON CONFLICT (value) DO NOTHING`, hashes); err != nil {
		return fmt.Errorf("inserting state hashes: %w", err)
	}
	// FOR KEY SHARE: what a foreign-key check would lock, so that no
	// concurrent cleanup deletes a row this batch is about to reference.
	var err error
	b.hashIDs, err = idMap(ctx, b.tx, `SELECT value, id FROM statehash WHERE value = ANY($1::text[]) FOR KEY SHARE`, hashes)
	if err != nil {
		return fmt.Errorf("reading state hash ids: %w", err)
	}
	return nil
}

// insertNodes inserts the producers seen for the first time, reads the ids
// of all the batch's producers and locks their rows.
func (b *batchTx) insertNodes(ctx context.Context) error {
	producers := b.rec.Producers()
	tag, err := b.tx.Exec(ctx, `INSERT INTO nodes (block_producer_key, updated_at)
		SELECT k, $2 FROM unnest($1::text[]) AS u(k)
		WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.block_producer_key = u.k) ORDER BY k`, producers, b.rec.Now)
	if err != nil {
		return fmt.Errorf("inserting nodes: %w", err)
	}
	b.out.NewNodes = tag.RowsAffected()
	// A database the original wrote may hold a key twice: use its first row.
	b.nodeIDs, err = idMap(ctx, b.tx, `SELECT DISTINCT ON (block_producer_key) block_producer_key, id FROM nodes
		WHERE block_producer_key = ANY($1::text[]) ORDER BY block_producer_key, id`, producers)
	if err != nil {
		return fmt.Errorf("reading node ids: %w", err)
	}
	ids := make([]int64, 0, len(b.nodeIDs))
	for _, id := range b.nodeIDs {
		ids = append(ids, id)
	}
	if _, err := b.tx.Exec(ctx, `SELECT FROM nodes WHERE id = ANY($1::int8[]) FOR KEY SHARE`, ids); err != nil {
		return fmt.Errorf("locking nodes: %w", err)
	}
	return nil
}

// insertBotLog inserts the batch's bot_logs row.
func (b *batchTx) insertBotLog(ctx context.Context) error {
	rec, w := b.rec, b.rec.Window
	if err := b.tx.QueryRow(ctx, `INSERT INTO bot_logs (files_processed, file_timestamps, batch_start_epoch, batch_end_epoch, processing_time)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		rec.FilesProcessed(), rec.FileTimestamp().UTC(), w.Start.Unix(), w.End.Unix(), rec.ProcessingTime.Seconds()).Scan(&b.out.BotLogID); err != nil {
		return fmt.Errorf("inserting bot_logs: %w", err)
	}
	return nil
}

// insertShortlist inserts the batch's shortlist (bot_logs_statehash), which
// the next batch reads.
func (b *batchTx) insertShortlist(ctx context.Context) error {
	sl := b.rec.Result.Shortlist
	parents, ids, weights := make([]*int64, len(sl)), make([]int64, len(sl)), make([]int32, len(sl))
	for i, h := range sl {
		ids[i] = b.hashIDs[h.StateHash]
		weights[i] = int32(h.Weight)
		if h.Parent != "" {
			if p, ok := b.hashIDs[h.Parent]; ok {
				parents[i] = &p
			}
		}
	}
	if _, err := b.tx.Exec(ctx, `INSERT INTO bot_logs_statehash (parent_statehash_id, statehash_id, weight, bot_log_id)
		SELECT p, s, w, $4 FROM unnest($1::int8[], $2::int8[], $3::int4[]) AS u(p, s, w)`, parents, ids, weights, b.out.BotLogID); err != nil {
		return fmt.Errorf("inserting bot_logs_statehash: %w", err)
	}
	return nil
}

// insertPoints COPYs the batch's points; on the bulk path (see
// CanBulkWritePoints) it enters replica mode, which the scoreboard step
// leaves, and writes points_summary itself.
func (b *batchTx) insertPoints(ctx context.Context) error {
	points, rec := b.rec.Result.Points, b.rec
	if b.bulk {
		if _, err := b.tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return fmt.Errorf("entering the bulk points path: %w", err)
		}
	}
	n, err := b.tx.CopyFrom(ctx, pgx.Identifier{"points"},
		[]string{"file_name", "file_timestamps", "blockchain_epoch", "blockchain_height", "amount", "created_at", "node_id", "bot_log_id", "statehash_id"},
		pgx.CopyFromSlice(len(points), func(i int) ([]any, error) {
			p := points[i].Submission
			return []any{points[i].FileName, p.SubmittedAt.UTC(), coordinator.BlockchainEpoch(p), p.Height, int32(1),
				rec.Now, b.nodeIDs[p.Submitter], b.out.BotLogID, b.hashIDs[points[i].StateHash]}, nil
		}))
	if err != nil {
		return fmt.Errorf("inserting points: %w", err)
	}
	if int(n) != len(points) {
		return fmt.Errorf("inserting points: copied %d of %d rows", n, len(points))
	}
	if !b.bulk {
		return nil
	}
	// What trg_after_insert_points would have written, in one statement.
	pointed := make([]int64, 0, len(b.nodeIDs))
	seen := make(map[int64]bool, len(b.nodeIDs))
	for _, p := range points {
		if id := b.nodeIDs[p.Submission.Submitter]; !seen[id] {
			seen[id] = true
			pointed = append(pointed, id)
		}
	}
	if _, err := b.tx.Exec(ctx, `INSERT INTO points_summary (bot_log_id, node_id)
		SELECT $1, unnest($2::int8[]) ON CONFLICT (bot_log_id, node_id) DO NOTHING`, b.out.BotLogID, pointed); err != nil {
		return fmt.Errorf("inserting points_summary: %w", err)
	}
	return nil
}

// insertEvidence writes the batch's per-producer evidence, when it has any,
// and reads the previous batch's error-class shares.
func (b *batchTx) insertEvidence(ctx context.Context) error {
	if b.rec.Evidence == nil {
		return nil
	}
	var err error
	b.out.PreviousShares, b.staged, err = writeEvidence(ctx, b.tx, b.producers, b.last.ID, b.out.BotLogID, b.rec.Evidence)
	return err
}

// notify announces the batch's bot_log_id on BatchChannel (delivered at
// commit).
func (b *batchTx) notify(ctx context.Context) error {
	if _, err := b.tx.Exec(ctx, `SELECT pg_notify($1, $2)`, BatchChannel, fmt.Sprint(b.out.BotLogID)); err != nil {
		return fmt.Errorf("notifying %s: %w", BatchChannel, err)
	}
	return nil
}

func idMap(ctx context.Context, tx pgx.Tx, sql string, keys []string) (map[string]int64, error) {
	rows, err := tx.Query(ctx, sql, keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := make(map[string]int64, len(keys))
	for rows.Next() {
		var k string
		var id int64
		if err := rows.Scan(&k, &id); err != nil {
			return nil, err
		}
		m[k] = id
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(m) != len(keys) {
		return nil, fmt.Errorf("found %d of %d rows", len(m), len(keys))
	}
	return m, nil
}

// copySubmissions upserts submissions into the submissions table by its
// unique (submitter, submitted_at) index, so a re-run inserts nothing twice.
func copySubmissions(ctx context.Context, tx pgx.Tx, subs []coordinator.Submission) error {
	if len(subs) == 0 {
		return nil
	}
	n := len(subs)
	var (
		dates, at, created                 = make([]time.Time, n), make([]time.Time, n), make([]*time.Time, n)
		submitters                         = make([]string, n)
		blockHash, remote, peer, commit    = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		stateHash, parent, validationError = make([]*string, n), make([]*string, n), make([]*string, n)
		ports, heights, slots              = make([]*int32, n), make([]*int64, n), make([]*int64, n)
		snark                              = make([][]byte, n)
		verified                           = make([]*bool, n)
	)
	for i, s := range subs {
		dates[i], at[i], created[i], submitters[i] = s.SubmittedAtDate, s.SubmittedAt.UTC(), s.CreatedAt, s.Submitter
		if dates[i].IsZero() {
			dates[i] = s.SubmittedAt.UTC().Truncate(24 * time.Hour)
		}
		blockHash[i], remote[i], peer[i], commit[i] = s.BlockHash, s.RemoteAddr, s.PeerID, s.BuiltWithCommitSHA
		stateHash[i], parent[i], validationError[i] = s.StateHash, s.Parent, s.ValidationError
		ports[i], heights[i], slots[i], snark[i], verified[i] = s.GraphQLControlPort, s.Height, s.Slot, s.SnarkWork, s.Verified
	}
	_, err := tx.Exec(ctx, `INSERT INTO submissions (submitted_at_date, submitted_at, submitter, created_at, block_hash,
		remote_addr, peer_id, snark_work, graphql_control_port, built_with_commit_sha, state_hash, parent, height, slot,
		validation_error, verified)
		SELECT * FROM unnest($1::date[], $2::timestamp[], $3::text[], $4::timestamp[], $5::text[], $6::text[], $7::text[],
			$8::bytea[], $9::int4[], $10::text[], $11::text[], $12::text[], $13::int4[], $14::int4[], $15::text[], $16::bool[])
		ON CONFLICT (submitter, submitted_at) DO UPDATE SET state_hash = EXCLUDED.state_hash, parent = EXCLUDED.parent,
			height = EXCLUDED.height, slot = EXCLUDED.slot, validation_error = EXCLUDED.validation_error, verified = EXCLUDED.verified`,
		dates, at, submitters, created, blockHash, remote, peer, snark, ports, commit, stateHash, parent, heights, slots, validationError, verified)
	if err != nil {
		return fmt.Errorf("copying %d submissions into postgres: %w", n, err)
	}
	return nil
}

// BatchChannel is the Postgres notification channel on which each batch's
// transaction announces its bot_log_id (delivered at commit).
const BatchChannel = "uptime_batch"

// RescoreChannel is the Postgres notification channel on which a rescore's
// transaction announces that committed batches' points changed.
const RescoreChannel = "uptime_rescore"
