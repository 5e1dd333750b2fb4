// Command ready waits until a Cassandra node accepts a password login and
// answers a query. tools/cassandra/start.sh uses it to know when the test
// server is ready.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gocql/gocql"
)

func main() {
	host := flag.String("host", "127.0.0.1", "server address")
	port := flag.Int("port", 9042, "native transport port")
	user := flag.String("user", "cassandra", "user name")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait")
	flag.Parse()
	// The password comes from the environment so it stays out of ps output;
	// the test server's superuser has the default one.
	password := os.Getenv("CASSANDRA_READY_PASSWORD")
	if password == "" {
		password = "cassandra"
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := wait(ctx, *host, *port, *user, password); err != nil {
		fmt.Fprintln(os.Stderr, "ready:", err)
		os.Exit(1)
	}
}

func wait(ctx context.Context, host string, port int, user, password string) error {
	var last error
	for {
		if last = try(ctx, host, port, user, password); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s:%d not ready: %w", host, port, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func try(ctx context.Context, host string, port int, user, password string) error {
	c := gocql.NewCluster(host)
	c.Port = port
	c.ProtoVersion = 4
	c.ConnectTimeout = 5 * time.Second
	c.Timeout = 5 * time.Second
	c.DisableInitialHostLookup = true
	c.Authenticator = gocql.PasswordAuthenticator{Username: user, Password: password}
	s, err := c.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var v string
	if err := s.Query("SELECT release_version FROM system.local").WithContext(ctx).Scan(&v); err != nil {
		return err
	}
	return nil
}
