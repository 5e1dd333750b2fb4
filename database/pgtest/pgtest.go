// Package pgtest gives tests a real PostgreSQL. A test package calls Main
// from its TestMain; each test then asks for its own database (NewDatabase,
// migrated, or NewEmptyDatabase) so tests run in parallel without sharing
// state.
//
// The server is the one TEST_DATABASE_URL points at, else the one the
// POSTGRES_* variables point at, else a throwaway cluster started from the
// system's initdb and postgres binaries (on PATH or under
// /usr/lib/postgresql/*/bin) in a temporary directory on a free port, stopped
// when the tests end. When none of these exists, the tests fail with a message
// that says what to install: they never skip silently.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/porttest"
)

// InstallHint tells a developer how to get a PostgreSQL server for the tests.
const InstallHint = "install the PostgreSQL server (Debian/Ubuntu: apt-get install -y postgresql) " +
	"or point TEST_DATABASE_URL at a server where the user may create databases"

var (
	server     config.Postgres // DB is the maintenance database
	template   string
	setupErr   error
	createMu   sync.Mutex // CREATE DATABASE ... TEMPLATE needs the template unused
	dbCounter  atomic.Int64
	stopServer func()
)

// Main prepares the server, runs the package's tests and tears down what it
// started. Use it as: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int { return MainFunc(m.Run) }

// MainFunc is Main for a run function, so that harnesses compose:
// pgtest.MainFunc(func() int { return cassandratest.MainFunc(m.Run) }).
func MainFunc(run func() int) int {
	setupErr = setup()
	code := run()
	teardown()
	return code
}

// Server returns the connection settings of the test server's maintenance
// database, for tests of server-level tasks (creating and dropping databases).
func Server(t testing.TB) config.Postgres {
	t.Helper()
	requireServer(t)
	return server
}

// NewDatabase creates a fresh database with the coordinator's schema migrated
// and returns its settings. It is dropped when the test ends.
func NewDatabase(t testing.TB) config.Postgres {
	t.Helper()
	requireServer(t)
	return newDatabase(t, template)
}

// NewEmptyDatabase creates a fresh database without any schema.
func NewEmptyDatabase(t testing.TB) config.Postgres {
	t.Helper()
	requireServer(t)
	return newDatabase(t, "template0")
}

// Pool opens a pool on cfg's database, closed when the test ends.
func Pool(t testing.TB, cfg config.Postgres) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Open(context.Background(), cfg.ConnString(""))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Env returns cfg as the POSTGRES_* environment variables of the coordinator.
func Env(cfg config.Postgres) []string {
	env := []string{
		"POSTGRES_HOST=" + cfg.Host,
		"POSTGRES_PORT=" + strconv.Itoa(cfg.Port),
		"POSTGRES_DB=" + cfg.DB,
		"POSTGRES_USER=" + cfg.User,
		"POSTGRES_PASSWORD=" + cfg.Password,
	}
	if cfg.SSLMode != "" {
		env = append(env, "POSTGRES_SSLMODE="+cfg.SSLMode)
	}
	return env
}

