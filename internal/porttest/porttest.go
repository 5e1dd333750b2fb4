// Package porttest finds free TCP ports on 127.0.0.1 for the servers tests
// start (PostgreSQL, Cassandra, kube-apiserver, the coordinator's metrics
// listener) or for an address where nothing listens. Every test and test
// harness that needs a port number takes it from here.
package porttest

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

// Free returns n distinct TCP ports on 127.0.0.1 that were free a moment
// ago. All listeners are held open until every port is chosen, so the ports
// are distinct; another process may still take one before the caller binds
// it, which the servers' own start-up errors report.
func Free(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Port returns one free port, failing t when there is none.
func Port(t testing.TB) int {
	t.Helper()
	ports, err := Free(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// Addr returns "127.0.0.1:<port>" with a free port, failing t when there is
// none.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}
