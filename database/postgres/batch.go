package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// batchLockKey serialises batch transactions on one database (an
// transaction-level advisory lock): two writers never interleave.
const batchLockKey = 0x7570_7469_6d65 // "uptime"

// Store is the coordinator's Postgres database: the batch store and, when
// the collector writes to Postgres, the submission source.
type Store struct {
	Pool *pgxpool.Pool
	// BulkPoints writes a batch's points with the fast path (see
	// CanBulkWritePoints). Set it from CanBulkWritePoints.
	BulkPoints bool
	// Steps run in the batch's transaction after everything else is written
	// (the alert rules and their outbox): an error rolls the batch back.
	Steps []Step

	// producers caches evidence_producers ids (see producerIDs).
	producers producerCache
	// Lock, when set, fences every commit: the batch transaction checks
	// that the lock connection still holds the coordinator's advisory lock,
	// and commits nothing (ErrLockLost) when it does not.
	Lock *HeldLock
}

// Step is a named step of the batch transaction that another package
// contributes; it reads what the batch wrote and may write more.
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
	_ coordinator.Store            = (*Store)(nil)
	_ coordinator.SubmissionSource = (*Store)(nil)
)

// LastBatch returns the bot_logs row with the largest batch_end_epoch.
func (s *Store) LastBatch(ctx context.Context) (coordinator.LastBatch, error) {
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
func (s *Store) Submissions(ctx context.Context, w coordinator.Window) ([]coordinator.Submission, error) {
	rows, err := s.Pool.Query(ctx, `SELECT submitted_at, submitter, created_at, state_hash, parent, height, slot,
		validation_error, verified
		FROM submissions WHERE submitted_at >= $1 AND submitted_at < $2 ORDER BY submitted_at, submitter`,
		w.Start.UTC(), w.End.UTC())
	if err != nil {
		return nil, classify(fmt.Errorf("reading submissions: %w", err))
	}
	subs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (coordinator.Submission, error) {
		var c coordinator.Submission
		var height, slot *int32
		err := row.Scan(&c.SubmittedAt, &c.Submitter, &c.CreatedAt, &c.StateHash, &c.Parent, &height, &slot,
			&c.ValidationError, &c.Verified)
		c.Height, c.Slot = widen(height), widen(slot)
		return c, err
	})
	if err != nil {
		return nil, classify(fmt.Errorf("reading submissions: %w", err))
	}
	return subs, nil
}

func widen(v *int32) *int64 {
	if v == nil {
		return nil
	}
	w := int64(*v)
	return &w
}

// CommitBatch writes a batch in one transaction; see coordinator.Store.
func (s *Store) CommitBatch(ctx context.Context, last coordinator.LastBatch, build func([]coordinator.ShortlistedHash) (*coordinator.Record, error)) (coordinator.Committed, error) {
	var out coordinator.Committed
	var staged map[string]int32 // evidence producer ids this batch inserted
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		staged = nil
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(batchLockKey)); err != nil {
			return fmt.Errorf("taking the batch lock: %w", err)
		}
		if s.Lock != nil {
			held, err := holdsLock(ctx, tx, s.Lock.PID())
			if err != nil {
				return err
			}
			if !held {
				return ErrLockLost
			}
		}
		latest, err := lastBatch(ctx, tx)
		if err != nil {
			return err
		}
		if latest != last {
			return fmt.Errorf("%w: expected bot_logs %d ending %s, found %d ending %s", coordinator.ErrConcurrentBatch,
				last.ID, last.End.Format(time.DateTime), latest.ID, latest.End.Format(time.DateTime))
		}
		prev, err := shortlist(ctx, tx, last.ID)
		if err != nil {
			return err
		}
		rec, err := build(prev)
		if err != nil {
			return err
		}
		out, err = write(ctx, tx, rec, s.BulkPoints)
		if err != nil {
			return err
		}
		if rec.Evidence != nil {
			out.PreviousShares, staged, err = writeEvidence(ctx, tx, &s.producers, last.ID, out.BotLogID, rec.Evidence)
			if err != nil {
				return err
			}
			coordinator.Checkpoint(ctx, "tx_evidence")
		}
		for _, step := range s.Steps {
			if err := step.Run(ctx, tx, rec, out); err != nil {
				return fmt.Errorf("%s: %w", step.Name, err)
			}
			coordinator.Checkpoint(ctx, "tx_"+step.Name)
		}
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