func requireServer(t testing.TB) {
	t.Helper()
	if setupErr != nil {
		t.Fatalf("pgtest: no PostgreSQL for the tests: %v", setupErr)
	}
	if template == "" {
		t.Fatal("pgtest: not initialised; the test package needs: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
	}
}

// CloneDatabase creates a copy of src's database (schema and rows), dropped
// when the test ends, and returns its settings. Nothing may be connected to
// src while it is copied: close its pools first. On PostgreSQL 15 and later
// the files are copied (STRATEGY FILE_COPY), which for a large database is
// much faster than the default of writing the copy through the WAL.
func CloneDatabase(t testing.TB, src config.Postgres) config.Postgres {
	t.Helper()
	requireServer(t)
	return newDatabaseFrom(t, src.DB, true)
}

func newDatabase(t testing.TB, tmpl string) config.Postgres {
	t.Helper()
	return newDatabaseFrom(t, tmpl, false)
}

// newDatabaseFrom creates a database from tmpl; copyFiles asks for
// STRATEGY FILE_COPY where the server has it (15 and later): a checkpoint,
// then a file copy, instead of the default WAL_LOG that is faster for
// small templates.
func newDatabaseFrom(t testing.TB, tmpl string, copyFiles bool) config.Postgres {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("pgtest_%d_%d", os.Getpid(), dbCounter.Add(1))
	conn, err := pgx.Connect(ctx, server.ConnString(""))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{tmpl}.Sanitize()
	if copyFiles {
		var hasStrategy bool
		if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int >= 150000`).Scan(&hasStrategy); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if hasStrategy {
			create += " STRATEGY FILE_COPY"
		}
	}
	createMu.Lock()
	_, err = conn.Exec(ctx, create)
	createMu.Unlock()
	if err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(name) })
	cfg := server
	cfg.DB = name
	return cfg
}

func dropDatabase(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server.ConnString(""))
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func setup() error {
	opts, err := config.LoadTests(config.Environment)
	if err != nil {
		return err
	}
	switch {
	case opts.DatabaseURL != "":
		server, err = fromURL(opts.DatabaseURL)
	case lookupSet("POSTGRES_HOST"):
		server, err = fromPostgresEnv()
	default:
		server, stopServer, err = startCluster(opts.Durable)
	}
	if err != nil {
		return err
	}
	ctx := context.Background()
	template = fmt.Sprintf("pgtest_template_%d", os.Getpid())
	conn, err := pgx.Connect(ctx, server.ConnString(""))
	if err != nil {
		return fmt.Errorf("connecting to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{template}.Sanitize()); err != nil {
		return fmt.Errorf("creating the template database: %w", err)
	}
	tcfg := server
	tcfg.DB = template
	pool, err := postgres.Open(ctx, tcfg.ConnString(""))
	if err != nil {
		return fmt.Errorf("connecting to the template database: %w", err)
	}
	defer pool.Close() // before the template is used: it must have no session
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrating the template database: %w", err)
	}
	return nil
}

func teardown() {
	if template != "" && setupErr == nil {
		dropDatabase(template)
	}
	if stopServer != nil {
		stopServer()
	}
}

func fromURL(raw string) (config.Postgres, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return config.Postgres{}, fmt.Errorf("TEST_DATABASE_URL: %w", err)
	}
	u, _ := url.Parse(raw)
	sslmode := ""
	if u != nil {
		sslmode = u.Query().Get("sslmode")
	}
	return config.Postgres{Host: cfg.Host, Port: int(cfg.Port), DB: cfg.Database, User: cfg.User, Password: cfg.Password, SSLMode: sslmode}, nil
}

func lookupSet(name string) bool {
	v, _ := config.Environment(name)
	return v != ""
}

// fromPostgresEnv is the server the POSTGRES_* variables point at, read by
// the configuration's loader; the tests create their databases from its
// postgres database, whatever POSTGRES_DB says.
func fromPostgresEnv() (config.Postgres, error) {
	cfg, err := config.LoadPostgres(func(name string) (string, bool) {
		if name == "POSTGRES_DB" {
			return "postgres", true
		}
		return config.Environment(name)
	})
	if err != nil {
		return config.Postgres{}, fmt.Errorf("the server POSTGRES_* point at: %w", err)
	}
	return config.Postgres{Host: cfg.Host, Port: cfg.Port, DB: "postgres", User: cfg.User, Password: cfg.Password, SSLMode: cfg.SSLMode}, nil
}

// FindBinaries returns the directory holding initdb and postgres.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dir = filepath.Dir(real)
		}
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb and postgres not found on PATH nor under /usr/lib/postgresql/*/bin; " + InstallHint)
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Cluster is a throwaway PostgreSQL server.
type Cluster struct {
	Config config.Postgres
	Dir    string
	cmd    *exec.Cmd
	done   chan struct{}

	// what Restart needs
	bin, data string
	durable   bool
	attr      *syscall.SysProcAttr
}

// StartCluster initialises and starts a throwaway cluster in a new
// temporary directory, listening on 127.0.0.1 on a free port. As root, the
// server runs as the "postgres" system user (or "nobody"), since PostgreSQL
// refuses to run as root. durable=false turns fsync off, for tests.
func StartCluster(durable bool) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("creating the cluster directory: %w", err)
	}
	attr, err := dropRoot(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = attr
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		ports, err := porttest.Free(1)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c, err := startPostgres(bin, dir, data, ports[0], durable, attr)
		if err == nil {
			return c, nil
		}
		if attempt == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func startPostgres(bin, dir, data string, port int, durable bool, attr *syscall.SysProcAttr) (*Cluster, error) {
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "shared_buffers=256MB"}
	if !durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logFile, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return nil, fmt.Errorf("creating the server log: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	c := &Cluster{
		Config: config.Postgres{Host: "127.0.0.1", Port: port, DB: "postgres", User: "postgres"},
		Dir:    dir, cmd: cmd, done: make(chan struct{}),
		bin: bin, data: data, durable: durable, attr: attr,
	}
	go func() { _ = cmd.Wait(); logFile.Close(); close(c.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.Config.ConnString(""))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return c, nil
		}
		select {
		case <-c.done:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			return nil, fmt.Errorf("postgres exited during start-up:\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("postgres did not accept connections within 30s: %w", err)
		}
	}
}

// Signal sends sig to the server and every process it started (each
// backend is a process group of its own, so the server's group is not
// enough): SIGSTOP freezes the server — the kernel still accepts TCP
// connections, nothing answers — and SIGCONT thaws it. Linux only (/proc).
func (c *Cluster) Signal(sig syscall.Signal) error {
	pid := c.cmd.Process.Pid
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signalling postgres: %w", err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("listing the server's processes: %w", err)
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			_ = syscall.Kill(child, sig)
		}
	}
	return nil
}

// Restart shuts the server down (fast mode: every session is ended, as in a
// real restart) and starts it again on the same port and data.
func (c *Cluster) Restart() error {
	c.shutdown()
	n, err := startPostgres(c.bin, c.Dir, c.data, c.Config.Port, c.durable, c.attr)
	if err != nil {
		return fmt.Errorf("restarting postgres: %w", err)
	}
	c.cmd, c.done = n.cmd, n.done
	return nil
}

// Stop shuts the server down (fast mode) and removes its directory.
func (c *Cluster) Stop() {
	c.shutdown()
	os.RemoveAll(c.Dir)
}

// shutdown stops the server: fast mode, then immediate mode after 15 s
// (a loaded machine with a big database), SIGKILL only as a last resort.
// Immediate mode ends the backends too; a SIGKILLed postmaster leaves them
// holding the shared memory, and the next start on the data directory
// fails ("pre-existing shared memory block is still in use").
func (c *Cluster) shutdown() {
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL} {
		_ = c.cmd.Process.Signal(sig)
		select {
		case <-c.done:
			return
		case <-time.After(15 * time.Second):
		}
	}
	<-c.done
}

// startCluster starts a throwaway cluster; durable (PGTEST_DURABLE, which
// the benchmarks set) keeps fsync on, as in production.
func startCluster(durable bool) (config.Postgres, func(), error) {
	c, err := StartCluster(durable)
	if err != nil {
		return config.Postgres{}, nil, err
	}
	return c.Config, c.Stop, nil
}

// dropRoot returns the process attributes that run the server as an
// unprivileged user when the tests run as root, and gives dir to that user.
func dropRoot(dir string) (*syscall.SysProcAttr, error) {
	attr := serverProcAttr()
	if os.Geteuid() != 0 {
		return attr, nil
	}
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("running as root and no unprivileged user (postgres or nobody) to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("giving %s to %s: %w", dir, u.Username, err)
	}
	// The temporary directory's parents must be traversable by that user.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return attr, nil
}
