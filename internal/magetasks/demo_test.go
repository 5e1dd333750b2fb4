package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestLeaderboardShowsTopAndBottom(t *testing.T) {
	var board []entry
	for i := range 7 {
		board = append(board, entry{key: "B62q" + strings.Repeat(string(rune('a'+i)), 20), score: 9 - i, percent: float64(100 - 10*i)})
	}
	var out bytes.Buffer
	printLeaderboard(&out, board, 2)
	want := `
Leaderboard: 7 scored producers (top 2 and bottom 2):
  rank         producer  points  score %
     1  B62qaaaa…aaaaaa       9   100.00
     2  B62qbbbb…bbbbbb       8    90.00
     …                …       …        …
     6  B62qffff…ffffff       4    50.00
     7  B62qgggg…gggggg       3    40.00
`
	if out.String() != want {
		t.Errorf("leaderboard:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestHistogramBuckets(t *testing.T) {
	board := []entry{{percent: 100}, {percent: 99.99}, {percent: 90}, {percent: 50}, {percent: 9.99}, {percent: 0}}
	var out bytes.Buffer
	printHistogram(&out, board)
	want := `
Scores (producers per 10% of score):
  0- 10%     2 ###########################
 10- 20%     0 
 20- 30%     0 
 30- 40%     0 
 40- 50%     0 
 50- 60%     1 ##############
 60- 70%     0 
 70- 80%     0 
 80- 90%     0 
 90-100%     3 ########################################
`
	if out.String() != want {
		t.Errorf("histogram:\n%s\nwant:\n%s", out.String(), want)
	}
}

// usePostgres points POSTGRES_* at the test server, as a developer's
// environment would.
func usePostgres(t *testing.T) {
	for _, kv := range pgtest.Env(pgtest.Server(t)) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func TestDemoRefusesADatabaseItDidNotCreate(t *testing.T) {
	usePostgres(t)
	ctx := context.Background()
	pg := pgtest.Server(t)
	pg.DB = "demo_not_ours"
	if _, _, err := postgres.CreateDatabase(ctx, pg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { postgres.DropDatabase(context.Background(), pg) })
	pool := pgtest.Pool(t, pg)
	if _, err := pool.Exec(ctx, `CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)`); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	d := &DemoCmd{Coordinator: "/nonexistent", Database: pg.DB}
	err := d.run(ctx, config.Tasks{Producers: 10, Hours: 1, Seed: 1}, clock{began: time.Now(), out: &out})
	if err == nil || !strings.Contains(err.Error(), `database "demo_not_ours" already exists`) {
		t.Fatalf("demo on an existing database: err = %v, want a refusal naming it", err)
	}
	var x int
	if err := pool.QueryRow(ctx, `SELECT x FROM precious`).Scan(&x); err != nil || x != 42 {
		t.Fatalf("the existing database was touched: %v (x = %d)", err, x)
	}
}

// TestDemoSeedIsReproducible runs the demo twice, end to end with the real
// coordinator (built as "go tool mage demo" builds it), with the same SEED:
// the same leaderboard and histogram; and each run drops the database it
// created.
func TestDemoSeedIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the coordinator")
	}
	usePostgres(t)
	bin := filepath.Join(t.TempDir(), "coordinator")
	build := exec.Command("go", "build", "-tags", "nokubernetes nocassandra", "-o", bin, "github.com/delegation-program/uptime-coordinator/cmd/coordinator")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the coordinator: %v\n%s", err, out)
	}
	ctx := context.Background()
	end := time.Date(2026, 6, 5, 12, 0, 0, 0, time.UTC)
	boards := make([]string, 2)
	for i, db := range []string{"demo_seed_a", "demo_seed_b"} {
		var out bytes.Buffer
		d := &DemoCmd{Coordinator: bin, Database: db, end: end}
		if err := d.run(ctx, config.Tasks{Producers: 60, Hours: 2, Seed: 42}, clock{began: time.Now(), out: &out}); err != nil {
			t.Fatalf("demo %d: %v\n%s", i+1, err, out.String())
		}
		text := out.String()
		from, to := strings.Index(text, "\nLeaderboard:"), strings.Index(text, "\nBatches:")
		if from < 0 || to < from {
			t.Fatalf("demo %d printed no leaderboard:\n%s", i+1, text)
		}
		boards[i] = text[from:to]
		for _, want := range []string{"SEED=42", "batch  6/6", "Leaderboard: 60 scored producers (top 10 and bottom 10)", "    60  ", "Scores (producers per 10% of score):"} {
			if !strings.Contains(text, want) {
				t.Errorf("demo %d: output lacks %q:\n%s", i+1, want, text)
			}
		}
		pg := pgtest.Server(t)
		pg.DB = db
		if exists, err := postgres.DatabaseExists(ctx, pg); err != nil || exists {
			t.Errorf("demo %d left its database %s behind (exists %v, %v)", i+1, db, exists, err)
		}
	}
	if boards[0] != boards[1] {
		t.Errorf("the same SEED gave different leaderboards:\n%s\n---\n%s", boards[0], boards[1])
	}
	t.Log(boards[0])
}
