package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func count(t *testing.T, cfg config.Postgres, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pgtest.Pool(t, cfg).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Issue 10 item 1: a worker that exits 0 but verifies nothing must not
// commit the window with no points; the attempt fails, is retried, and the
// batch is abandoned loudly with nothing written. WORKER_MODE=none keeps
// committing (something else verifies).
func TestVerifierThatVerifiesNothing(t *testing.T) {
	t.Parallel()
	net := synthnet.Generate(synthnet.Params{Seed: 31, Producers: 40, Start: netStart, Duration: 20 * time.Minute})
	subs := synthnet.Window(net.Unverified(), coordinator.Window{Start: netStart, End: netStart.Add(20 * time.Minute)})
	cfg := setup(t, subs).cfg

	out, err := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=true", "RETRY_COUNT=1"},
		"run", "--batches", "1").CombinedOutput()
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1:\n%s", exitCode(err), out)
	}
	want := "verifier finished but left " + itoa(len(subs)) + " of " + itoa(len(subs)) + " submissions unverified"
	// The first attempt fails and is retried; the retry fails and the
	// batch is abandoned, with the same message.
	if c := strings.Count(string(out), `"msg":"batch failed; retrying"`); c != 1 {
		t.Errorf("%d retries logged, want 1:\n%s", c, out)
	}
	if !regexp.MustCompile(`"msg":"batch failed; retrying".*`+want).MatchString(string(out)) ||
		!strings.Contains(string(out), "giving up after 2 attempts: "+want) {
		t.Errorf("the attempts do not fail with %q:\n%s", want, out)
	}
	if n := committed(t, cfg); n != 0 {
		t.Fatalf("%d batches committed, want 0", n)
	}
	if n := count(t, cfg, `SELECT count(*) FROM points`); n != 0 {
		t.Fatalf("%d points written", n)
	}

	// Below the threshold the batch commits: 1 unverified of 40+ is under 5%.
	pool := pgtest.Pool(t, cfg)
	if _, err := pool.Exec(context.Background(), `UPDATE submissions SET verified = false, validation_error = 'x'
		WHERE submitter <> (SELECT min(submitter) FROM submissions)`); err != nil {
		t.Fatal(err)
	}
	if out, err := coordinatorCmd(cfg, []string{"WORKER_MODE=process", "WORKER_COMMAND=true", "RETRY_COUNT=0"},
		"run", "--batches", "1").CombinedOutput(); err != nil {
		t.Fatalf("with few unverified submissions: %v\n%s", err, out)
	}
	if n := committed(t, cfg); n != 1 {
		t.Fatalf("%d batches committed, want 1", n)
	}

	// WORKER_MODE=none: the window is committed as before.
	none := setup(t, subs).cfg
	runCoordinator(t, none, "run", "--batches", "1")
	if n := committed(t, none); n != 1 {
		t.Fatalf("WORKER_MODE=none committed %d batches, want 1", n)
	}
}

