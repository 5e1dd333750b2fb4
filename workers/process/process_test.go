package process

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

func TestMain(m *testing.M) {
	if os.Getenv(childSwitch) == "1" {
		os.Exit(testChild(os.Args[1:]))
	}
	if os.Getenv(coordinatorSwitch) == "1" {
		os.Exit(testCoordinator())
	}
	os.Exit(m.Run())
}

var (
	batch = coordinator.Window{Start: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 6, 1, 0, 20, 0, 0, time.UTC)}
	now   = time.Date(2024, 6, 1, 0, 22, 30, 0, time.UTC)
)

// baseEnv is the coordinator's environment the children inherit.
var baseEnv = []string{childSwitch + "=1", "PATH=" + os.Getenv("PATH"), "UNRELATED=kept",
	"POSTGRES_PASSWORD=overridden", "JobName=overridden"}

// records collects log records; it is safe for concurrent use.
type records struct {
	mu   sync.Mutex
	recs []map[string]string
}

type recordHandler struct {
	r     *records
	attrs []slog.Attr
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recordHandler{r: h.r, attrs: append(slices.Clip(h.attrs), as...)}
}
func (h recordHandler) WithGroup(string) slog.Handler { return h }
func (h recordHandler) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{"msg": rec.Message, "level": rec.Level.String()}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	h.r.mu.Lock()
	h.r.recs = append(h.r.recs, m)
	h.r.mu.Unlock()
	return nil
}

func (r *records) where(f func(map[string]string) bool) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]string
	for _, m := range r.recs {
		if f(m) {
			out = append(out, m)
		}
	}
	return out
}

