//go:build linux

package process

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"
)

// startCoordinator starts testCoordinator in a process of its own: a
// subreaper running one verifier, mode with its params, recording its
// process groups in groups.
// Its output goes to a file; the returned function reads it.
func startCoordinator(t *testing.T, groups string, mode string, params ...string) (*exec.Cmd, func() string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{coordinatorSwitch + "=1", "PATH=" + os.Getenv("PATH"), "PROCESS_TEST_GROUPS=" + groups,
		"PROCESS_TEST_COMMAND=" + shellquote.Join(append([]string{os.Args[0], mode}, params...)...)}
	f, err := os.Create(filepath.Join(t.TempDir(), "coordinator.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := func() string {
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("the other coordinator's output:\n%s", out())
		}
	})
	return cmd, out
}

// readPid waits for the pid file name in dir.
func readPid(t *testing.T, dir, name string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil {
				t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// batchDone waits until the coordinator started by startCoordinator
// verified its batch, and requires that it succeeded and that the
// coordinator runs on.
func batchDone(t *testing.T, coord *exec.Cmd, out func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out(), "verified:") {
		if time.Now().After(deadline) {
			t.Fatal("the coordinator did not finish its batch")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out(), "verified: <nil>") {
		t.Fatalf("the batch failed:\n%s", out())
	}
	if !running(coord.Process.Pid) {
		t.Fatal("the coordinator is gone: nothing to test")
	}
}

// running reports whether pid runs (not a zombie).
func running(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !isZombie(pid)
}

// Issue 10 item 11: with the coordinator the subreaper, what a verifier
// started (here a child that ignores SIGTERM, left behind when the
// verifier exits 0) is reparented to the coordinator, killed with the
// verifier's process group and reaped: no process and no zombie is left
// while the coordinator runs on.
func TestSubreaperReapsWhatAWorkerLeft(t *testing.T) {
	t.Parallel()
	pidDir := t.TempDir()
	coord, out := startCoordinator(t, t.TempDir(), "orphan", pidDir)
	grandchild := readPid(t, pidDir, "0-grandchild.pid")
	batchDone(t, coord, out)
	if err := syscall.Kill(grandchild, 0); !errors.Is(err, syscall.ESRCH) {
		state := "running"
		if isZombie(grandchild) {
			state = "a zombie nobody reaped"
		}
		t.Errorf("the verifier's child %d is %s after the batch", grandchild, state)
	}
	reaped := false
	for _, line := range strings.Split(out(), "\n") {
		reaped = reaped || strings.Contains(line, `"msg":"reaped what the verifier left in its process group"`) && strings.HasSuffix(line, `"processes":1}`)
	}
	if !reaped {
		t.Errorf("the coordinator did not reap the verifier's child itself (not the subreaper?):\n%s", out())
	}
}

// With the coordinator the subreaper, what a verifier started in a session
// of its own (out of the verifier's process group) is reparented to the
// coordinator when the verifier exits: the launcher ends and reaps it after
// the batch.
func TestSubreaperEndsWhatLeftTheGroup(t *testing.T) {
	t.Parallel()
	pidDir := t.TempDir()
	coord, out := startCoordinator(t, t.TempDir(), "escapee", pidDir)
	escapee := readPid(t, pidDir, "0-grandchild.pid")
	batchDone(t, coord, out)
	if err := syscall.Kill(escapee, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("what the verifier started in a session of its own (%d) is still there (zombie: %v)", escapee, isZombie(escapee))
	}
	if want := `"msg":"ended what verifiers left running outside their process groups"`; !strings.Contains(out(), want) ||
		!strings.Contains(out(), `"pids":[`+strconv.Itoa(escapee)+`]`) {
		t.Errorf("the coordinator does not report ending %d:\n%s", escapee, out())
	}
}

// Issue 10 item 11: a second launcher on the same database (a reverify
// next to a running loop) leaves the first one's live verifiers alone;
// once the first coordinator is killed (SIGKILL: its verifier dies with
// it, the verifier's child that ignores SIGTERM lives on), the next
// launcher ends that child.
func TestLeftoversOfLiveCoordinatorsAreKept(t *testing.T) {
	t.Parallel()
	groups, pidDir := t.TempDir(), t.TempDir()
	first, _ := startCoordinator(t, groups, "stubbornfamily", pidDir)
	worker := readPid(t, pidDir, "0.pid")
	grandchild := readPid(t, pidDir, "0-grandchild.pid")

	second, recs := launcher(t, nil, "ok")
	second.GroupsDir = groups
	if err := second.Verify(t.Context(), batch, batch.Split(2)); err != nil {
		t.Fatalf("the second launcher's Verify: %v\n%s", err, recs.all())
	}
	if !running(worker) || !running(grandchild) {
		t.Fatalf("the second launcher ended the live coordinator's verifier (%v) or its child (%v)", running(worker), running(grandchild))
	}
	if left := recs.where(func(m map[string]string) bool { return strings.HasPrefix(m["msg"], "ending what a verifier") }); len(left) > 0 {
		t.Errorf("the second launcher ended something: %v", left)
	}

	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	requireGone(t, []int{worker}, true) // the parent-death signal
	time.Sleep(200 * time.Millisecond)
	if !running(grandchild) {
		t.Fatal("the verifier's child died with the coordinator: nothing left to test")
	}

	third, recs := launcher(t, nil, "ok")
	third.GroupsDir = groups
	if err := third.Verify(t.Context(), batch, batch.Split(1)); err != nil {
		t.Fatalf("the restarted launcher's Verify: %v\n%s", err, recs.all())
	}
	requireGone(t, []int{grandchild}, true)
	ended := recs.where(func(m map[string]string) bool {
		return m["msg"] == "ending what a verifier of a previous coordinator left running (the coordinator was killed)" &&
			m["pids"] == "["+strconv.Itoa(grandchild)+"]" && m["coordinator_pid"] == strconv.Itoa(first.Process.Pid)
	})
	if len(ended) != 1 {
		t.Errorf("the restart does not report ending %d of coordinator %d:\n%s", grandchild, first.Process.Pid, recs.all())
	}
	if files, _ := os.ReadDir(groups); len(files) != 0 {
		t.Errorf("records left in %s: %v", groups, files)
	}
}
