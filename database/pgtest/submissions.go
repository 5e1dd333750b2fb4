package pgtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

// InsertSubmissions stores submissions as the collector does (COPY into the
// submissions table). Tests, benchmarks and the demo use it to stand in for
// the collector; the coordinator itself never writes submissions this way.
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

// Seed gives the test its own migrated database in the state a coordinator
// finds before its first batch: subs stored as the collector stores them and
// the batch log started at start (init-database), the submissions table
// analysed. It returns the database's
// connection settings and a pool closed with the test.
func Seed(t testing.TB, subs []coordinator.Submission, start time.Time) (config.Postgres, *pgxpool.Pool) {
	t.Helper()
	cfg := NewDatabase(t)
	pool := Pool(t, cfg)
	SeedPool(t, pool, subs, start)
	return cfg, pool
}

// SeedPool is Seed into the database of pool.
func SeedPool(t testing.TB, pool *pgxpool.Pool, subs []coordinator.Submission, start time.Time) {
	t.Helper()
	ctx := context.Background()
	if _, err := InsertSubmissions(ctx, pool, subs); err != nil {
		t.Fatal(err)
	}
	// Statistics as autovacuum would have them, for the planner.
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE submissions`); err != nil {
		t.Fatal(err)
	}
	if err := postgres.InitDatabase(ctx, pool, start, false); err != nil {
		t.Fatal(err)
	}
}