func (r *records) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, m := range r.recs {
		j, _ := json.Marshal(m)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// launcher returns a Launcher running the test child in mode with params.
func launcher(t *testing.T, extra map[string]string, mode string, params ...string) (*Launcher, *records) {
	t.Helper()
	env := map[string]string{
		"POSTGRES_HOST": "127.0.0.1", "POSTGRES_DB": "delegation", "POSTGRES_USER": "coord", "POSTGRES_PASSWORD": "pg-secret",
		"WORKER_MODE": "process", "IGNORE_APPLICATION_STATUS": "1",
		"WORKER_COMMAND": shellquote.Join(append([]string{os.Args[0], mode}, params...)...),
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	recs := &records{}
	l := New(cfg.WorkerOptions(), slog.New(recordHandler{r: recs}))
	l.Environ = baseEnv
	l.Grace = 2 * time.Second
	l.Now = func() time.Time { return now }
	// Parallel tests share one database key: each gets its own record of
	// process groups, or one test's start would end another's verifiers.
	l.GroupsDir = t.TempDir()
	return l, recs
}

// pids waits until n pid files are in dir and returns the pids.
func pids(t *testing.T, dir string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		if len(files) >= n {
			var out []int
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				pid, err := strconv.Atoi(string(b))
				if err != nil {
					continue // being written
				}
				out = append(out, pid)
			}
			if len(out) >= n {
				return out
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d children started", len(files), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireGone fails unless every pid is gone. A process re-parented to
// init may linger as a zombie until init reaps it: that counts as gone
// (it runs no more); the launcher's own children must be reaped.
func requireGone(t *testing.T, pids []int, zombieOK bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for {
			err := syscall.Kill(pid, 0)
			if errors.Is(err, syscall.ESRCH) {
				break
			}
			if zombieOK && isZombie(pid) {
				break
			}
			if time.Now().After(deadline) {
				state := "alive"
				if isZombie(pid) {
					state = "a zombie"
				}
				t.Fatalf("process %d is still %s", pid, state)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestParallelSuccess(t *testing.T) {
	t.Parallel()
	l, recs := launcher(t, nil, "sleep", "700ms")
	ev := &countEvents{}
	l.Events = ev
	began := time.Now()
	if err := l.Verify(context.Background(), batch, batch.Split(5)); err != nil {
		t.Fatalf("Verify: %v\n%s", err, recs.all())
	}
	if ev.started.Load() != 5 || ev.failed.Load() != 0 {
		t.Errorf("events: %d started, %d failed; want 5 and 0", ev.started.Load(), ev.failed.Load())
	}
	// Five children of 700ms each, one after the other, would take 3.5s.
	if took := time.Since(began); took > 2500*time.Millisecond {
		t.Errorf("5 children of 700ms took %v: not run in parallel", took)
	}
	launched := recs.where(func(m map[string]string) bool { return m["msg"] == "verifier launched" })
	finished := recs.where(func(m map[string]string) bool { return m["msg"] == "verifier finished" })
	if len(launched) != 5 || len(finished) != 5 {
		t.Fatalf("%d launched and %d finished records, want 5 and 5:\n%s", len(launched), len(finished), recs.all())
	}
	seen := map[string]bool{}
	for _, m := range recs.where(func(m map[string]string) bool { return m["msg"] == "verifier output" }) {
		if m["line"] != "done" || m["stream"] != "stdout" {
			t.Errorf("unexpected output record %v", m)
		}
		seen[m["mini_batch"]] = true
	}
	if len(seen) != 5 {
		t.Errorf("output of mini-batches %v, want 0-4", seen)
	}
	// Each launch names the command line, with START and END last.
	bounds := []string{"2024-06-01 00:00:00.0+0000", "2024-06-01 00:04:00.0+0000", "2024-06-01 00:08:00.0+0000",
		"2024-06-01 00:12:00.0+0000", "2024-06-01 00:16:00.0+0000", "2024-06-01 00:20:00.0+0000"}
	for _, m := range launched {
		i, _ := strconv.Atoi(m["mini_batch"])
		want := shellquote.Join(os.Args[0], "sleep", "700ms", bounds[i], bounds[i+1])
		if m["command"] != want {
			t.Errorf("launch %d logged command %q, want %q", i, m["command"], want)
		}
	}
}

func TestFailureFailsTheBatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, recs := launcher(t, nil, "failat", "2", "3", dir, "4")
	ev := &countEvents{}
	l.Events = ev
	began := time.Now()
	err := l.Verify(context.Background(), batch, batch.Split(5))
	if err == nil {
		t.Fatal("Verify succeeded although mini-batch 2 exited with status 3")
	}
	if ev.started.Load() != 5 || ev.failed.Load() != 1 {
		t.Errorf("events: %d started, %d failed; want 5 and 1 (the others were stopped, not failed)", ev.started.Load(), ev.failed.Load())
	}
	var we *WorkerError
	if !errors.As(err, &we) || we.Index != 2 || we.Of != 5 {
		t.Fatalf("error %v, want a WorkerError for mini-batch 2 of 5", err)
	}
	msg := err.Error()
	for _, want := range []string{"mini-batch 2 of 5", "local-validator-24-06-01-00-22-2", "2024-06-01 00:08:00.0+0000",
		"exit status 3", "error line 14: boom", "error line 5: boom"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "error line 4: boom") {
		t.Errorf("error quotes more than the last %d stderr lines: %s", stderrTail, msg)
	}
	// The other four were stopped and waited for.
	requireGone(t, pids(t, dir, 4), false)
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("took %v", took)
	}
	if n := len(recs.where(func(m map[string]string) bool { return m["msg"] == "verifier stopped" })); n != 4 {
		t.Errorf("%d stopped records, want 4:\n%s", n, recs.all())
	}
}

func TestTimeoutKillsTheBatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, _ := launcher(t, map[string]string{"WORKER_TIMEOUT": "1s"}, "hang", dir)
	ev := &countEvents{}
	l.Events = ev
	began := time.Now()
	err := l.Verify(context.Background(), batch, batch.Split(3))
	if !errors.Is(err, workers.ErrTimeout) {
		t.Fatalf("Verify: %v, want workers.ErrTimeout", err)
	}
	if ev.failed.Load() != 3 {
		t.Errorf("events: %d failed, want 3 timed out", ev.failed.Load())
	}
	if !strings.Contains(err.Error(), "mini-batches [0 1 2]") || !strings.Contains(err.Error(), "WORKER_TIMEOUT=1s") {
		t.Errorf("error: %v", err)
	}
	if took := time.Since(began); took < time.Second || took > 5*time.Second {
		t.Errorf("took %v, want about 1s", took)
	}
	requireGone(t, pids(t, dir, 3), false)
}

func TestCancellationKillsChildrenAndGrandchildren(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, _ := launcher(t, nil, "family", dir)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Verify(ctx, batch, batch.Split(3)) }()
	all := pids(t, dir, 6) // 3 children, 3 grandchildren
	began := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || !coordinator.IsShutdown(err) {
			t.Fatalf("Verify: %v, want a shutdown error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Verify did not return within 10s of the cancellation")
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("took %v to stop after the cancellation", took)
	}
	requireGone(t, all, true)
}

func TestStubbornChildGetsKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, recs := launcher(t, nil, "stubborn", dir)
	l.Grace = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Verify(ctx, batch, batch.Split(2)) }()
	all := pids(t, dir, 2)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Verify: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a child ignoring SIGTERM was not killed")
	}
	requireGone(t, all, false)
	if n := len(recs.where(func(m map[string]string) bool { return strings.Contains(m["msg"], "ignored SIGTERM") })); n != 2 {
		t.Errorf("%d 'ignored SIGTERM' records, want 2", n)
	}
}

