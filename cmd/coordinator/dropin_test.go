package main

import (
	"context"
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
