package kubernetes_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
	kubeworker "github.com/delegation-program/uptime-coordinator/workers/kubernetes"
	"github.com/delegation-program/uptime-coordinator/workers/kubernetes/kubetest"
)

// testEndToEnd runs the engine in kubernetes mode for two batches: the real
// job controller runs the Jobs, and the fake kubelet runs the real bundled
// verifier (coordinator verify) with each Pod's environment, secrets
// resolved from the Secret, so the submissions really get verified in
// Postgres before the engine scores them.
func testEndToEnd(t *testing.T, c *kubetest.Cluster) {
	const ns = "e2e"
	cs := c.Clientset()
	ctx := t.Context()

	const interval = 20 * time.Minute
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	net := synthnet.Generate(synthnet.Params{Seed: 11, Producers: 60, Start: start, Duration: 2 * interval})
	pg, pool := pgtest.Seed(t, net.Unverified(), start)
	blocks, workDir := t.TempDir(), t.TempDir()
	if err := synthnet.WriteBlockFiles(blocks, net.Blocks); err != nil {
		t.Fatal(err)
	}

	vars := baseVars()
	vars["POSTGRES_HOST"], vars["POSTGRES_PORT"] = pg.Host, strconv.Itoa(pg.Port)
	vars["POSTGRES_DB"], vars["POSTGRES_USER"] = pg.DB, pg.User
	// pgtest's server trusts local connections: the password travels
	// through the Secret and secretKeyRef without being checked.
	vars["POSTGRES_PASSWORD"] = testSecrets["POSTGRES_PASSWORD"]
	if pg.SSLMode != "" {
		vars["POSTGRES_SSLMODE"] = pg.SSLMode
	}
	vars["SURVEY_INTERVAL_MINUTES"] = "20"
	vars["MINI_BATCH_NUMBER"] = "3"
	cfg := loadConfig(t, vars)
	namespace(t, c, ns, cfg)

	var mu sync.Mutex
	var outputs []string
	kubetest.StartKubelet(t, cs, ns, func(ctx context.Context, pod *corev1.Pod) error {
		env, err := kubetest.EnvOf(ctx, cs, pod)
		if err != nil {
			return err
		}
		// In place of the image's entrypoint-worker.sh: the bundled verifier.
		cmd := exec.CommandContext(ctx, coordinatorBin, "verify", env["START_TIMESTAMP"], env["END_TIMESTAMP"])
		cmd.Dir = workDir // no stray .env
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BLOCKS_DIR=" + blocks}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		mu.Lock()
		outputs = append(outputs, fmt.Sprintf("%s: %s", pod.Name, out))
		mu.Unlock()
		if err != nil {
			return fmt.Errorf("coordinator verify: %w: %s", err, out)
		}
		return nil
	})
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			for _, o := range outputs {
				t.Logf("verifier output of %s", o)
			}
		}
	})

	log, _ := newLogger(t)
	ev := &events{}
	store := &postgres.Database{Pool: pool}
	var summaries []*coordinator.Summary
	eng := &coordinator.Engine{
		Ledger: store, Source: store,
		Launcher: newLauncher(cfg, cs, ns, log, kubeworker.WithEvents(ev)),
		Interval: cfg.Runtime.SurveyInterval, MiniBatches: cfg.Runtime.MiniBatches, UptimeDays: cfg.Runtime.UptimeDays,
		Retries: cfg.Runtime.RetryCount, Logger: log,
		AfterBatch: func(_ context.Context, s *coordinator.Summary) { summaries = append(summaries, s) },
	}
	begin := time.Now()
	if err := eng.Run(ctx, 2); err != nil {
		t.Fatalf("engine: %v", err)
	}
	t.Logf("2 batches of 3 Jobs verified and committed in %v", time.Since(begin).Round(time.Millisecond))
	if ev.started.Load() != 6 || ev.failed.Load() != 0 || ev.retried.Load() != 0 {
		t.Errorf("events %v, want 6 started", ev)
	}

	// Every submission of the two windows is verified as the network says.
	want := map[string]coordinator.Submission{}
	for _, s := range net.Verified() {
		want[s.Submitter+s.SubmittedAt.String()] = s
	}
	points := 0
	for i, s := range summaries {
		w := coordinator.Window{Start: start.Add(time.Duration(i) * interval), End: start.Add(time.Duration(i+1) * interval)}
		if !s.Window.Start.Equal(w.Start) || !s.Window.End.Equal(w.End) {
			t.Fatalf("batch %d window %v, want %v", i, s.Window, w)
		}
		got, err := store.Submissions(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || len(got) != s.Submissions {
			t.Fatalf("batch %d: %d submissions stored, %d scored", i, len(got), s.Submissions)
		}
		valid := 0
		for _, g := range got {
			exp, ok := want[g.Submitter+g.SubmittedAt.String()]
			switch {
			case !ok:
				t.Fatalf("unexpected submission %s at %v", g.Submitter, g.SubmittedAt)
			case g.Verified == nil:
				t.Errorf("batch %d: submission of %s at %v not verified", i, g.Submitter, g.SubmittedAt)
			case *g.Verified != *exp.Verified:
				t.Errorf("batch %d: submission of %s at %v verified=%v, want %v (%v)", i, g.Submitter, g.SubmittedAt, *g.Verified, *exp.Verified, deref(g.ValidationError))
			case *g.Verified && (g.StateHash == nil || *g.StateHash != *exp.StateHash || *g.Height != *exp.Height):
				t.Errorf("batch %d: submission of %s at %v has the wrong block", i, g.Submitter, g.SubmittedAt)
			case *g.Verified:
				valid++
			}
		}
		if valid == 0 || len(s.Result.Valid) != valid {
			t.Errorf("batch %d: %d valid submissions stored, %d scored", i, valid, len(s.Result.Valid))
		}
		points += len(s.Result.Points)
		t.Logf("batch %d: %d submissions, %d verified valid, %d points", i, len(got), valid, len(s.Result.Points))
	}
	if len(summaries) != 2 {
		t.Fatalf("%d batches committed, want 2", len(summaries))
	}
	var stored int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM points p JOIN bot_logs b ON b.id = p.bot_log_id
		WHERE b.batch_start_epoch >= $1`, start.Unix()).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if points == 0 || stored != points {
		t.Errorf("%d points stored, %d scored; want the same, more than 0", stored, points)
	}
	checkNoSecrets(t, cs, ns)
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
