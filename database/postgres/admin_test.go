package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/tasks"
)

func TestInitDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ten := 10
	for _, tc := range []struct {
		value   string
		minsAgo *int
	}{{"", nil}, {"1717545600", nil}, {"2024-06-05 00:00:00", nil}, {"", &ten}} {
		exec(t, pool, `TRUNCATE bot_logs CASCADE`)
		before := time.Now()
		at, err := tasks.ParseStartTime(tc.value, tc.minsAgo, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := postgres.InitDatabase(ctx, pool, at, false); err != nil {
			t.Fatalf("init %q: %v", tc.value, err)
		}
		var pt float64
		var files int
		var fileTS time.Time
		var start, end int64
		if err := pool.QueryRow(ctx, `SELECT processing_time, files_processed, file_timestamps, batch_start_epoch, batch_end_epoch FROM bot_logs`).
			Scan(&pt, &files, &fileTS, &start, &end); err != nil {
			t.Fatal(err)
		}
		if pt != 0 || files != -1 || start != end || fileTS.Unix() != end {
			t.Errorf("init %q: row (%v, %d, %v, %d, %d)", tc.value, pt, files, fileTS, start, end)
		}
		switch {
		case tc.minsAgo != nil:
			want := before.Add(-10 * time.Minute).Unix()
			if end < want-1 || end > want+2 {
				t.Errorf("mins-ago 10: end %d, want about %d", end, want)
			}
		case tc.value == "":
			if end < before.Unix()-1 || end > time.Now().Unix() {
				t.Errorf("now: end %d, want about %d", end, before.Unix())
			}
		default:
			if end != 1717545600 {
				t.Errorf("init %q: end %d, want 1717545600", tc.value, end)
			}
		}
	}
	// A second init is refused, and changes nothing...
	err := postgres.InitDatabase(ctx, pool, time.Unix(1, 0), false)
	if !errors.Is(err, postgres.ErrBotLogsNotEmpty) {
		t.Fatalf("second init: %v, want ErrBotLogsNotEmpty", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM bot_logs`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("bot_logs rows %d (%v), want 1", n, err)
	}
	// ...unless overridden.
	if err := postgres.InitDatabase(ctx, pool, time.Unix(1717549200, 0), true); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM bot_logs`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("bot_logs rows after override %d (%v), want 2", n, err)
	}
}

func TestCreateAndDropDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.Server(t)
	cfg.DB = fmt.Sprintf("created_%d", os.Getpid())
	t.Cleanup(func() { _, _ = postgres.DropDatabase(context.Background(), cfg) })

	created, res, err := postgres.CreateDatabase(ctx, cfg)
	if err != nil || !created || res.Current != latestVersion {
		t.Fatalf("first create: created %v, version %d, err %v", created, res.Current, err)
	}
	created, res, err = postgres.CreateDatabase(ctx, cfg)
	if err != nil || created || len(res.Applied) != 0 {
		t.Fatalf("second create: created %v, applied %v, err %v; want an idempotent no-op", created, res.Applied, err)
	}
	dropped, err := postgres.DropDatabase(ctx, cfg)
	if err != nil || !dropped {
		t.Fatalf("drop: %v, %v", dropped, err)
	}
	dropped, err = postgres.DropDatabase(ctx, cfg)
	if err != nil || dropped {
		t.Fatalf("second drop: %v, %v; want nothing to drop", dropped, err)
	}
}

func TestCreateROUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, cfg)
	user := fmt.Sprintf("ro_%d", os.Getpid())
	password := "it's a secret"
	t.Cleanup(func() {
		admin := pgtest.Pool(t, cfg)
		for _, s := range []string{"REASSIGN OWNED BY %[1]s TO CURRENT_USER", "DROP OWNED BY %[1]s", "DROP ROLE IF EXISTS %[1]s"} {
			_, _ = admin.Exec(context.Background(), fmt.Sprintf(s, user))
		}
	})
	exec(t, pool, `INSERT INTO nodes (block_producer_key) VALUES ('B62q')`)

	created, err := postgres.CreateROUser(ctx, pool, cfg.DB, user, password)
	if err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	created, err = postgres.CreateROUser(ctx, pool, cfg.DB, user, password)
	if err != nil || created {
		t.Fatalf("second create: %v, %v; want an idempotent no-op", created, err)
	}
	// A table created later is readable too (default privileges).
	exec(t, pool, `CREATE TABLE later (x int)`)

	ro := cfg
	ro.User, ro.Password = user, password
	conn, err := pgx.Connect(ctx, ro.ConnString(""))
	if err != nil {
		t.Fatalf("connecting as the read-only user: %v", err)
	}
	defer conn.Close(ctx)
	var key string
	if err := conn.QueryRow(ctx, `SELECT block_producer_key FROM nodes`).Scan(&key); err != nil || key != "B62q" {
		t.Fatalf("select as read-only user: %q, %v", key, err)
	}
	if _, err := conn.Exec(ctx, `SELECT * FROM later`); err != nil {
		t.Fatalf("select on a later table: %v", err)
	}
	for _, stmt := range []string{`INSERT INTO nodes (block_producer_key) VALUES ('x')`, `UPDATE nodes SET score = 1`, `DELETE FROM points`, `CREATE TABLE t (x int)`} {
		if _, err := conn.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s as read-only user: %v, want permission denied", stmt, err)
		}
	}
	if _, err := postgres.CreateROUser(ctx, pool, cfg.DB, "", "x"); err == nil || !strings.Contains(err.Error(), "POSTGRES_RO_USER") {
		t.Errorf("missing user name: %v", err)
	}
}

// Issue 10 item 9: create-ro-user sends a SCRAM-SHA-256 verifier computed
// client-side, never the password (with every statement logged, the server
// log does not hold it); the read-only user logs in with SCRAM; TEMP is
// revoked; a changed password is rotated, an unchanged one left alone.
func TestCreateROUserSCRAM(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := pgtest.StartCluster(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	const role, password, rotated = "ro_scram", "Ro-Pa55word!", "N3w-Pa55word?"
	hba := filepath.Join(c.Dir, "data", "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hba, append([]byte("host all "+role+" 127.0.0.1/32 scram-sha-256\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	admin, err := postgres.Open(ctx, c.Config.ConnString(""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, stmt := range []string{`ALTER SYSTEM SET log_statement = 'all'`, `SELECT pg_reload_conf()`} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the reload is asynchronous
	if _, err := postgres.CreateROUser(ctx, admin, "postgres", role, password); err != nil {
		t.Fatal(err)
	}
	login := func(pw string) error {
		cfg := c.Config
		cfg.User, cfg.Password = role, pw
		conn, err := pgx.Connect(ctx, cfg.ConnString(""))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var method string
		if err := conn.QueryRow(ctx, `SELECT 1::text`).Scan(&method); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, `CREATE TEMP TABLE t (x int)`); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the read-only user may create a temporary table: %v", err)
		}
		return nil
	}
	if err := login(password); err != nil {
		t.Fatalf("SCRAM login with the password: %v", err)
	}
	if err := login("wrong"); err == nil {
		t.Fatal("SCRAM login with a wrong password succeeded: authentication is not checked")
	}
	var stored string
	if err := admin.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") {
		t.Fatalf("stored password %q", stored)
	}
	// Unchanged: left alone (same salt); changed: rotated.
	if _, err := postgres.CreateROUser(ctx, admin, "postgres", role, password); err != nil {
		t.Fatal(err)
	}
	var again string
	if err := admin.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&again); err != nil || again != stored {
		t.Fatalf("an unchanged password was set again (%v)", err)
	}
	if _, err := postgres.CreateROUser(ctx, admin, "postgres", role, rotated); err != nil {
		t.Fatal(err)
	}
	if err := login(rotated); err != nil {
		t.Fatalf("login with the rotated password: %v", err)
	}
	if err := login(password); err == nil {
		t.Fatal("the old password still works after rotation")
	}
	logText, err := os.ReadFile(filepath.Join(c.Dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), "CREATE ROLE") || !strings.Contains(string(logText), "SCRAM-SHA-256$") {
		t.Fatalf("the server log does not show the statements (log_statement=all):\n%s", logText)
	}
	for _, pw := range []string{password, rotated} {
		if strings.Contains(string(logText), pw) {
			t.Errorf("the server log holds the password %q", pw)
		}
	}
}
