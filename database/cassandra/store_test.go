package cassandra_test

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/database/cassandra"
	"github.com/delegation-program/uptime-coordinator/database/cassandra/cassandratest"
)

func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }

func open(t *testing.T, cfg config.Cassandra, opts ...cassandra.Option) *cassandra.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := cassandra.Open(ctx, cfg, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func ptr[T any](v T) *T { return &v }

// sub is a submission at at by submitter with every collector column set.
func sub(at time.Time, submitter string) coordinator.Submission {
	y, m, d := at.UTC().Date()
	return coordinator.Submission{
		SubmittedAtDate:    time.Date(y, m, d, 0, 0, 0, 0, time.UTC),
		SubmittedAt:        at.UTC(),
		Submitter:          submitter,
		CreatedAt:          ptr(at.UTC().Add(-3 * time.Second)),
		BlockHash:          ptr("3NK" + submitter),
		RemoteAddr:         ptr("10.0.0.1:1234"),
		PeerID:             ptr("12D3Koo" + submitter),
		SnarkWork:          []byte{1, 2, 3},
		GraphQLControlPort: ptr(int32(3085)),
		BuiltWithCommitSHA: ptr("abc123"),
	}
}

// show renders a submission with every field the store reads (all but
// snark_work), NULLs as "NULL", so that lists can be compared and
// differences read.
func show(s coordinator.Submission) string {
	f := func(p any) string {
		switch v := p.(type) {
		case *string:
			if v != nil {
				return fmt.Sprintf("%q", *v)
			}
		case *int32:
			if v != nil {
				return fmt.Sprint(*v)
			}
		case *int64:
			if v != nil {
				return fmt.Sprint(*v)
			}
		case *bool:
			if v != nil {
				return fmt.Sprint(*v)
			}
		case *time.Time:
			if v != nil {
				return v.Format(time.RFC3339Nano) + "/" + v.Location().String()
			}
		case []byte:
			if v != nil {
				return "0x" + hex.EncodeToString(v)
			}
		}
		return "NULL"
	}
	return strings.Join([]string{
		s.SubmittedAtDate.Format(time.RFC3339) + "/" + s.SubmittedAtDate.Location().String(),
		f(&s.SubmittedAt), s.Submitter, f(s.CreatedAt), f(s.BlockHash), f(s.RemoteAddr), f(s.PeerID),
		f(s.GraphQLControlPort), f(s.BuiltWithCommitSHA), f(s.StateHash), f(s.Parent),
		f(s.Height), f(s.Slot), f(s.ValidationError), f(s.Verified),
	}, " ")
}

func showAll(subs []coordinator.Submission) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = show(s)
	}
	return out
}

// expect filters all to the window and sorts it as Submissions must.
func expect(all []coordinator.Submission, w coordinator.Window) []coordinator.Submission {
	var out []coordinator.Submission
	for _, s := range all {
		if !s.SubmittedAt.Before(w.Start) && s.SubmittedAt.Before(w.End) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b coordinator.Submission) int {
		return cmp.Or(a.SubmittedAt.Compare(b.SubmittedAt), cmp.Compare(a.Submitter, b.Submitter))
	})
	return out
}

func check(t *testing.T, s *cassandra.Store, w coordinator.Window, want []coordinator.Submission) {
	t.Helper()
	got, err := s.Submissions(context.Background(), w)
	if err != nil {
		t.Fatalf("Submissions(%v .. %v): %v", w.Start, w.End, err)
	}
	g, e := showAll(got), showAll(want)
	if !slices.Equal(g, e) {
		t.Fatalf("Submissions(%v .. %v): got %d rows, want %d\ngot:\n  %s\nwant:\n  %s",
			w.Start, w.End, len(g), len(e), strings.Join(g, "\n  "), strings.Join(e, "\n  "))
	}
}

var day = time.Date(2024, 5, 17, 0, 0, 0, 0, time.UTC)

