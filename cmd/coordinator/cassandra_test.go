package main

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/cassandra/cassandratest"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// TestCassandraStorageScoresAsPostgres runs the real binary with
// SUBMISSION_STORAGE=CASSANDRA over a keyspace holding a network's
// submissions, and again with the same submissions in Postgres: the two
// databases must end up equal row for row — scores, points, history and the
// submissions copied from Cassandra into Postgres. A re-run of the copy
// inserts nothing twice.
func TestCassandraStorageScoresAsPostgres(t *testing.T) {
	t.Parallel()
	srv := cassandratest.Require(t)
	ks := cassandratest.NewKeyspace(t)
	const n = 4
	// Start just before midnight so the windows cross a date partition.
	start := time.Date(2024, 6, 1, 23, 20, 0, 0, time.UTC)
	net := synthnet.Generate(synthnet.Params{Seed: 5, Producers: 80, Start: start, Duration: n * 20 * time.Minute})
	subs := net.Verified()
	// Cassandra's timestamp type keeps milliseconds: so does what the
	// collector stores there.
	for i := range subs {
		subs[i].SubmittedAt = subs[i].SubmittedAt.Truncate(time.Millisecond)
	}
	cassandratest.Insert(t, ks, subs...)

	ctx := context.Background()
	viaCassandra := pgtest.NewDatabase(t)
	if err := postgres.InitDatabase(ctx, pgtest.Pool(t, viaCassandra), start, false); err != nil {
		t.Fatal(err)
	}
	cmd := coordinatorCmd(viaCassandra, cassandraEnv(srv, ks), "run", "--batches", fmt.Sprint(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("coordinator with Cassandra: %v\n%s", err, out)
	}

	viaPostgres, pool := pgtest.Seed(t, subs, start)
	runCoordinator(t, viaPostgres, "run", "--batches", fmt.Sprint(n))

	got, want := pgtest.TakeSnapshot(t, pgtest.Pool(t, viaCassandra)), pgtest.TakeSnapshot(t, pool)
	if d := want.Diff(got); d != "" {
		t.Fatalf("scoring from Cassandra differs from scoring from Postgres:\n%s", d)
	}
	if len(got["points"]) == 0 || len(got["submissions"]) != len(subs) {
		t.Fatalf("weak test: %d points, %d of %d submissions copied", len(got["points"]), len(got["submissions"]), len(subs))
	}

	// Re-running a batch copies its submissions again: nothing is doubled.
	execSQL(t, viaCassandra, `DELETE FROM score_history WHERE score_at = (SELECT to_timestamp(max(batch_end_epoch)) AT TIME ZONE 'UTC' FROM bot_logs)`,
		`DELETE FROM points_summary WHERE bot_log_id = (SELECT max(id) FROM bot_logs)`,
		`DELETE FROM points WHERE bot_log_id = (SELECT max(id) FROM bot_logs)`,
		`DELETE FROM bot_logs_statehash WHERE bot_log_id = (SELECT max(id) FROM bot_logs)`,
		`DELETE FROM bot_logs WHERE id = (SELECT max(id) FROM bot_logs)`)
	cmd = coordinatorCmd(viaCassandra, cassandraEnv(srv, ks), "run", "--batches", "1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	again := pgtest.TakeSnapshot(t, pgtest.Pool(t, viaCassandra))
	if !slices.Equal(again["submissions"], got["submissions"]) {
		t.Fatalf("the re-run changed the copied submissions: %d rows, want %d", len(again["submissions"]), len(got["submissions"]))
	}
}

func execSQL(t *testing.T, cfg config.Postgres, stmts ...string) {
	t.Helper()
	pool := pgtest.Pool(t, cfg)
	for _, s := range stmts {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// cassandraEnv points the coordinator at a test keyspace.
func cassandraEnv(srv cassandratest.Server, ks config.Cassandra) []string {
	return []string{"SUBMISSION_STORAGE=CASSANDRA", "AWS_KEYSPACE=" + ks.Keyspace, "CASSANDRA_HOST=" + srv.Host,
		"CASSANDRA_PORT=" + strconv.Itoa(srv.Port), "CASSANDRA_USERNAME=" + srv.Username, "CASSANDRA_PASSWORD=" + srv.Password}
}

// TestVerifyAgainstCassandra runs the bundled verifier on a window of a real
// keyspace: every submission of the window gets its verification columns,
// those outside stay untouched.
func TestVerifyAgainstCassandra(t *testing.T) {
	t.Parallel()
	srv := cassandratest.Require(t)
	ks := cassandratest.NewKeyspace(t)
	start := time.Date(2024, 6, 1, 23, 50, 0, 0, time.UTC)
	net := synthnet.Generate(synthnet.Params{Seed: 9, Producers: 40, Start: start, Duration: 40 * time.Minute})
	subs := net.Unverified()
	for i := range subs {
		subs[i].SubmittedAt = subs[i].SubmittedAt.Truncate(time.Millisecond)
	}
	cassandratest.Insert(t, ks, subs...)
	blocks := t.TempDir()
	if err := synthnet.WriteBlockFiles(blocks, net.Blocks); err != nil {
		t.Fatal(err)
	}
	w := coordinator.Window{Start: start, End: start.Add(20 * time.Minute)} // crosses midnight
	cmd := osexec.Command(binary, "verify", workers.FormatTimestamp(w.Start), workers.FormatTimestamp(w.End))
	cmd.Dir = t.TempDir()
	cmd.Env = append(cassandraEnv(srv, ks), "BLOCKS_DIR="+blocks, "PATH="+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("coordinator verify: %v\n%s", err, out)
	}
	var inside, verified, rejected int
	for _, s := range cassandratest.All(t, ks) {
		in := !s.SubmittedAt.Before(w.Start) && s.SubmittedAt.Before(w.End)
		switch {
		case in && s.Verified == nil:
			t.Errorf("%s at %s: not verified", s.Submitter, s.SubmittedAt)
		case !in && s.Verified != nil:
			t.Errorf("%s at %s: outside the window but verified", s.Submitter, s.SubmittedAt)
		case in && *s.Verified:
			inside++
			verified++
			if s.StateHash == nil || s.BlockHash == nil || *s.StateHash != *s.BlockHash || s.Parent == nil || s.Height == nil {
				t.Errorf("%s: verified without its block's fields", s.Submitter)
			}
		case in:
			inside++
			rejected++
			if s.ValidationError == nil || *s.ValidationError == "" {
				t.Errorf("%s: rejected without a reason", s.Submitter)
			}
		}
	}
	if verified == 0 || rejected == 0 {
		t.Fatalf("weak test: %d verified, %d rejected of %d in the window", verified, rejected, inside)
	}
}
