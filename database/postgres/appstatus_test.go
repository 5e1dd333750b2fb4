package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

type appStatusRow struct {
	status         *bool
	discord, email *string
}

func (r appStatusRow) String() string {
	s := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return fmt.Sprintf("%q", *p)
	}
	st := "NULL"
	if r.status != nil {
		st = fmt.Sprint(*r.status)
	}
	return st + " " + s(r.discord) + " " + s(r.email)
}

func TestUpdateApplicationStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	if _, err := pool.Exec(ctx, `INSERT INTO nodes (block_producer_key, discord_id, email_id, application_status) VALUES
		('B62qAAA', NULL, NULL, NULL),
		('B62qBBB', 'old#1', 'old@example.org', false),
		('B62qCCC', NULL, NULL, NULL),
		('B62qDUP', NULL, NULL, NULL),
		('B62qDUP', NULL, NULL, NULL),
		('B62qUNLISTED', 'keep', 'keep@example.org', false)`); err != nil {
		t.Fatal(err)
	}

	n, err := postgres.UpdateApplicationStatus(ctx, pool, []postgres.Contact{
		{DiscordID: "alice#1", Email: "alice@example.org", BlockProducerKey: "B62qAAA"},
		{DiscordID: "bob#1", Email: "bob-first@example.org", BlockProducerKey: "B62qBBB"},
		{DiscordID: "", Email: "carol@example.org", BlockProducerKey: "B62qCCC"},
		{DiscordID: "nobody", Email: "nobody@example.org", BlockProducerKey: "B62qNOTANODE"},
		{DiscordID: "bob#2", Email: `bob "second" o'brien@example.org`, BlockProducerKey: "B62qBBB"}, // later row wins
		{DiscordID: "dup", Email: "dup@example.org", BlockProducerKey: "B62qDUP"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 { // AAA, BBB, CCC and both DUP rows
		t.Errorf("updated %d nodes, want 5", n)
	}
	rows, err := pool.Query(ctx, `SELECT block_producer_key, application_status, discord_id, email_id FROM nodes ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var key string
		var r appStatusRow
		if err := rows.Scan(&key, &r.status, &r.discord, &r.email); err != nil {
			t.Fatal(err)
		}
		got = append(got, key+" "+r.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`B62qAAA true "alice#1" "alice@example.org"`,
		`B62qBBB true "bob#2" "bob \"second\" o'brien@example.org"`,
		`B62qCCC true "" "carol@example.org"`,
		`B62qDUP true "dup" "dup@example.org"`,
		`B62qDUP true "dup" "dup@example.org"`,
		`B62qUNLISTED false "keep" "keep@example.org"`,
	}
	if d := listDiffAppStatus(got, want); d != "" {
		t.Errorf("nodes after the update:\n%s", d)
	}

	if n, err := postgres.UpdateApplicationStatus(ctx, pool, nil); err != nil || n != 0 {
		t.Errorf("UpdateApplicationStatus(nil) = %d, %v; want 0, nil", n, err)
	}
}

func TestUpdateApplicationStatusCancelled(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := postgres.UpdateApplicationStatus(ctx, pool, []postgres.Contact{{BlockProducerKey: "B62q"}})
	if err == nil {
		t.Fatal("UpdateApplicationStatus with a cancelled context succeeded")
	}
}

func listDiffAppStatus(got, want []string) string {
	var d string
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			d += fmt.Sprintf("  row %d: got  %s\n         want %s\n", i, g, w)
		}
	}
	return d
}
