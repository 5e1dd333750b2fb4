//go:build linux

package process

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts a child in its own process group, so that it and
// whatever it starts are signalled together, and has the kernel kill it
// should the coordinator die.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// awaitExit blocks until p has exited without reaping it (waitid with
// WNOWAIT), so that its process group can still be signalled safely. It
// reports whether it waited.
func awaitExit(p *os.Process) bool {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err == nil
		}
	}
}

// signalGroup sends sig to p's process group. A group that is already gone
// is not an error.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// BecomeSubreaper makes this process the child subreaper of its
// descendants (prctl PR_SET_CHILD_SUBREAPER): what a verifier started is
// reparented to the coordinator when the verifier exits, instead of to
// init, so the launcher kills and reaps it with the verifier's process
// group (reapGroup), and no zombie stays behind.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// reapGroup reaps this process's children left in process group pgid (a
// verifier's descendants reparented to the subreaper), killing those still
// running, and returns how many it reaped. It gives up after limit. Call it
// once the group's leader is reaped; a group with children of ours in it
// still exists, so signalling it cannot reach a process reusing its id.
func reapGroup(pgid int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	reaped := 0
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-pgid, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return reaped, nil // none (left)
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return reaped, fmt.Errorf("reaping process group %d: %w", pgid, err)
		case pid > 0:
			reaped++
			continue
		}
		if err := unix.Kill(-pgid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return reaped, fmt.Errorf("killing process group %d: %w", pgid, err)
		}
		if time.Now().After(deadline) {
			return reaped, fmt.Errorf("process group %d: children still running %v after SIGKILL", pgid, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// endEscapees kills and reaps the children of this process that no
// launcher started, with their process groups: as the subreaper, what
// verifiers started and moved out of their own process group (setsid),
// reparented to the coordinator. It returns their pids. Children a
// launcher started have their own process group too; any other child the
// coordinator runs (docker) stays in the coordinator's.
func endEscapees(limit time.Duration) []int {
	started.Lock()
	defer started.Unlock()
	me := uint64(os.Getpid())
	var ended []int
	for _, p := range processes(true) {
		if p.ppid != me || p.pgid != uint64(p.pid) || started.pids[p.pid] {
			continue
		}
		// Our child, not reaped: its group id cannot name anything else.
		_ = unix.Kill(-p.pid, unix.SIGKILL)
		var ws unix.WaitStatus
		for {
			if _, err := unix.Wait4(p.pid, &ws, 0, nil); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		_, _ = reapGroup(p.pid, limit)
		ended = append(ended, p.pid)
	}
	return ended
}