func write(ctx context.Context, tx pgx.Tx, rec *coordinator.Record, bulk bool) (coordinator.Committed, error) {
	var out coordinator.Committed
	coordinator.Checkpoint(ctx, "tx_begin")
	if rec.Copy != nil {
		if err := copySubmissions(ctx, tx, rec.Copy); err != nil {
			return out, err
		}
		coordinator.Checkpoint(ctx, "tx_copied")
	}

	hashes := rec.StateHashes()
	if _, err := tx.Exec(ctx, `INSERT INTO statehash (value)
		SELECT v FROM unnest($1::text[]) AS u(v)
		WHERE NOT EXISTS (SELECT 1 FROM statehash s WHERE s.value = u.v) ORDER BY v
		ON CONFLICT (value) DO NOTHING`, hashes); err != nil {
		return out, fmt.Errorf("inserting state hashes: %w", err)
	}
	// FOR KEY SHARE: what a foreign-key check would lock, so that no
	// concurrent cleanup deletes a row this batch is about to reference.
	hashIDs, err := idMap(ctx, tx, `SELECT value, id FROM statehash WHERE value = ANY($1::text[]) FOR KEY SHARE`, hashes)
	if err != nil {
		return out, fmt.Errorf("reading state hash ids: %w", err)
	}
	coordinator.Checkpoint(ctx, "tx_statehash")

	producers := rec.Producers()
	tag, err := tx.Exec(ctx, `INSERT INTO nodes (block_producer_key, updated_at)
		SELECT k, $2 FROM unnest($1::text[]) AS u(k)
		WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.block_producer_key = u.k) ORDER BY k`, producers, rec.Now)
	if err != nil {
		return out, fmt.Errorf("inserting nodes: %w", err)
	}
	out.NewNodes = tag.RowsAffected()
	// A database the original wrote may hold a key twice: use its first row.
	nodeIDs, err := idMap(ctx, tx, `SELECT DISTINCT ON (block_producer_key) block_producer_key, id FROM nodes
		WHERE block_producer_key = ANY($1::text[]) ORDER BY block_producer_key, id`, producers)
	if err != nil {
		return out, fmt.Errorf("reading node ids: %w", err)
	}
	nodeIDList := make([]int64, 0, len(nodeIDs))
	for _, id := range nodeIDs {
		nodeIDList = append(nodeIDList, id)
	}
	if _, err := tx.Exec(ctx, `SELECT FROM nodes WHERE id = ANY($1::int8[]) FOR KEY SHARE`, nodeIDList); err != nil {
		return out, fmt.Errorf("locking nodes: %w", err)
	}
	coordinator.Checkpoint(ctx, "tx_nodes")

	w := rec.Window
	if err := tx.QueryRow(ctx, `INSERT INTO bot_logs (files_processed, file_timestamps, batch_start_epoch, batch_end_epoch, processing_time)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		rec.FilesProcessed(), rec.FileTimestamp().UTC(), w.Start.Unix(), w.End.Unix(), rec.ProcessingTime.Seconds()).Scan(&out.BotLogID); err != nil {
		return out, fmt.Errorf("inserting bot_logs: %w", err)
	}
	coordinator.Checkpoint(ctx, "tx_bot_logs")

	sl := rec.Result.Shortlist
	parents, ids, weights := make([]*int64, len(sl)), make([]int64, len(sl)), make([]int32, len(sl))
	for i, h := range sl {
		ids[i] = hashIDs[h.StateHash]
		weights[i] = int32(h.Weight)
		if h.Parent != "" {
			if p, ok := hashIDs[h.Parent]; ok {
				parents[i] = &p
			}
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bot_logs_statehash (parent_statehash_id, statehash_id, weight, bot_log_id)
		SELECT p, s, w, $4 FROM unnest($1::int8[], $2::int8[], $3::int4[]) AS u(p, s, w)`, parents, ids, weights, out.BotLogID); err != nil {
		return out, fmt.Errorf("inserting bot_logs_statehash: %w", err)
	}
	coordinator.Checkpoint(ctx, "tx_shortlist")

	points := rec.Result.Points
	if bulk {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return out, fmt.Errorf("entering the bulk points path: %w", err)
		}
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"points"},
		[]string{"file_name", "file_timestamps", "blockchain_epoch", "blockchain_height", "amount", "created_at", "node_id", "bot_log_id", "statehash_id"},
		pgx.CopyFromSlice(len(points), func(i int) ([]any, error) {
			p := points[i].Submission
			return []any{points[i].FileName, p.SubmittedAt.UTC(), coordinator.BlockchainEpoch(p), p.Height, int32(1),
				rec.Now, nodeIDs[p.Submitter], out.BotLogID, hashIDs[points[i].StateHash]}, nil
		}))
	if err != nil {
		return out, fmt.Errorf("inserting points: %w", err)
	}
	if int(n) != len(points) {
		return out, fmt.Errorf("inserting points: copied %d of %d rows", n, len(points))
	}
	if bulk {
		// What trg_after_insert_points would have written, in one statement.
		pointed := make([]int64, 0, len(nodeIDs))
		seen := make(map[int64]bool, len(nodeIDs))
		for _, p := range points {
			if id := nodeIDs[p.Submission.Submitter]; !seen[id] {
				seen[id] = true
				pointed = append(pointed, id)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO points_summary (bot_log_id, node_id)
			SELECT $1, unnest($2::int8[]) ON CONFLICT (bot_log_id, node_id) DO NOTHING`, out.BotLogID, pointed); err != nil {
			return out, fmt.Errorf("inserting points_summary: %w", err)
		}
	}
	coordinator.Checkpoint(ctx, "tx_points")

	out.Scoreboard, err = updateScoreboard(ctx, tx, w, rec.UptimeDays, bulk)
	if err != nil {
		return out, err
	}
	if bulk {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = origin`); err != nil {
			return out, fmt.Errorf("leaving the bulk path: %w", err)
		}
	}
	coordinator.Checkpoint(ctx, "tx_scoreboard")

	// Readers (coordinator serve) learn of the batch when it commits.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, BatchChannel, fmt.Sprint(out.BotLogID)); err != nil {
		return out, fmt.Errorf("notifying %s: %w", BatchChannel, err)
	}
	return out, nil
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

