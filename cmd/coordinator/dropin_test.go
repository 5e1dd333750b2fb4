package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
)

// TestInitDatabaseIsIdempotent runs init-database on a database that has
// committed batches, as the Helm chart's init container does on every pod
// start: it must exit 0, say why it inserted nothing, and change nothing.
func TestInitDatabaseIsIdempotent(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	runCoordinator(t, cfg, "run", "--batches", "2")
	if n := committed(t, cfg); n != 2 {
		t.Fatalf("committed %d batches, want 2", n)
	}
	before := pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))
	var rowsBefore int
	if err := pgtest.Pool(t, cfg).QueryRow(context.Background(), `SELECT count(*) FROM bot_logs`).Scan(&rowsBefore); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		out, err := coordinatorCmd(cfg, nil, "init-database", "--mins-ago", "5").CombinedOutput()
		if err != nil {
			t.Fatalf("init-database run %d: %v, want exit 0\n%s", i, err, out)
		}
		if !strings.Contains(string(out), "table bot_logs is not empty; nothing inserted") {
			t.Errorf("init-database run %d says:\n%s", i, out)
		}
	}
	if d := before.Diff(pgtest.TakeSnapshot(t, pgtest.Pool(t, cfg))); d != "" {
		t.Errorf("init-database changed the database:\n%s", d)
	}
	var rows int
	if err := pgtest.Pool(t, cfg).QueryRow(context.Background(), `SELECT count(*) FROM bot_logs`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != rowsBefore || rows != 3 {
		t.Errorf("bot_logs rows %d, want %d (the starting row and 2 batches)", rows, 3)
	}
}

// TestMissingSpreadsheetNeverStopsScoring: without SPREADSHEET_NAME (and the
// application status update not switched off) the coordinator scores every
// batch and logs the failed update as an error at each one, as the original.
func TestMissingSpreadsheetNeverStopsScoring(t *testing.T) {
	t.Parallel()
	cfg := seeded(t)
	out, err := coordinatorCmd(cfg, []string{"IGNORE_APPLICATION_STATUS=0"}, "run", "--batches", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("run without SPREADSHEET_NAME: %v, want exit 0\n%s", err, out)
	}
	if n := committed(t, cfg); n != 2 {
		t.Errorf("committed %d batches, want 2", n)
	}
	var errors int
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "SPREADSHEET_NAME is not set") {
			errors++
		}
	}
	if errors != 2 {
		t.Errorf("%d ERROR lines naming SPREADSHEET_NAME, want one per batch (2):\n%s", errors, out)
	}
}

// TestMigrateOnStartFalse: with MIGRATE_ON_START=false, run refuses to start
// while migrations are pending, naming create-database, and changes nothing
// (not even goose's version table); after create-database it runs.
func TestMigrateOnStartFalse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	off := []string{"MIGRATE_ON_START=false"}

	empty := pgtest.NewEmptyDatabase(t)
	out, err := coordinatorCmd(empty, off, "run", "--batches", "1").CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Fatalf("run on an empty database: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"schema migrations [1 2 3 4", "are pending and MIGRATE_ON_START is false", "`coordinator create-database`"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var tables int
	if err := pgtest.Pool(t, empty).QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("the refused run left %d tables (%v), want 0", tables, err)
	}

	// The init steps, then run.
	runCoordinator(t, empty, "create-database")
	runCoordinator(t, empty, "init-database", "--mins-ago", "60")
	out, err = coordinatorCmd(empty, off, "run", "--batches", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("run after create-database and init-database: %v\n%s", err, out)
	}
	if n := committed(t, empty); n != 1 {
		t.Errorf("committed %d batches after the init steps, want 1", n)
	}

	// One migration missing from a migrated database: that one is named.
	cfg := seeded(t)
	pool := pgtest.Pool(t, cfg)
	var latest int64
	if err := pool.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&latest); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM goose_db_version WHERE version_id = $1`, latest); err != nil {
		t.Fatal(err)
	}
	out, err = coordinatorCmd(cfg, off, "run", "--batches", "1").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), fmt.Sprintf("schema migrations [%d] are pending", latest)) {
		t.Fatalf("run with migration %d pending: exit %d\n%s", latest, code, out)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, latest); err != nil {
		t.Fatal(err)
	}
	out, err = coordinatorCmd(cfg, off, "run", "--batches", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("run with no migration pending: %v\n%s", err, out)
	}
	if n := committed(t, cfg); n != 1 {
		t.Errorf("committed %d batches, want 1", n)
	}
}
