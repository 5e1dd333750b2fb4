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
	"sync/atomic"
	"time"
)

// A coordinator killed with SIGKILL cannot stop its verifiers' process
// groups: the kernel kills each verifier (Pdeathsig), not what it started.
// So each launcher records its verifiers' process groups (and each leader's
// start time, against pid reuse) in a file of its own, named after its
// owner: the coordinator's pid and start time. The files of one database
// share a directory. Before it launches anything, a launcher ends the
// groups of every file whose owner is dead, and only those: a `reverify`
// next to a running `run` on the same database leaves the loop's verifiers
// alone.

// groupsDir is the directory of the process-group records of the
// launcher's database (one per database, so that coordinators of different
// databases on one host never touch each other's workers).
func (l *Launcher) groupsDir() string {
	if l.GroupsDir != "" {
		return l.GroupsDir
	}
	return filepath.Join(os.TempDir(), "uptime-coordinator-workers-"+l.groupsKey())
}

// groupsKey identifies the database the launcher verifies for.
func (l *Launcher) groupsKey() string {
	p := l.Options.Postgres
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s:%d/%s", p.Host, p.Port, p.DB)))
	return fmt.Sprintf("%x", sum[:8])
}

// owner identifies a process across pid reuse: its pid and start time
// (clock ticks after boot, /proc/<pid>/stat).
type owner struct {
	pid   int
	start uint64
}

func (o owner) String() string { return fmt.Sprintf("%d-%d", o.pid, o.start) }

// alive reports whether the process o still runs (a zombie does not).
func (o owner) alive() bool {
	s, ok := stat(o.pid)
	return ok && s.start == o.start && s.state != 'Z'
}

func parseOwner(s string) (owner, bool) {
	p, st, ok := strings.Cut(s, "-")
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(st, 10, 64)
	return owner{pid, start}, ok && err1 == nil && err2 == nil && pid > 0
}

// self is this process as an owner; false where /proc cannot tell (not
// Linux): nothing is recorded there.
func self() (owner, bool) {
	s, ok := stat(os.Getpid())
	return owner{os.Getpid(), s.start}, ok
}

// recordSeq numbers the group records of the launchers of this process.
var recordSeq atomic.Int64

// groupRecord is one launcher's record of its verifiers' process groups:
// the file <owner>-<n> in the database's directory.
type groupRecord struct{ path string }

func (l *Launcher) newRecord() *groupRecord {
	me, ok := self()
	if !ok {
		return &groupRecord{}
	}
	return &groupRecord{path: filepath.Join(l.groupsDir(), fmt.Sprintf("%s-%d", me, recordSeq.Add(1)))}
}

// add records a verifier's process group.
func (r *groupRecord) add(pgid int) error {
	s, ok := stat(pgid)
	if r.path == "" || !ok {
		return nil // nowhere to record, or already gone
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return fmt.Errorf("recording the verifier's process group: %w", err)
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("recording the verifier's process group: %w", err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%d %d\n", pgid, s.start); err != nil {
		return fmt.Errorf("recording the verifier's process group: %w", err)
	}
	return nil
}

// clear removes the record once every group it names is gone.
func (r *groupRecord) clear(log *slog.Logger) {
	if r.path == "" {
		return
	}
	if err := os.Remove(r.path); err != nil && !os.IsNotExist(err) {
		log.Warn("removing the verifier process group record", "file", r.path, "error", err)
	}
}

// endLeftovers kills every process still in a process group recorded in
// dir by a launcher whose process is dead (started no earlier than the
// group's leader), then removes that launcher's record.
func endLeftovers(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // nothing recorded
	}
	var procs []procInfo
	for _, e := range entries {
		name := e.Name()
		i := strings.LastIndexByte(name, '-')
		o, ok := parseOwner(name[:max(i, 0)])
		if !ok || o.alive() {
			continue
		}
		if procs == nil {
			procs = processes(false)
		}
		path := filepath.Join(dir, name)
		for _, g := range readGroups(path) {
			var left []int
			for _, p := range procs {
				if p.pgid == g.pgid && p.start >= g.start {
					left = append(left, p.pid)
				}
			}
			if len(left) == 0 {
				continue
			}
			log.Warn("ending what a verifier of a previous coordinator left running (the coordinator was killed)",
				"process_group", g.pgid, "pids", left, "coordinator_pid", o.pid)
			for _, pid := range left {
				killPid(pid)
			}
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			log.Warn("removing the verifier process group record", "file", path, "error", err)
		}
	}
}

type group struct{ pgid, start uint64 }

func readGroups(path string) []group {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var groups []group
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var g group
		if _, err := fmt.Sscan(sc.Text(), &g.pgid, &g.start); err == nil && g.pgid > 1 {
			groups = append(groups, g)
		}
	}
	return groups
}

type procInfo struct {
	pid int
	procStat
}

// processes lists the processes of /proc, zombies only when asked, with
// their parent, process group and start time (nothing where /proc does
// not exist).
func processes(zombies bool) []procInfo {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := []procInfo{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, ok := stat(pid); ok && (zombies || s.state != 'Z') {
			out = append(out, procInfo{pid, s})
		}
	}
	return out
}

// procStat is what /proc/<pid>/stat tells of a process.
type procStat struct {
	state             byte // R, S, D, Z...
	ppid, pgid, start uint64
}

// stat reads a process's state, group and start time from /proc/<pid>/stat.
func stat(pid int) (procStat, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// After the command: state ppid pgrp ... starttime is field 22 of stat.
	if len(fields) < 20 || fields[0] == "" {
		return procStat{}, false
	}
	ppid, err0 := strconv.ParseUint(fields[1], 10, 64)
	pgid, err1 := strconv.ParseUint(fields[2], 10, 64)
	start, err2 := strconv.ParseUint(fields[19], 10, 64)
	return procStat{state: fields[0][0], ppid: ppid, pgid: pgid, start: start}, err0 == nil && err1 == nil && err2 == nil
}

// Docker verifiers are labelled with the database (containerLabel) and
// their coordinator (ownerLabel), so that a coordinator removes the
// containers of dead coordinators of its database, and only those.
const (
	containerLabel = "uptime-coordinator-workers"
	ownerLabel     = "uptime-coordinator-owner"
)

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

// endLeftoverContainers removes the containers that dead coordinators'
// docker verifiers left for this database.
func (l *Launcher) endLeftoverContainers(ctx context.Context, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "label="+containerLabel+"="+l.groupsKey(),
		"--format", `{{.ID}} {{.Label "`+ownerLabel+`"}}`).Output()
	if err != nil {
		log.Warn("listing leftover verifier containers", "error", err)
		return
	}
	var ids []string
	for _, line := range strings.Split(string(out), "\n") {
		id, o, _ := strings.Cut(strings.TrimSpace(line), " ")
		if id == "" {
			continue
		}
		if own, ok := parseOwner(o); ok && own.alive() {
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) > 0 {
		log.Warn("removing verifier containers a previous coordinator left running (it was killed)", "containers", ids)
		removeContainers(ctx, log, ids...)
	}
}