// InsertSubmissions stores submissions as the collector does (COPY into the
// submissions table). Tests, benchmarks and the demo use it to stand in for
// the collector.
func InsertSubmissions(ctx context.Context, pool *pgxpool.Pool, subs []coordinator.Submission) (int64, error) {
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"submissions"},
		[]string{"submitted_at_date", "submitted_at", "submitter", "created_at", "block_hash", "remote_addr", "peer_id",
			"snark_work", "graphql_control_port", "built_with_commit_sha", "state_hash", "parent", "height", "slot",
			"validation_error", "verified"},
		pgx.CopyFromSlice(len(subs), func(i int) ([]any, error) {
			s := subs[i]
			var height, slot *int32
			if s.Height != nil {
				h := int32(*s.Height)
				height = &h
			}
			if s.Slot != nil {
				v := int32(*s.Slot)
				slot = &v
			}
			var created *time.Time
			if s.CreatedAt != nil {
				c := s.CreatedAt.UTC()
				created = &c
			}
			return []any{s.SubmittedAtDate, s.SubmittedAt.UTC(), s.Submitter, created, s.BlockHash, s.RemoteAddr, s.PeerID,
				s.SnarkWork, s.GraphQLControlPort, s.BuiltWithCommitSHA, s.StateHash, s.Parent, height, slot,
				s.ValidationError, s.Verified}, nil
		}))
	if err != nil {
		return n, fmt.Errorf("inserting submissions: %w", err)
	}
	return n, nil
}

// BatchChannel is the Postgres notification channel on which each batch's
// transaction announces its bot_log_id (delivered at commit).
const BatchChannel = "uptime_batch"
