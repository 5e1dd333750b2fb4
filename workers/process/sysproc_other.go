//go:build !unix

package process

import (
	"errors"
	"os"
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func awaitExit(*os.Process) bool { return false }

// signalGroup kills p: without process groups or signals there is no
// graceful stop.
func signalGroup(p *os.Process, _ syscall.Signal) error {
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func killPid(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

// BecomeSubreaper is Linux-only.
func BecomeSubreaper() error { return errors.ErrUnsupported }

// reapGroup: without a subreaper no descendant of a verifier is our child.
func reapGroup(int, time.Duration) (int, error) { return 0, nil }

// endEscapees: without a subreaper no descendant of a verifier is our child.
func endEscapees(time.Duration) []int { return nil }