func TestLargeOutput(t *testing.T) {
	t.Parallel()
	const size = 5 << 20
	for _, code := range []int{0, 7} {
		t.Run("exit"+strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			l, recs := launcher(t, nil, "spam", strconv.Itoa(size), strconv.Itoa(code))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// With one failing child, the other would be stopped mid-output.
			n := 2
			if code != 0 {
				n = 1
			}
			err := l.Verify(ctx, batch, batch.Split(n))
			if code == 0 && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if code != 0 && (err == nil || !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "spam done")) {
				t.Fatalf("Verify: %v, want exit status 7 with the stderr tail", err)
			}
			for i := range n {
				lines := recs.where(func(m map[string]string) bool {
					return m["msg"] == "verifier output" && m["stream"] == "stdout" && m["mini_batch"] == strconv.Itoa(i)
				})
				// Every line, then the 200 KiB unterminated one in 64 KiB pieces.
				if want := size/100 + 4; len(lines) != want {
					t.Fatalf("mini-batch %d: %d stdout records, want %d", i, len(lines), want)
				}
				for k := 0; k < size/100; k += 9973 {
					if !strings.HasPrefix(lines[k]["line"], strconv.Itoa(100000000 + k)[1:]) {
						t.Fatalf("mini-batch %d: record %d is %.20q", i, k, lines[k]["line"])
					}
				}
				if tail := lines[len(lines)-1]["line"]; tail != strings.Repeat("y", 200<<10-3*maxLine) {
					t.Errorf("mini-batch %d: last record has %d bytes", i, len(tail))
				}
			}
		})
	}
}

func TestEnvironmentAndArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	extra := map[string]string{
		"SUBMISSION_STORAGE": "CASSANDRA", "AWS_KEYSPACE": "bpu", "CASSANDRA_HOST": "localhost", "CASSANDRA_PORT": "9142",
		"CASSANDRA_USERNAME": "svc", "CASSANDRA_PASSWORD": "cass secret'\"", "SSL_CERTFILE": "/etc/ssl/keyspaces.crt",
		"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "aws-secret", "AWS_REGION": "us-west-2",
		"AWS_S3_BUCKET": "blocks", "NETWORK_NAME": "mainnet", "NO_CHECKS": "1", "AUTH_VOLUME_MOUNT_PATH": "/auth",
		"POSTGRES_PORT": "6543", "POSTGRES_SSLMODE": "disable",
	}
	l, recs := launcher(t, extra, "dump", dir)
	parts := batch.Split(3)
	if err := l.Verify(context.Background(), batch, parts); err != nil {
		t.Fatalf("Verify: %v\n%s", err, recs.all())
	}
	// The three mini-batches of 00:00-00:20, as the verifier's arguments
	// and as the original's BatchStart/BatchEnd (Python's str(datetime)).
	bounds := [][4]string{
		{"2024-06-01 00:00:00.0+0000", "2024-06-01 00:06:40.0+0000", "2024-06-01 00:00:00+00:00", "2024-06-01 00:06:40+00:00"},
		{"2024-06-01 00:06:40.0+0000", "2024-06-01 00:13:20.0+0000", "2024-06-01 00:06:40+00:00", "2024-06-01 00:13:20+00:00"},
		{"2024-06-01 00:13:20.0+0000", "2024-06-01 00:20:00.0+0000", "2024-06-01 00:13:20+00:00", "2024-06-01 00:20:00+00:00"},
	}
	for i := range parts {
		name := "local-validator-24-06-01-00-22-" + strconv.Itoa(i)
		raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var dump struct{ Env, Args []string }
		if err := json.Unmarshal(raw, &dump); err != nil {
			t.Fatal(err)
		}
		start, end := bounds[i][0], bounds[i][1]
		if want := []string{"dump", dir, start, end}; !slices.Equal(dump.Args, want) {
			t.Errorf("child %d arguments %q, want %q", i, dump.Args, want)
		}
		want := map[string]string{
			childSwitch: "1", "PATH": os.Getenv("PATH"), "UNRELATED": "kept",
			"AWS_ROLE_SESSION_NAME": name, "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-west-2",
			"AWS_S3_BUCKET": "blocks", "AWS_KEYSPACE": "bpu", "CASSANDRA_HOST": "127.0.0.1", "CASSANDRA_PORT": "9142",
			"CASSANDRA_USERNAME": "svc", "CASSANDRA_PASSWORD": "cass secret'\"", "SSL_CERTFILE": "/etc/ssl/keyspaces.crt",
			"AUTH_VOLUME_MOUNT_PATH": "/auth", "NETWORK_NAME": "mainnet", "START_TIMESTAMP": start, "END_TIMESTAMP": end,
			"NO_CHECKS": "1", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "aws-secret",
			"SUBMISSION_STORAGE": "CASSANDRA", "POSTGRES_HOST": "127.0.0.1", "POSTGRES_DB": "delegation",
			"POSTGRES_USER": "coord", "POSTGRES_PASSWORD": "pg-secret", "POSTGRES_PORT": "6543", "POSTGRES_SSLMODE": "disable",
			"JobName": name, "BatchStart": bounds[i][2], "BatchEnd": bounds[i][3],
			"LOG_FORMAT": "json", // verifiers log JSON, relayed as records
		}
		got := map[string]string{}
		for _, kv := range dump.Env {
			k, v, _ := strings.Cut(kv, "=")
			if _, dup := got[k]; dup {
				t.Errorf("child %d: %s set twice", i, k)
			}
			got[k] = v
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("child %d: %s = %q (set: %v), want %q", i, k, g, ok, v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("child %d: unexpected variable %s", i, k)
			}
		}
	}
	if got := PythonTime(parts[1].Start); got != "2024-06-01 00:06:40+00:00" {
		t.Errorf("BatchStart of mini-batch 1: %q", got)
	}
	// Secrets never reach the log.
	logs := recs.all()
	for _, secret := range []string{"pg-secret", "cass secret", "aws-secret", "AKIAEXAMPLE"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log shows %q", secret)
		}
	}
}