// Issue 10 item 3: a verified row with a 6,000-character state hash used to
// fail the statehash unique index on every attempt, stopping scoring for
// good. Malformed rows are now ignored with a reason, and the batch scores
// exactly as without them.
func TestMalformedRowsDoNotStopScoring(t *testing.T) {
	t.Parallel()
	w := coordinator.Window{Start: netStart, End: netStart.Add(20 * time.Minute)}
	net := synthnet.Generate(synthnet.Params{Seed: 37, Producers: 60, Start: netStart, Duration: 20 * time.Minute})
	good := synthnet.Window(net.Verified(), w)

	rng := rand.New(rand.NewPCG(7, 8))
	long := make([]byte, 6000)
	for i := range long {
		long[i] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"[rng.IntN(58)]
	}
	var real []coordinator.Submission // verified true
	for _, s := range good {
		if s.StateHash != nil {
			real = append(real, s)
		}
	}
	bad := []struct{ submitter, hash, parent string }{
		{"B62qbadLongHash", string(long), *real[0].StateHash},
		{"B62qbadBlankHash", "   ", ""},
		{"B62qbadChars", "3N<script>", ""},
	}
	subs := append([]coordinator.Submission(nil), good...)
	for i, b := range bad {
		s := real[i]
		s.Submitter, s.StateHash, s.Parent = b.submitter, ptr(b.hash), ptr(b.parent)
		s.SubmittedAt = s.SubmittedAt.Add(time.Millisecond)
		subs = append(subs, s)
	}
	// Negative height on an otherwise real block.
	neg := real[3]
	neg.Submitter, neg.Height, neg.SubmittedAt = "B62qbadHeight", ptr(int64(-7)), neg.SubmittedAt.Add(time.Millisecond)
	subs = append(subs, neg)

	cfg := setup(t, subs).cfg
	out, err := coordinatorCmd(cfg, []string{"RETRY_COUNT=0"}, "run", "--batches", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("coordinator: %v\n%s", err, out)
	}
	for _, want := range []string{
		`"submitter":"B62qbadLongHash","submitted_at":"[^"]+","reason":"state_hash is 6000 characters long, more than 128`,
		`"submitter":"B62qbadBlankHash","submitted_at":"[^"]+","reason":"state_hash is blank"`,
		`"submitter":"B62qbadChars","submitted_at":"[^"]+","reason":"state_hash \\"3N<script>\\" is not base58 \(character 3\)"`,
		`"submitter":"B62qbadHeight","submitted_at":"[^"]+","reason":"height -7 is negative"`,
		`"msg":"batch committed".*"invalid":\{[^}]*"malformed":4`,
	} {
		if !regexp.MustCompile(want).MatchString(string(out)) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if n := count(t, cfg, `SELECT count(*) FROM statehash WHERE length(value) > 128 OR value !~ '^[1-9A-HJ-NP-Za-km-z]+$'`); n != 0 {
		t.Errorf("%d malformed state hashes written to statehash", n)
	}
	if n := count(t, cfg, `SELECT count(*) FROM points p JOIN nodes n ON n.id = p.node_id WHERE n.block_producer_key LIKE 'B62qbad%'`); n != 0 {
		t.Errorf("%d points for malformed rows", n)
	}

	// The same window without the malformed rows gives the same tables.
	clean := setup(t, good).cfg
	runCoordinator(t, clean, "run", "--batches", "1")
	want, have := pgtest.TakeSnapshot(t, pgtest.Pool(t, clean)), pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))
	for _, table := range []string{"nodes", "points", "bot_logs_statehash", "bot_logs", "statehash", "points_summary", "score_history"} {
		if d := (pgtest.Snapshot{table: want[table]}).Diff(pgtest.Snapshot{table: have[table]}); d != "" {
			t.Errorf("%s differs from the run without malformed rows:\n%s", table, d)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func itoa(n int) string { return strconv.Itoa(n) }

// slackHook is a local HTTP server standing in for a Slack incoming
// webhook; it records the text of every message.
type slackHook struct {
	srv  *httptest.Server
	mu   sync.Mutex
	msgs []string
}

func newSlackHook(t *testing.T) *slackHook {
	h := &slackHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.msgs = append(h.msgs, body.Text)
		h.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *slackHook) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.msgs)
}

