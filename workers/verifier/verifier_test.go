package verifier

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
	"github.com/delegation-program/uptime-coordinator/internal/synthnet"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var window = coordinator.Window{Start: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 6, 1, 0, 20, 0, 0, time.UTC)}

// key returns a well-formed public key, distinct for each i < 58.
func key(i int) string { return keyA[:54] + base58[i:i+1] }

// hash returns a well-formed state hash, distinct for each i < 58.
func hash(i int) string { return hashA[:51] + base58[i:i+1] }

func sub(submitter string, at time.Time, blockHash *string) coordinator.Submission {
	return coordinator.Submission{
		SubmittedAtDate: at.Truncate(24 * time.Hour), SubmittedAt: at, Submitter: submitter,
		BlockHash: blockHash, RemoteAddr: ptr("10.0.0.1:8301"),
	}
}

// row is the verification columns of one submission.
type row struct {
	StateHash, Parent, ValidationError *string
	Height, Slot                       *int32
	Verified                           *bool
}

func rows(t *testing.T, store *postgres.Database) map[string]row {
	t.Helper()
	out := map[string]row{}
	rs, err := store.Pool.Query(context.Background(),
		`SELECT submitter, state_hash, parent, height, slot, validation_error, verified FROM submissions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var k string
		var r row
		if err := rs.Scan(&k, &r.StateHash, &r.Parent, &r.Height, &r.Slot, &r.ValidationError, &r.Verified); err != nil {
			t.Fatal(err)
		}
		out[k] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func str(p *string) string {
	if p == nil {
		return "NULL"
	}
	return *p
}

func TestVerifyWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	store := &postgres.Database{Pool: pgtest.Pool(t, cfg)}
	dir := t.TempDir()
	write := func(h, content string) {
		if err := os.WriteFile(filepath.Join(dir, h+".json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	block := func(length, slot string) string {
		return `{"protocol_state":{"previous_state_hash":"` + hash(0) + `","body":{"consensus_state":{"blockchain_length":` +
			length + `,"global_slot_since_genesis":` + slot + `}}}}`
	}
	write(hash(1), block(`"1001"`, `"2001"`)) // strings, as Mina writes them
	write(hash(2), block(`1002`, `2002`))     // numbers
	write(hash(3), `{"protocol_state": {"previous_state_hash": "`)
	write(hash(4), `{"state_hash":"`+hash(9)+`",`+block(`"1004"`, `"2004"`)[1:])
	write(hash(5), `{"protocol_state":{}}`)

	at := func(m int) time.Time { return window.Start.Add(time.Duration(m) * time.Minute) }
	subs := []coordinator.Submission{
		sub(key(1), at(1), ptr(hash(1))),                                               // valid, string fields
		sub(key(2), at(2), ptr(hash(2))),                                               // valid, number fields
		sub(key(3), at(3), ptr(hash(1))),                                               // valid, the same block as key(1)
		sub(key(4), at(4), ptr(hash(7))),                                               // block missing
		sub(key(5), at(5), ptr(hash(3))),                                               // malformed JSON
		sub(key(6), at(6), ptr(hash(4))),                                               // the file declares another hash
		sub(key(7), at(7), ptr(hash(5))),                                               // JSON without the fields
		sub(key(8)[:50]+"00000", at(8), ptr(hash(1))),                                  // submitter key not base58
		sub("B62q-short", at(9), ptr(hash(1))),                                         // submitter key too short
		sub(key(10), at(10), ptr("not-a-hash")),                                        // block hash malformed
		sub(key(11), at(11), nil),                                                      // no block hash
		sub(key(12), at(19).Add(59*time.Second+999999*time.Microsecond), ptr(hash(2))), // last instant of the window
		sub(key(20), window.Start.Add(-time.Microsecond), ptr(hash(1))),                // before the window
		sub(key(21), window.End, ptr(hash(1))),                                         // after the window
	}
	// Verified already (by an earlier run, or the real verifier): left alone.
	done := sub(key(13), at(13), ptr(hash(1)))
	done.Verified, done.ValidationError = ptr(false), ptr("snark verification failed")
	subs = append(subs, done)
	if _, err := pgtest.InsertSubmissions(ctx, store.Pool, subs); err != nil {
		t.Fatal(err)
	}

	v := &Verifier{Store: store, BlocksDir: dir}
	res, err := v.Verify(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	got := rows(t, store)
	valid := func(k string, h string, height, slot int32) {
		t.Helper()
		r := got[k]
		if r.Verified == nil || !*r.Verified || str(r.StateHash) != h || str(r.Parent) != hash(0) ||
			r.Height == nil || *r.Height != height || r.Slot == nil || *r.Slot != slot || r.ValidationError != nil {
			t.Errorf("%s: %s %s %v %v %s %v, want verified with block %s", k, str(r.StateHash), str(r.Parent), r.Height, r.Slot,
				str(r.ValidationError), r.Verified, h)
		}
	}
	invalid := func(k, want string) {
		t.Helper()
		r := got[k]
		if r.Verified == nil || *r.Verified || !strings.HasPrefix(str(r.ValidationError), want) ||
			r.StateHash != nil || r.Parent != nil || r.Height != nil || r.Slot != nil {
			t.Errorf("%s: verified %v, validation_error %q, state_hash %s: want invalid with %q", k, r.Verified,
				str(r.ValidationError), str(r.StateHash), want)
		}
	}
	untouched := func(k string) {
		t.Helper()
		if r := got[k]; r.Verified != nil || r.StateHash != nil || r.ValidationError != nil || r.Height != nil {
			t.Errorf("%s (outside the window): touched: %+v", k, r)
		}
	}
	valid(key(1), hash(1), 1001, 2001)
	valid(key(2), hash(2), 1002, 2002)
	valid(key(3), hash(1), 1001, 2001)
	valid(key(12), hash(2), 1002, 2002)
	invalid(key(4), "block not found")
	invalid(key(5), "malformed block: invalid JSON")
	invalid(key(6), "block hash mismatch: the file declares state_hash "+hash(9))
	invalid(key(7), "malformed block: no protocol_state.previous_state_hash")
	invalid(key(8)[:50]+"00000", "malformed submitter public key: not base58")
	invalid("B62q-short", "malformed submitter public key: 10 characters, want 55")
	invalid(key(10), "malformed block hash: 10 characters, want 52")
	invalid(key(11), "malformed block hash: none")
	invalid(key(13), "snark verification failed")
	untouched(key(20))
	untouched(key(21))

	want := map[string]int{ReasonBlockNotFound: 1, ReasonMalformedBlock: 2, ReasonHashMismatch: 1, ReasonBadSubmitter: 2, ReasonBadBlockHash: 2}
	if res.Pending != 12 || res.Verified != 4 || len(res.Invalid) != len(want) {
		t.Errorf("result %+v", res)
	}
	for reason, n := range want {
		if res.Invalid[reason] != n {
			t.Errorf("%d invalid for %q, want %d", res.Invalid[reason], reason, n)
		}
	}
	const summary = "window 2024-06-01 00:00:00.0+0000 - 2024-06-01 00:20:00.0+0000: 12 unverified submissions: " +
		"4 verified, 8 invalid (block hash mismatch: 1, block not found: 1, malformed block: 2, malformed block hash: 2, " +
		"malformed submitter public key: 2)"
	if res.String() != summary {
		t.Errorf("summary\n%s\nwant\n%s", res, summary)
	}

	// A re-run changes nothing, even once the missing block has arrived.
	before := pgtest.TakeSnapshot(t, store.Pool)
	write(hash(7), block(`"1007"`, `"2007"`))
	res, err = v.Verify(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pending != 0 || res.Verified != 0 || len(res.Invalid) != 0 {
		t.Errorf("re-run result %+v, want everything already verified", res)
	}
	if d := before.Diff(pgtest.TakeSnapshot(t, store.Pool)); d != "" {
		t.Errorf("a re-run changed the database:\n%s", d)
	}
	// And the store itself never overwrites a verified row.
	over := subs[0]
	over.Verified, over.ValidationError = ptr(false), ptr("overwritten")
	if err := store.UpdateVerification(ctx, []coordinator.Submission{over}); err != nil {
		t.Fatal(err)
	}
	if d := before.Diff(pgtest.TakeSnapshot(t, store.Pool)); d != "" {
		t.Errorf("UpdateVerification overwrote a verified row:\n%s", d)
	}
}

func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewDatabase(t)
	store := &postgres.Database{Pool: pgtest.Pool(t, cfg)}
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "missing")} {
		if _, err := (&Verifier{Store: store, BlocksDir: dir}).Verify(context.Background(), window); err == nil {
			t.Errorf("blocks directory %q: no error", dir)
		}
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Verifier{Store: store, BlocksDir: file}).Verify(context.Background(), window); err == nil ||
		!strings.Contains(err.Error(), "not a directory") {
		t.Errorf("blocks directory is a file: %v", err)
	}
	// An empty window is fine.
	res, err := (&Verifier{Store: store, BlocksDir: t.TempDir()}).Verify(context.Background(), window)
	if err != nil || res.Pending != 0 {
		t.Errorf("empty window: %+v, %v", res, err)
	}
}

// TestSyntheticNetwork checks the verifier against the generator: with the
// generator's blocks written as files, it leaves the submissions as the
// generator says a verifier leaves them.
func TestSyntheticNetwork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	net := synthnet.Generate(synthnet.Params{Seed: 5, Producers: 60, Start: window.Start, Duration: time.Hour})
	dir := t.TempDir()
	if err := synthnet.WriteBlockFiles(dir, net.Blocks); err != nil {
		t.Fatal(err)
	}
	cfg := pgtest.NewDatabase(t)
	store := &postgres.Database{Pool: pgtest.Pool(t, cfg)}
	if _, err := pgtest.InsertSubmissions(ctx, store.Pool, net.Unverified()); err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Store: store, BlocksDir: dir}
	full := coordinator.Window{Start: window.Start, End: window.Start.Add(time.Hour)}
	total := 0
	for _, w := range full.Split(7) { // mini-batches, with uneven bounds
		res, err := v.Verify(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		total += res.Pending
	}
	want := net.Verified()
	if total != len(want) {
		t.Fatalf("%d submissions verified in the mini-batches, want %d", total, len(want))
	}
	got, err := store.Submissions(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		w := want[i]
		if g.Submitter != w.Submitter || !g.SubmittedAt.Equal(w.SubmittedAt) {
			t.Fatalf("row %d is %s at %v, want %s at %v", i, g.Submitter, g.SubmittedAt, w.Submitter, w.SubmittedAt)
		}
		if *g.Verified != *w.Verified || str(g.StateHash) != str(w.StateHash) || str(g.Parent) != str(w.Parent) ||
			!eq(g.Height, w.Height) || !eq(g.Slot, w.Slot) {
			t.Errorf("%s at %v: verified %v %s %s %v %v (%s), want %v %s %s %v %v", g.Submitter, g.SubmittedAt,
				*g.Verified, str(g.StateHash), str(g.Parent), g.Height, g.Slot, str(g.ValidationError),
				*w.Verified, str(w.StateHash), str(w.Parent), w.Height, w.Slot)
		}
		if !*g.Verified && str(g.ValidationError) != ReasonBlockNotFound {
			t.Errorf("%s at %v: validation_error %q", g.Submitter, g.SubmittedAt, str(g.ValidationError))
		}
	}
}

func eq(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
