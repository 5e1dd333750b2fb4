//go:build linux

package process

import (
	"errors"
	"os"
	"syscall"

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