// Issue 10 item 2: a window without submissions is still committed (the
// original counts it as a survey) but logged at WARN and alerted, and a drop
// of more than PRODUCER_DROP_ALERT_PERCENT of the submitting producers is
// alerted too.
func TestEmptyWindowAndProducerDropAlerted(t *testing.T) {
	t.Parallel()
	net := synthnet.Generate(synthnet.Params{Seed: 41, Producers: 60, Start: netStart, Duration: 40 * time.Minute})
	all := net.Verified()
	first := synthnet.Window(all, coordinator.Window{Start: netStart, End: netStart.Add(20 * time.Minute)})
	// The second window keeps the submissions of a third of the producers.
	var second []coordinator.Submission
	for _, s := range synthnet.Window(all, coordinator.Window{Start: netStart.Add(20 * time.Minute), End: netStart.Add(40 * time.Minute)}) {
		if s.Submitter[len(s.Submitter)-1]%3 == 0 {
			second = append(second, s)
		}
	}
	// The third window is empty.
	cfg := setup(t, append(slices.Clone(first), second...)).cfg
	hook := newSlackHook(t)
	out, err := coordinatorCmd(cfg, []string{"WEBHOOK_URL=" + hook.srv.URL + "/services/T000/B000/XXXX"}, "run", "--batches", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("coordinator: %v\n%s", err, out)
	}
	if n := committed(t, cfg); n != 3 {
		t.Fatalf("%d batches committed, want 3 (the empty window counts as a survey)", n)
	}
	p1, p2 := countSubmitters(first), countSubmitters(second)
	if 2*p2 >= p1 {
		t.Fatalf("test data: %d then %d producers is not a drop of more than half", p1, p2)
	}
	drop := fmt.Sprintf("Producers submitting in window 2024-06-01 00:20:00 – 00:40:00 UTC dropped by %.1f%%, from %d to %d, more than 50%% (PRODUCER_DROP_ALERT_PERCENT)",
		100*float64(p1-p2)/float64(p1), p1, p2)
	empty := "No submissions in window 2024-06-01 00:40:00 – 01:00:00 UTC: the batch was committed as a survey in which no producer earns a point"
	// The alerts are delivered by the outbox's queue, not necessarily in
	// the order of their batches.
	got := hook.received()
	if len(got) != 2 || !(strings.Contains(got[0], drop) && strings.Contains(got[1], empty) ||
		strings.Contains(got[1], drop) && strings.Contains(got[0], empty)) {
		t.Fatalf("alerts %q\nwant %q and %q, in either order", got, drop, empty)
	}
	for _, want := range []string{
		`"level":"WARN","msg":"no submissions in window: committed as a survey in which no producer earns a point`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "XXXX") {
		t.Errorf("the webhook's secret path is in the log:\n%s", out)
	}
}

func countSubmitters(subs []coordinator.Submission) int {
	seen := map[string]bool{}
	for _, s := range subs {
		seen[s.Submitter] = true
	}
	return len(seen)
}

// Issue 10 item 6: permanent errors fail at once with their own message
// (no retry, no backoff); no message names a window that was not read.
func TestPermanentErrorsNotRetried(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, out []byte, err error, want string) {
		t.Helper()
		if exitCode(err) != 1 {
			t.Fatalf("exit %d, want 1:\n%s", exitCode(err), out)
		}
		for _, bad := range []string{"batch failed; retrying", "giving up after", "0001-01-01"} {
			if strings.Contains(string(out), bad) {
				t.Errorf("output has %q:\n%s", bad, out)
			}
		}
		if !strings.Contains(string(out), want) || !strings.Contains(string(out), "permanent error, not retried") {
			t.Errorf("output lacks %q and \"permanent error, not retried\":\n%s", want, out)
		}
	}
	retries := []string{"RETRY_COUNT=3"}

	t.Run("no batch initialised", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.NewDatabase(t)
		out, err := coordinatorCmd(cfg, retries, "run", "--batches", "1").CombinedOutput()
		check(t, out, err, "coordinator: the next batch (its window could not be read): permanent error, not retried: reading the latest batch: bot_logs is empty: initialise the database first")
	})
	t.Run("schema missing", func(t *testing.T) {
		t.Parallel()
		cfg := seeded(t)
		execSQL(t, cfg, `DROP TABLE bot_logs_statehash`)
		out, err := coordinatorCmd(cfg, retries, "run", "--batches", "1").CombinedOutput()
		check(t, out, err, `coordinator: batch 2024-06-01 00:00:00 - 2024-06-01 00:20:00: permanent error, not retried: committing the batch:`)
		if !strings.Contains(string(out), `relation "bot_logs_statehash" does not exist`) {
			t.Errorf("the cause is not named:\n%s", out)
		}
	})
	t.Run("permission denied", func(t *testing.T) {
		t.Parallel()
		cfg := seeded(t)
		role := "limited_" + cfg.DB
		execSQL(t, cfg, `CREATE ROLE `+role+` LOGIN`, `GRANT ALL ON ALL TABLES IN SCHEMA public TO `+role,
			`GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO `+role, `GRANT ALL ON SCHEMA public TO `+role,
			`REVOKE INSERT ON score_history FROM `+role)
		t.Cleanup(func() { execSQL(t, cfg, `DROP OWNED BY `+role); execSQL(t, pgtest.Server(t), `DROP ROLE `+role) })
		limited := cfg
		limited.User = role
		out, err := coordinatorCmd(limited, retries, "run", "--batches", "1").CombinedOutput()
		check(t, out, err, "permanent error, not retried: committing the batch:")
		if !strings.Contains(string(out), "permission denied for table score_history") {
			t.Errorf("the cause is not named:\n%s", out)
		}
		if n := committed(t, cfg); n != 0 {
			t.Errorf("%d batches committed", n)
		}
	})
}

