// Package cassandratest gives tests a real Apache Cassandra. A test package
// calls Main from its TestMain; each test then asks for its own keyspace
// (NewKeyspace), which holds the collector's submissions table and is dropped
// when the test ends.
//
// The server is chosen by the environment:
//
//   - CASSANDRA_TEST_HOST (and CASSANDRA_TEST_PORT, default 9042): a running
//     server, e.g. one started by tools/cassandra/start.sh (source the env
//     file it writes). CASSANDRA_TEST_USERNAME / CASSANDRA_TEST_PASSWORD
//     (default cassandra / cassandra) must be allowed to create keyspaces;
//     CASSANDRA_TEST_CA names the CA of the server's TLS certificate when the
//     server accepts TLS.
//   - CASSANDRA_TESTS=1 without CASSANDRA_TEST_HOST: Main starts a throwaway
//     server with tools/cassandra/start.sh on free ports (about 15 s and
//     1.5 GB of memory; the first run also downloads Cassandra with Maven)
//     and stops it when the tests end.
//   - neither: the tests skip, saying how to enable them.
//
// Once enabled, a server that cannot be started or reached fails the tests.
package cassandratest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/cassandra"
	"github.com/delegation-program/uptime-coordinator/internal/porttest"
)

// SkipMessage is what a skipped test says.
const SkipMessage = "Cassandra tests are off: set CASSANDRA_TESTS=1 to start a throwaway Cassandra 5.0 " +
	"(needs java and mvn; ~15 s, ~1.5 GB RAM) or CASSANDRA_TEST_HOST to use a running one; see tools/cassandra/README.md"

// TableCQL creates the collector's submissions table in keyspace %s, as the
// collector's migration does.
const TableCQL = `CREATE TABLE %s.submissions (
	submitted_at_date text,
	shard int,
	submitted_at timestamp,
	submitter text,
	created_at timestamp,
	block_hash text,
	raw_block blob,
	remote_addr text,
	peer_id text,
	snark_work blob,
	graphql_control_port int,
	built_with_commit_sha text,
	state_hash text,
	parent text,
	height int,
	slot int,
	validation_error text,
	verified boolean,
	PRIMARY KEY ((submitted_at_date, shard), submitted_at, submitter)
)`

// Server is the test server's address and superuser.
type Server struct {
	Host               string
	Port               int
	Username, Password string
	CAFile             string // "" when the server has no TLS
}

var (
	server   Server
	enabled  bool
	setupErr error
	stop     func()

	adminOnce sync.Once
	admin     *gocql.Session
	adminErr  error
)

// Main prepares the server, runs the package's tests and stops what it
// started. Use it as: func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }.
func Main(m *testing.M) int { return MainFunc(m.Run) }

// MainFunc is Main for a run function, so that harnesses compose:
// pgtest.MainFunc(func() int { return cassandratest.MainFunc(m.Run) }).
func MainFunc(run func() int) int {
	setupErr = setup()
	code := run()
	if admin != nil {
		admin.Close()
	}
	if stop != nil {
		stop()
	}
	return code
}

func setup() error {
	opts, err := config.LoadTests(config.Environment)
	if err != nil {
		return err
	}
	if opts.CassandraHost != "" {
		enabled = true
		server = Server{Host: opts.CassandraHost, Port: opts.CassandraPort, Username: opts.CassandraUsername,
			Password: opts.CassandraPassword, CAFile: opts.CassandraCA}
		return nil
	}
	if !opts.Cassandra {
		return nil
	}
	enabled = true
	return start()
}

// start runs tools/cassandra/start.sh on free ports in a temporary directory.
func start() error {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return errors.New("cannot locate tools/cassandra/start.sh")
	}
	root := filepath.Join(filepath.Dir(self), "..", "..", "..")
	script := filepath.Join(root, "tools", "cassandra", "start.sh")
	ports, err := porttest.Free(2)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cassandratest-")
	if err != nil {
		return fmt.Errorf("creating the server directory: %w", err)
	}
	cmd := exec.Command(script, "--port", strconv.Itoa(ports[0]), "--storage-port", strconv.Itoa(ports[1]), "--dir", dir)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	stop = func() {
		out, err := exec.Command(filepath.Join(root, "tools", "cassandra", "stop.sh"), "--dir", dir, "--purge").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "cassandratest: stopping the server: %v\n%s", err, out)
		}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s failed: %w (it needs java 17 and mvn with access to Maven Central)", script, err)
	}
	server = Server{Host: "127.0.0.1", Port: ports[0], Username: "cassandra", Password: "cassandra", CAFile: filepath.Join(dir, "ca.pem")}
	return nil
}

// Require skips the test when Cassandra tests are off and fails it when they
// are on but the server is unusable.
func Require(t testing.TB) Server {
	t.Helper()
	if !enabled {
		t.Skip(SkipMessage)
	}
	if setupErr != nil {
		t.Fatalf("Cassandra test server: %v", setupErr)
	}
	return server
}

// Admin returns a session of the superuser, shared by the package's tests.
func Admin(t testing.TB) *gocql.Session {
	t.Helper()
	srv := Require(t)
	adminOnce.Do(func() {
		c := gocql.NewCluster(srv.Host)
		c.Port = srv.Port
		c.ProtoVersion = 4
		c.Consistency = gocql.One
		c.Timeout = 30 * time.Second
		c.ConnectTimeout = 10 * time.Second
		c.Authenticator = gocql.PasswordAuthenticator{Username: srv.Username, Password: srv.Password}
		admin, adminErr = c.CreateSession()
	})
	if adminErr != nil {
		t.Fatalf("connecting to the Cassandra test server %s:%d: %v", srv.Host, srv.Port, adminErr)
	}
	return admin
}

