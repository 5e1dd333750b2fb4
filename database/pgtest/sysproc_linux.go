//go:build linux

package pgtest

import "syscall"

// serverProcAttr puts initdb and the server in their own process group and
// has the kernel kill the server should the test process die.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
