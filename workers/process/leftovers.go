package process

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A coordinator killed with SIGKILL cannot stop its verifiers' process
// groups: the kernel kills each verifier (Pdeathsig), not what it started.
// So the launcher records each verifier's process group (and its leader's
// start time, against pid reuse) in a file of its own, and the next
// coordinator on the same database ends what is left of them before it
// launches anything.

// groupsFile is where the launcher records its verifiers' process groups:
// one file per database, so that coordinators of different databases on
// one host never touch each other's workers.
func (l *Launcher) groupsFile() string {
	if l.GroupsFile != "" {
		return l.GroupsFile
	}
	return filepath.Join(os.TempDir(), "uptime-coordinator-workers-"+l.groupsKey())
}

// groupsKey identifies the database the launcher verifies for.
func (l *Launcher) groupsKey() string {
	p := l.Options.Postgres
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s:%d/%s", p.Host, p.Port, p.DB)))
	return fmt.Sprintf("%x", sum[:8])
}

// containerLabel marks the docker containers of a database's verifiers.
const containerLabel = "uptime-coordinator-workers"

// removeContainers force-removes docker containers (names or ids): a
// stopped or killed docker client leaves its container running.
func removeContainers(ctx context.Context, log *slog.Logger, ids ...string) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f"}, ids...)...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such container") {
		log.Warn("removing verifier containers", "containers", ids, "error", err, "output", strings.TrimSpace(string(out)))
	}
}

// endLeftoverContainers removes the containers a killed coordinator's
// docker verifiers left for this database.
func (l *Launcher) endLeftoverContainers(ctx context.Context, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+containerLabel+"="+l.groupsKey()).Output()
	if err != nil {
		log.Warn("listing leftover verifier containers", "error", err)
		return
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		log.Warn("removing verifier containers a previous coordinator left running (it was killed)", "containers", ids)
		removeContainers(ctx, log, ids...)
	}
}

// recordGroup appends a verifier's process group to the file.
func recordGroup(path string, pgid int) error {
	start, ok := startTime(pgid)
	if !ok {
		return nil // already gone
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("recording the verifier's process group: %w", err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%d %d\n", pgid, start); err != nil {
		return fmt.Errorf("recording the verifier's process group: %w", err)
	}
	return nil
}

// endLeftovers kills every process still in a process group the file
// records (started no earlier than its leader), then empties the file.
func endLeftovers(path string, log *slog.Logger) {
	f, err := os.Open(path)
	if err != nil {
		return // nothing recorded
	}
	type group struct{ pgid, start uint64 }
	var groups []group
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var g group
		if _, err := fmt.Sscan(sc.Text(), &g.pgid, &g.start); err == nil && g.pgid > 1 {
			groups = append(groups, g)
		}
	}
	f.Close()
	for _, g := range groups {
		var left []int
		for _, p := range processes() {
			if p.pgid == g.pgid && p.start >= g.start {
				left = append(left, p.pid)
			}
		}
		if len(left) == 0 {
			continue
		}
		log.Warn("ending what a verifier of a previous coordinator left running (the coordinator was killed)",
			"process_group", g.pgid, "pids", left)
		for _, pid := range left {
			killPid(pid)
		}
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		log.Warn("removing the verifier process group record", "file", path, "error", err)
	}
}

type procInfo struct {
	pid         int
	pgid, start uint64
}

// processes lists the processes of /proc with their process group and
// start time (nothing where /proc does not exist).
func processes() []procInfo {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pgid, start, ok := stat(pid); ok {
			out = append(out, procInfo{pid: pid, pgid: pgid, start: start})
		}
	}
	return out
}

func startTime(pid int) (uint64, bool) {
	_, start, ok := stat(pid)
	return start, ok
}

// stat reads a process's group and start time from /proc/<pid>/stat.
func stat(pid int) (pgid, start uint64, ok bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// After the command: state ppid pgrp ... starttime is field 22 of stat.
	if len(fields) < 20 {
		return 0, 0, false
	}
	pgid, err1 := strconv.ParseUint(fields[2], 10, 64)
	start, err2 := strconv.ParseUint(fields[19], 10, 64)
	return pgid, start, err1 == nil && err2 == nil
}