// NewKeyspace creates a fresh keyspace (SimpleStrategy, RF 1) holding the
// collector's submissions table and returns settings for it with password
// authentication. The keyspace is dropped when the test ends.
func NewKeyspace(t testing.TB) config.Cassandra {
	t.Helper()
	s := Admin(t)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ks := "uc_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if err := s.Query("CREATE KEYSPACE " + ks + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").WithContext(ctx).Exec(); err != nil {
		t.Fatalf("creating keyspace %s: %v", ks, err)
	}
	t.Cleanup(func() {
		if err := s.Query("DROP KEYSPACE IF EXISTS " + ks).WithContext(context.Background()).Exec(); err != nil {
			t.Errorf("dropping keyspace %s: %v", ks, err)
		}
	})
	if err := s.Query(fmt.Sprintf(TableCQL, ks)).WithContext(ctx).Exec(); err != nil {
		t.Fatalf("creating %s.submissions: %v", ks, err)
	}
	srv := server
	return config.Cassandra{Keyspace: ks, Host: srv.Host, Port: srv.Port, Username: srv.Username, Password: srv.Password, VerifyHost: true}
}

// Insert writes submissions as the collector does, with the shard computed
// from SubmittedAt and, when SubmittedAtDate is zero, the date of
// SubmittedAt. The verifier's columns are written too.
func Insert(t testing.TB, cfg config.Cassandra, subs ...coordinator.Submission) {
	t.Helper()
	s := Admin(t)
	q := "INSERT INTO " + cfg.Keyspace + ".submissions (submitted_at_date, shard, submitted_at, submitter, created_at, block_hash, " +
		"remote_addr, peer_id, snark_work, graphql_control_port, built_with_commit_sha, state_hash, parent, height, slot, " +
		"validation_error, verified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	const batch = 64
	for i := 0; i < len(subs); i += batch {
		var wg sync.WaitGroup
		errs := make([]error, min(batch, len(subs)-i))
		for j := range errs {
			sub := subs[i+j]
			wg.Go(func() {
				date := cassandra.PartitionDate(sub.SubmittedAt)
				if !sub.SubmittedAtDate.IsZero() {
					date = sub.SubmittedAtDate.Format(cassandra.DateLayout)
				}
				errs[j] = s.Query(q, date, cassandra.Shard(sub.SubmittedAt), sub.SubmittedAt, sub.Submitter, sub.CreatedAt,
					sub.BlockHash, sub.RemoteAddr, sub.PeerID, sub.SnarkWork, sub.GraphQLControlPort, sub.BuiltWithCommitSHA,
					sub.StateHash, sub.Parent, sub.Height, sub.Slot, sub.ValidationError, sub.Verified).Exec()
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("inserting submissions: %v", err)
		}
	}
}

// All returns every row of the table, in no particular order, read by a
// full scan that ignores partitions: the reference the reader is checked
// against.
func All(t testing.TB, cfg config.Cassandra) []coordinator.Submission {
	t.Helper()
	s := Admin(t)
	iter := s.Query("SELECT submitted_at_date, submitted_at, submitter, created_at, block_hash, remote_addr, peer_id, " +
		"snark_work, graphql_control_port, built_with_commit_sha, state_hash, parent, height, slot, validation_error, verified FROM " +
		cfg.Keyspace + ".submissions").Iter()
	var out []coordinator.Submission
	for {
		var (
			sub  coordinator.Submission
			date string
		)
		if !iter.Scan(&date, &sub.SubmittedAt, &sub.Submitter, &sub.CreatedAt, &sub.BlockHash, &sub.RemoteAddr, &sub.PeerID,
			&sub.SnarkWork, &sub.GraphQLControlPort, &sub.BuiltWithCommitSHA, &sub.StateHash, &sub.Parent, &sub.Height,
			&sub.Slot, &sub.ValidationError, &sub.Verified) {
			break
		}
		d, err := time.Parse(cassandra.DateLayout, date)
		if err != nil {
			t.Fatalf("row with submitted_at_date %q: %v", date, err)
		}
		sub.SubmittedAtDate = d
		out = append(out, sub)
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("scanning %s.submissions: %v", cfg.Keyspace, err)
	}
	return out
}

// TLS returns cfg with TLS on, trusting the server's CA. It skips the test,
// saying why, when the server was not given a CA (CASSANDRA_TEST_CA).
func TLS(t testing.TB, cfg config.Cassandra) config.Cassandra {
	t.Helper()
	srv := Require(t)
	if srv.CAFile == "" {
		t.Skip("the Cassandra test server has no TLS: set CASSANDRA_TEST_CA to the CA of its certificate " +
			"(tools/cassandra/start.sh writes it as ca.pem and exports it in its env file)")
	}
	cfg.SSLCertFile = srv.CAFile
	return cfg
}

// String describes the server for logs.
func (s Server) String() string {
	tls := "no TLS"
	if s.CAFile != "" {
		tls = "TLS CA " + s.CAFile
	}
	return strings.Join([]string{net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), tls}, ", ")
}
