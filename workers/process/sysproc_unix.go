//go:build unix && !linux

package process

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// sysProcAttr puts a child in its own process group, so that it and
// whatever it starts are signalled together.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// awaitExit cannot wait without reaping here; the group is signalled only
// until the child is reaped.
func awaitExit(*os.Process) bool { return false }

// signalGroup sends sig to p's process group. A group that is already gone
// is not an error.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// BecomeSubreaper is Linux-only.
func BecomeSubreaper() error { return errors.ErrUnsupported }

// reapGroup: without a subreaper no descendant of a verifier is our child.
func reapGroup(int, time.Duration) (int, error) { return 0, nil }

// endEscapees: without a subreaper no descendant of a verifier is our child.
func endEscapees(time.Duration) []int { return nil }
