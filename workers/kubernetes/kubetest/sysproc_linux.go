package kubetest

import "syscall"

// sysProcAttr makes the kernel kill a control-plane process if the test
// binary dies without running its cleanups (for example on a panic or a test
// timeout), so no process outlives the test run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
