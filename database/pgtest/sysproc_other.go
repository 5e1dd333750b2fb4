//go:build !linux

package pgtest

import "syscall"

// serverProcAttr puts initdb and the server in their own process group.
// Only Linux can have the kernel kill the server with the test process; on
// other systems a killed test run may leave a server behind (it is stopped
// with the test's cleanup otherwise).
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