func TestSecretsMasked(t *testing.T) {
	t.Parallel()
	l, recs := launcher(t, nil, "echo", "--password=pg-secret")
	err := l.Verify(context.Background(), batch, batch.Split(1))
	if err == nil || !strings.Contains(err.Error(), "password is ***") {
		t.Fatalf("Verify: %v, want the failure with the masked stderr line", err)
	}
	if strings.Contains(err.Error(), "pg-secret") {
		t.Errorf("the error shows the password: %v", err)
	}
	logs := recs.all()
	if strings.Contains(logs, "pg-secret") {
		t.Errorf("the log shows the password:\n%s", logs)
	}
	if !strings.Contains(logs, "--password=\\\\*\\\\*\\\\*") && !strings.Contains(logs, "--password=***") {
		t.Errorf("the launch record does not show the masked argument:\n%s", logs)
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	l, _ := launcher(t, nil, "ok")
	l.Options.Command = "/nonexistent/verifier --flag"
	err := l.Verify(context.Background(), batch, batch.Split(2))
	if err == nil || !strings.Contains(err.Error(), "mini-batch 0") || !strings.Contains(err.Error(), "/nonexistent/verifier") {
		t.Fatalf("Verify: %v", err)
	}
	l.Options.Command = `verifier "unterminated`
	if err := l.Verify(context.Background(), batch, batch.Split(2)); err == nil || !strings.Contains(err.Error(), "WORKER_COMMAND") {
		t.Fatalf("Verify with a malformed WORKER_COMMAND: %v", err)
	}
}

func TestSpecs(t *testing.T) {
	l, _ := launcher(t, nil, "ok")
	l.Options.Command = `/opt/my\ verifier 'two words' --x="a b" plain`
	specs, err := l.Specs(batch.Split(2), "10.0.0.9", now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/opt/my verifier", "two words", "--x=a b", "plain", "2024-06-01 00:10:00.0+0000", "2024-06-01 00:20:00.0+0000"}
	if !slices.Equal(specs[1].Args, want) {
		t.Errorf("args %q, want %q", specs[1].Args, want)
	}
}

func TestDockerArgs(t *testing.T) {
	l, _ := launcher(t, map[string]string{"WORKER_IMAGE": "minaprotocol/delegation-verify", "WORKER_TAG": "2.0",
		"SSL_CERTFILE": "/certs/ca.crt", "NETWORK_NAME": "devnet"}, "ok")
	l.Options.Command = ""
	specs, err := l.Specs(batch.Split(1), "10.0.0.9", now)
	if err != nil {
		t.Fatal(err)
	}
	key := sha256.Sum256([]byte("127.0.0.1:5432/delegation"))
	me, _ := self()
	want := []string{"docker", "run", "--name", ProcessName(now, 0), "--label", fmt.Sprintf("uptime-coordinator-workers=%x", key[:8]),
		"--label", fmt.Sprintf("uptime-coordinator-owner=%d-%d", os.Getpid(), me.start), "--network", "host", "--rm", "-v", "/certs/ca.crt:/var/ssl/ssl-cert.crt",
		"-e", "CASSANDRA_HOST=10.0.0.9", "-e", "CASSANDRA_PORT", "-e", "CASSANDRA_USERNAME", "-e", "CASSANDRA_PASSWORD",
		"-e", "AWS_KEYSPACE", "-e", "AWS_ACCESS_KEY_ID", "-e", "AWS_SECRET_ACCESS_KEY", "-e", "AWS_DEFAULT_REGION",
		"-e", "AWS_S3_BUCKET", "-e", "AWS_REGION", "-e", "NETWORK_NAME=devnet", "-e", "NO_CHECKS",
		"-e", "SSL_CERTFILE=/var/ssl/ssl-cert.crt", "-e", "SUBMISSION_STORAGE=POSTGRES", "-e", "POSTGRES_HOST=127.0.0.1",
		"-e", "POSTGRES_DB=delegation", "-e", "POSTGRES_USER", "-e", "POSTGRES_PASSWORD", "-e", "POSTGRES_PORT",
		"-e", "POSTGRES_SSLMODE", "minaprotocol/delegation-verify:2.0", "2024-06-01 00:00:00.0+0000", "2024-06-01 00:20:00.0+0000"}
	if !slices.Equal(specs[0].Args, want) {
		t.Errorf("docker command\n%q\nwant\n%q", specs[0].Args, want)
	}
}

// Issue 10 item 11: stopping a docker run verifier (here: the timeout)
// removes its container, which the stopped client would leave running; a
// new launcher removes the containers of this database that dead
// coordinators left (no owner label: an older coordinator's), never those
// of a live one. A fake docker on PATH records what it is asked.
func TestDockerContainersRemoved(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "docker.log")
	me, _ := self()
	ps := "echo leftover1; echo 'leftover2 999999999-1'; echo 'live1 " + me.String() + "'"
	script := "#!/bin/sh\necho \"$@\" >> " + logFile + "\ncase \"$1\" in\n  run) exec sleep 300 ;;\n  ps) " + ps + " ;;\nesac\nexit 0\n"
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	l, _ := launcher(t, map[string]string{"WORKER_IMAGE": "verifier", "WORKER_TAG": "1", "WORKER_TIMEOUT": "1s"}, "ok")
	l.Options.Command = ""
	l.GroupsDir = filepath.Join(dir, "groups")
	err := l.Verify(t.Context(), batch, batch.Split(1))
	if err == nil {
		t.Fatal("Verify with a docker verifier that never ends: no error")
	}
	data, _ := os.ReadFile(logFile)
	key := sha256.Sum256([]byte("127.0.0.1:5432/delegation"))
	for _, want := range []string{
		fmt.Sprintf("ps -a --filter label=uptime-coordinator-workers=%x --format {{.ID}} {{.Label \"uptime-coordinator-owner\"}}\n", key[:8]),
		"rm -f leftover1 leftover2\n",
		"run --name " + ProcessName(now, 0) + " --label",
		"rm -f " + ProcessName(now, 0) + "\n",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("docker was not asked %q; it was asked:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), "live1") {
		t.Errorf("the container of a live coordinator was removed:\n%s", data)
	}
}

type countEvents struct{ started, failed atomic.Int64 }

func (c *countEvents) Started(mode string) {
	if mode == Mode {
		c.started.Add(1)
	}
}

func (c *countEvents) Failed(mode string) {
	if mode == Mode {
		c.failed.Add(1)
	}
}

func (c *countEvents) Retried(string) { panic("process mode never retries a worker") }