// Issue 10 item 8: a malformed .env line used to be echoed (a password)
// with exit 1; it is now named by line and variable, value hidden, exit 2.
func TestMalformedDotEnvMasked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ file, want, secret string }{
		{"POSTGRES_HOST=db\nPOSTGRES_PASSWORD=\"hunter2 and more\nLOG_LEVEL=info\n",
			".env: line 2 (POSTGRES_PASSWORD): malformed value (value hidden; check its quotes)", "hunter2"},
		{"# comment\nPOSTGRES_HOST=db\nthis is junk s3cretjunk\n",
			".env: line 3 is malformed (no NAME=value; text hidden, it may hold a secret)", "s3cretjunk"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binary, "run")
		cmd.Dir, cmd.Env = dir, []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		if exitCode(err) != 2 || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), tc.secret) {
			t.Errorf("exit %d, want 2 with %q and without %q:\n%s", exitCode(err), tc.want, tc.secret, out)
		}
	}
}

// Issue 10 item 7: process-mode workers get an explicit environment (the
// verifier contract, PATH/HOME/TZ and WORKER_ENV_ALLOW), and every secret of
// the registry is masked in the log and in the alerts, even when a worker
// prints it.
func TestWorkerEnvironmentAndSecretMasking(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	hook := newSlackHook(t)
	const roPassword, hookSecret = "roS3cretPass", "XOXB0WEBHOOKTOKEN"
	script := `env | sed 's/^/ENV /'; echo "leaking ` + roPassword + ` and ` + hookSecret + `" >&2; exit 3`
	out, err := coordinatorCmd(cfg, []string{
		"WORKER_MODE=process", "WORKER_COMMAND=sh -c " + shellQuote(script) + " verifier", "RETRY_COUNT=0", "MINI_BATCH_NUMBER=1",
		"WEBHOOK_URL=" + hook.srv.URL + "/services/T000/B000/" + hookSecret, "POSTGRES_RO_USER=ro", "POSTGRES_RO_PASSWORD=" + roPassword,
		"UNRELATED_VARIABLE=must-not-pass", "MY_ALLOWED=passes", "WORKER_ENV_ALLOW=MY_ALLOWED",
	}, "run", "--batches", "1").CombinedOutput()
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1 (the worker fails):\n%s", exitCode(err), out)
	}
	log := string(out)
	for _, secret := range []string{roPassword, hookSecret} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds the secret %q:\n%s", secret, log)
		}
	}
	if !strings.Contains(log, "leaking *** and ***") {
		t.Errorf("the worker's line is not logged masked:\n%s", log)
	}
	var env []string
	for _, line := range strings.Split(log, "\n") {
		if i := strings.Index(line, `"line":"ENV `); i >= 0 {
			name, _, _ := strings.Cut(line[i+len(`"line":"ENV `):], "=")
			env = append(env, name)
		}
	}
	slices.Sort(env)
	for _, name := range []string{"PATH", "MY_ALLOWED", "POSTGRES_HOST", "START_TIMESTAMP", "END_TIMESTAMP", "AWS_ROLE_SESSION_NAME"} {
		if !slices.Contains(env, name) {
			t.Errorf("the worker lacks %s; it got %v", name, env)
		}
	}
	for _, name := range []string{"UNRELATED_VARIABLE", "WEBHOOK_URL", "POSTGRES_RO_PASSWORD", "POSTGRES_RO_USER", "IGNORE_APPLICATION_STATUS", "METRICS_ADDR"} {
		if slices.Contains(env, name) {
			t.Errorf("the worker got %s; it got %v", name, env)
		}
	}
	got := hook.received()
	if len(got) != 1 || !strings.Contains(got[0], "was abandoned after 1 attempt") || !strings.Contains(got[0], "leaking *** and ***") {
		t.Fatalf("alerts %q, want the abandoned batch with the worker's masked stderr", got)
	}
	for _, secret := range []string{roPassword, hookSecret} {
		if strings.Contains(got[0], secret) {
			t.Errorf("the alert holds the secret %q: %s", secret, got[0])
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
