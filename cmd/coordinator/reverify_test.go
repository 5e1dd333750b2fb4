package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/cassandra/cassandratest"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

// A verifier that verifies nothing must not cost every producer of the
// range a point through reverify --rescore (as issue 10 item 1 for the
// loop): reverify checks MAX_UNVERIFIED_PERCENT after its workers, fails
// (exit 1) and does not re-score.
func TestReverifyRefusesUnverifiedWindows(t *testing.T) {
	t.Parallel()
	cfg, _ := flippedDB(t)
	scores := func() pgtest.Snapshot {
		s := scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg)))
		delete(s, "submissions")
		return s
	}
	before := scores()
	out, err := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=true", "RETRY_COUNT=0"},
		append([]string{"reverify", "--rescore"}, rangeArgs...)...).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "coordinator: re-verifying 2024-06-01 00:20:00 - 2024-06-01 00:40:00: verifier finished but left ") ||
		!strings.Contains(string(out), "(more than MAX_UNVERIFIED_PERCENT=5%)") {
		t.Fatalf("reverify with a worker that does nothing: exit %d, want 1 and the unverified share\n%s", exitCode(err), out)
	}
	if strings.Contains(string(out), `"msg":"rescore finished"`) {
		t.Errorf("re-scored although nothing was verified:\n%s", out)
	}
	if d := before.Diff(scores()); d != "" {
		t.Fatalf("the failed reverify changed the scores:\n%s", d)
	}
}

// Issue 14: reverify with SUBMISSION_STORAGE=CASSANDRA re-verifies in
// Cassandra (where the verifiers read and write) and copies the result into
// Postgres; with --rescore the database is then that of a run on a
// keyspace whose blocks were all there from the start.
func TestReverifyCassandra(t *testing.T) {
	t.Parallel()
	srv := cassandratest.Require(t)
	const n = 3
	start := time.Date(2024, 6, 1, 23, 20, 0, 0, time.UTC) // the windows cross a date partition
	net := synthnet.Generate(synthnet.Params{Seed: 37, Producers: 60, Start: start, Duration: n * 20 * time.Minute})
	subs := net.Unverified()
	for i := range subs {
		subs[i].SubmittedAt = subs[i].SubmittedAt.Truncate(time.Millisecond)
	}
	full, broken := blockDirs(t, net)
	setup := func() (config.Postgres, []string) {
		ks := cassandratest.NewKeyspace(t)
		cassandratest.Insert(t, ks, subs...)
		cfg := pgtest.NewDatabase(t)
		if err := postgres.InitDatabase(context.Background(), pgtest.Pool(t, cfg), start, false); err != nil {
			t.Fatal(err)
		}
		return cfg, cassandraEnv(srv, ks)
	}
	run := func(cfg config.Postgres, env []string, blocks string, args ...string) string {
		out, err := coordinatorCmd(cfg, append(env, "WORKER_MODE=process", "WORKER_COMMAND="+shellquote.Join(binary, "verify"),
			"BLOCKS_DIR="+blocks, "MINI_BATCH_NUMBER=2", "WORKER_TIMEOUT=2m"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("coordinator %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	scratch, scratchEnv := setup()
	run(scratch, scratchEnv, full, "run", "--batches", fmt.Sprint(n))
	want := scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, scratch)))

	cfg, env := setup()
	run(cfg, env, broken, "run", "--batches", fmt.Sprint(n))
	if d := want.Diff(scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg)))); d == "" {
		t.Fatal("weak test: the missing block files change nothing")
	}
	out := run(cfg, env, full, "reverify", "--from", "2024-06-01 23:40:00", "--to", "2024-06-02T00:20:01Z", "--rescore")
	if c := strings.Count(out, `"msg":"verifier launched"`); c != n*2 {
		t.Errorf("%d verifiers launched, want %d:\n%s", c, n*2, out)
	}
	if d := want.Diff(scoring(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg)))); d != "" {
		t.Fatalf("after reverify --rescore from Cassandra the database differs from a run with every block:\n%s", d)
	}
}