func TestSubmissionsWindows(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	var rows []coordinator.Submission
	add := func(at time.Time, who string) time.Time {
		rows = append(rows, sub(at, who))
		return at
	}
	// Shard 10 is [1440 s, 1584 s) after midnight.
	shard10 := day.Add(1440 * time.Second)
	add(shard10, "B62a")
	add(shard10.Add(10*time.Second), "B62a")
	add(shard10.Add(10*time.Second), "B62b") // same instant, sorted by submitter
	add(shard10.Add(143*time.Second+999*time.Millisecond), "B62c")
	add(shard10.Add(144*time.Second), "B62d") // shard 11
	add(shard10.Add(1000*time.Second), "B62e")
	// Around midnight.
	add(day.Add(-time.Minute), "B62f")
	add(day.Add(-time.Millisecond), "B62g")
	add(day, "B62h")
	add(day.Add(time.Minute), "B62i")
	// Several days later, one per hour for three days.
	for h := range 72 {
		add(day.AddDate(0, 0, 10).Add(time.Duration(h)*time.Hour+17*time.Minute), fmt.Sprintf("B62day%02d", h))
	}
	cassandratest.Insert(t, cfg, rows...)
	s := open(t, cfg)

	for _, tt := range []struct {
		name       string
		start, end time.Time
		count      int
	}{
		{"inside one shard", shard10.Add(time.Second), shard10.Add(100 * time.Second), 2},
		{"whole shard", shard10, shard10.Add(144 * time.Second), 4},
		{"across shards", shard10, shard10.Add(1001 * time.Second), 6},
		{"across midnight", day.Add(-2 * time.Minute), day.Add(2 * time.Minute), 4},
		{"day before midnight", day.AddDate(0, 0, -1), day, 2},
		{"several days", day.AddDate(0, 0, 9), day.AddDate(0, 0, 14), 72},
		{"several days, unaligned", day.AddDate(0, 0, 10).Add(5*time.Hour + 17*time.Minute), day.AddDate(0, 0, 12).Add(3*time.Hour + 17*time.Minute), 46},
		{"everything", day.AddDate(0, 0, -1), day.AddDate(0, 0, 14), len(rows)},
		{"empty window", shard10, shard10, 0},
		{"reversed window", shard10.Add(time.Hour), shard10, 0},
		{"no rows", day.AddDate(0, 0, 3), day.AddDate(0, 0, 4), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := coordinator.Window{Start: tt.start, End: tt.end}
			want := expect(rows, w)
			if len(want) != tt.count {
				t.Fatalf("test data: %d rows in the window, the test expects %d", len(want), tt.count)
			}
			check(t, s, w, want)
		})
	}
}

func TestSubmissionsBoundaries(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	start := day.Add(7*time.Hour + 123*time.Millisecond)
	end := start.Add(10 * time.Minute)
	rows := []coordinator.Submission{
		sub(start.Add(-time.Millisecond), "B62before"),
		sub(start, "B62start"),
		sub(end.Add(-time.Millisecond), "B62last"),
		sub(end, "B62end"),
	}
	cassandratest.Insert(t, cfg, rows...)
	s := open(t, cfg)
	check(t, s, coordinator.Window{Start: start, End: end}, []coordinator.Submission{rows[1], rows[2]})
	// Bounds between milliseconds: rows are stored in whole milliseconds, so
	// a start just below a row includes it and one just above excludes it.
	check(t, s, coordinator.Window{Start: start.Add(-time.Microsecond), End: end.Add(-time.Millisecond)}, []coordinator.Submission{rows[1]})
	check(t, s, coordinator.Window{Start: start.Add(time.Microsecond), End: end.Add(time.Microsecond)}, []coordinator.Submission{rows[2], rows[3]})
	// Windows given in another zone mean the same instants.
	est := time.FixedZone("EST", -5*3600)
	check(t, s, coordinator.Window{Start: start.In(est), End: end.In(est)}, []coordinator.Submission{rows[1], rows[2]})
}

func TestSubmissionsColumns(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	at := day.Add(3*time.Hour + 5*time.Millisecond)
	full := sub(at, "B62full")
	full.StateHash, full.Parent = ptr("3NLstate"), ptr("3NLparent")
	full.Height, full.Slot = ptr(int64(350000)), ptr(int64(2_000_000_000))
	full.ValidationError, full.Verified = ptr(""), ptr(false)
	empty := coordinator.Submission{ // only the key
		SubmittedAtDate: time.Date(2024, 5, 17, 0, 0, 0, 0, time.UTC),
		SubmittedAt:     at.Add(time.Second),
		Submitter:       "B62nulls",
	}
	blank := sub(at.Add(2*time.Second), "B62blank") // empty, not NULL
	blank.BlockHash, blank.SnarkWork = ptr(""), []byte{}
	cassandratest.Insert(t, cfg, full, empty, blank)

	got, err := open(t, cfg).Submissions(context.Background(), coordinator.Window{Start: day, End: day.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if g, w := showAll(got), showAll([]coordinator.Submission{full, empty, blank}); !slices.Equal(g, w) {
		t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
	if got[0].SubmittedAt.Location() != time.UTC || got[0].CreatedAt.Location() != time.UTC {
		t.Error("times are not in UTC")
	}
	for _, g := range got {
		if g.SnarkWork != nil {
			t.Errorf("snark_work of %s was read (%x); the store never reads it", g.Submitter, g.SnarkWork)
		}
	}
}

func TestSubmissionsPaging(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	var rows []coordinator.Submission
	// 120 rows in one partition (shard 0), 200 spread over an hour.
	for i := range 120 {
		rows = append(rows, sub(day.Add(time.Duration(i)*time.Second), fmt.Sprintf("B62one%03d", i)))
	}
	for i := range 200 {
		rows = append(rows, sub(day.Add(2*time.Hour+time.Duration(i)*18*time.Second), fmt.Sprintf("B62spread%03d", i)))
	}
	cassandratest.Insert(t, cfg, rows...)
	for _, size := range []int{1, 7, 100, 5000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			s := open(t, cfg, cassandra.WithPageSize(size))
			check(t, s, coordinator.Window{Start: day, End: day.Add(2 * time.Minute)}, expect(rows, coordinator.Window{Start: day, End: day.Add(2 * time.Minute)}))
			w := coordinator.Window{Start: day, End: day.Add(24 * time.Hour)}
			check(t, s, w, expect(rows, w))
		})
	}
}

// TestSubmissionsMatchFullScan compares Submissions with a brute-force scan
// of the whole table for many random windows.
func TestSubmissionsMatchFullScan(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	r := mrand.New(mrand.NewPCG(2024, 5))
	base := day.Add(-12 * time.Hour)
	span := int64(3 * 24 * time.Hour / time.Millisecond)
	var rows []coordinator.Submission
	seen := map[string]bool{}
	for len(rows) < 1500 {
		// Cluster some rows on shard boundaries and at midnight.
		var at time.Time
		switch r.IntN(4) {
		case 0:
			at = base.Add(time.Duration(r.Int64N(span/144_000)) * 144 * time.Second)
		default:
			at = base.Add(time.Duration(r.Int64N(span)) * time.Millisecond)
		}
		who := fmt.Sprintf("B62k%02d", r.IntN(40))
		if key := at.String() + who; !seen[key] {
			seen[key] = true
			s := sub(at, who)
			if r.IntN(3) == 0 {
				s.CreatedAt, s.BlockHash, s.SnarkWork = nil, nil, nil
				s.Verified, s.Height = ptr(r.IntN(2) == 0), ptr(r.Int64N(1_000_000))
			}
			rows = append(rows, s)
		}
	}
	cassandratest.Insert(t, cfg, rows...)
	all := cassandratest.All(t, cfg)
	if len(all) != len(rows) {
		t.Fatalf("full scan found %d rows, %d were inserted", len(all), len(rows))
	}
	s := open(t, cfg, cassandra.WithPageSize(37))
	for i := range 150 {
		start := base.Add(-time.Hour + time.Duration(r.Int64N(span+int64(2*time.Hour/time.Millisecond)))*time.Millisecond)
		var length time.Duration
		switch i % 3 {
		case 0:
			length = time.Duration(r.Int64N(int64(20 * time.Minute)))
		case 1:
			length = time.Duration(r.Int64N(int64(6 * time.Hour)))
		default:
			length = time.Duration(r.Int64N(int64(50 * time.Hour)))
		}
		w := coordinator.Window{Start: start, End: start.Add(length)}
		check(t, s, w, expect(all, w))
	}
}

func TestUpdateVerification(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	a := sub(day.Add(23*time.Hour+59*time.Minute+59*time.Second+999*time.Millisecond), "B62a")
	b := sub(day.Add(time.Hour), "B62b")
	c := sub(day.Add(2*time.Hour), "B62c")
	c.StateHash, c.Verified, c.ValidationError = ptr("old"), ptr(true), ptr("old error")
	cassandratest.Insert(t, cfg, a, b, c)
	s := open(t, cfg)

	a.StateHash, a.Parent, a.Height, a.Slot, a.Verified = ptr("3NLa"), ptr("3NLp"), ptr(int64(12)), ptr(int64(345)), ptr(true)
	b.ValidationError, b.Verified = ptr("invalid proof"), ptr(false)
	c.StateHash, c.Verified, c.ValidationError = nil, nil, nil // back to NULL
	// The collector's columns are not written: a different block hash in
	// the update must not reach the row.
	changed := []coordinator.Submission{a, b, c}
	changed[0].BlockHash = ptr("not written")
	if err := s.UpdateVerification(context.Background(), changed); err != nil {
		t.Fatal(err)
	}
	check(t, s, coordinator.Window{Start: day, End: day.AddDate(0, 0, 1)}, []coordinator.Submission{b, c, a})

	if err := s.UpdateVerification(context.Background(), nil); err != nil {
		t.Errorf("empty update: %v", err)
	}
	if err := s.UpdateVerification(context.Background(), []coordinator.Submission{{Submitter: "B62x"}}); err == nil {
		t.Error("an update without submitted_at was accepted")
	}
	tooHigh := b
	tooHigh.Height = ptr(int64(1) << 40)
	if err := s.UpdateVerification(context.Background(), []coordinator.Submission{tooHigh}); err == nil {
		t.Error("a height beyond the int column was accepted")
	}
}

func TestSubmissionsContext(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	cassandratest.Insert(t, cfg, sub(day, "B62a"))
	s := open(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Submissions(ctx, coordinator.Window{Start: day, End: day.Add(time.Hour)})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if err := s.UpdateVerification(ctx, []coordinator.Submission{sub(day, "B62a")}); !errors.Is(err, context.Canceled) {
		t.Errorf("update error %v, want context.Canceled", err)
	}
}

func TestSubmissionsMissingTable(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	if err := cassandratest.Admin(t).Query("DROP TABLE " + cfg.Keyspace + ".submissions").Exec(); err != nil {
		t.Fatal(err)
	}
	_, err := open(t, cfg).Submissions(context.Background(), coordinator.Window{Start: day, End: day.Add(time.Hour)})
	if err == nil || !strings.Contains(err.Error(), "table submissions does not exist") {
		t.Fatalf("error %v, want one naming the missing table", err)
	}
}

func TestOpenPasswordRejected(t *testing.T) {
	cfg := cassandratest.NewKeyspace(t)
	cfg.Password = "definitely-wrong-Pa55"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := cassandra.Open(ctx, cfg)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded with a wrong password")
	}
	msg := err.Error()
	if !strings.Contains(msg, "password authentication as "+cfg.Username) || !strings.Contains(strings.ToLower(msg), "password") {
		t.Errorf("error %q does not say that the login was refused", msg)
	}
	if strings.Contains(msg, cfg.Password) {
		t.Errorf("error %q shows the password", msg)
	}
	t.Log(msg)
}

func TestOpenSigV4AgainstPlainCassandra(t *testing.T) {
	// A SigV4 client and a server that expects passwords do not agree; the
	// error must say so rather than hang.
	cfg := cassandratest.NewKeyspace(t)
	cfg.Username, cfg.Password, cfg.AWSRegion = "", "", "us-west-2"
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := cassandra.Open(ctx, cfg)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
	if !strings.Contains(err.Error(), "AWS SigV4 with the AWS default credential chain in us-west-2 (credentials from EnvConfigCredentials)") || strings.Contains(err.Error(), "AKIDEXAMPLE") {
		t.Errorf("error %q", err)
	}
	t.Log(err)
}

func TestOpenRejectsBadKeyspace(t *testing.T) {
	for _, ks := range []string{"", "a.b", "x; DROP KEYSPACE y", "1abc", strings.Repeat("k", 49)} {
		_, err := cassandra.Open(context.Background(), config.Cassandra{Keyspace: ks, Host: "127.0.0.1", Username: "u", Password: "p"})
		if err == nil || !strings.Contains(err.Error(), "keyspace") {
			t.Errorf("keyspace %q: error %v", ks, err)
		}
	}
}

func TestTLS(t *testing.T) {
	cfg := cassandratest.TLS(t, cassandratest.NewKeyspace(t))
	cassandratest.Insert(t, cfg, sub(day, "B62tls"))
	w := coordinator.Window{Start: day, End: day.Add(time.Hour)}

	for _, verify := range []bool{true, false} {
		t.Run(fmt.Sprintf("verify host %v", verify), func(t *testing.T) {
			c := cfg
			c.VerifyHost = verify
			check(t, open(t, c), w, []coordinator.Submission{sub(day, "B62tls")})
		})
	}

	wrong := filepath.Join(t.TempDir(), "other-ca.pem")
	writeSelfSigned(t, wrong)
	for _, verify := range []bool{true, false} {
		t.Run(fmt.Sprintf("wrong CA, verify host %v", verify), func(t *testing.T) {
			c := cfg
			c.SSLCertFile, c.VerifyHost = wrong, verify
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := cassandra.Open(ctx, c, cassandra.WithTimeouts(5*time.Second, 5*time.Second))
			if err == nil {
				s.Close()
				t.Fatal("Open trusted a server whose certificate the CA did not sign")
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %q does not mention the certificate", err)
			}
			t.Log(err)
		})
	}

	t.Run("unreadable CA", func(t *testing.T) {
		c := cfg
		c.SSLCertFile = filepath.Join(t.TempDir(), "missing.pem")
		if _, err := cassandra.Open(context.Background(), c); err == nil || !strings.Contains(err.Error(), "CA bundle") {
			t.Errorf("error %v", err)
		}
		notPEM := filepath.Join(t.TempDir(), "not.pem")
		if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.SSLCertFile = notPEM
		if _, err := cassandra.Open(context.Background(), c); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Errorf("error %v", err)
		}
	})
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and
// localhost that has nothing to do with the server's.
func writeSelfSigned(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
