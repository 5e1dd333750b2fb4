package workers

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestFormatTimestamp(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		// The original's own example: datetime(2023, 11, 14, 14, 35, 47, 630).
		{time.Date(2023, 11, 14, 14, 35, 47, 630_000, time.UTC), "2023-11-14 14:35:47.0+0000"},
		{time.Date(2023, 11, 14, 14, 35, 47, 600_000_000, time.UTC), "2023-11-14 14:35:47.6+0000"},
		{time.Date(2023, 11, 14, 14, 35, 47, 999_999_999, time.UTC), "2023-11-14 14:35:47.9+0000"}, // truncated
		{time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), "2024-01-02 00:00:00.0+0000"},
		{time.Date(2024, 1, 2, 0, 30, 5, 0, cet), "2024-01-01 23:30:05.0+0000"},
	} {
		if got := FormatTimestamp(tc.in); got != tc.want {
			t.Errorf("FormatTimestamp(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	want := time.Date(2023, 11, 14, 14, 35, 47, 600_000_000, time.UTC)
	for _, s := range []string{
		"2023-11-14 14:35:47.6+0000",
		" 2023-11-14 14:35:47.600000+00:00 ",
		"2023-11-14 14:35:47.6Z",
		"2023-11-14T14:35:47.6Z",
		"2023-11-14T15:35:47.6+01:00",
		"2023-11-14 15:35:47.6+0100",
		"2023-11-14 14:35:47.6+00",
		"2023-11-14 14:35:47.6",
		"2023-11-14T14:35:47.600",
	} {
		got, err := ParseTimestamp(s)
		if err != nil {
			t.Errorf("ParseTimestamp(%q): %v", s, err)
			continue
		}
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTimestamp(%q) = %v, want %v", s, got, want)
		}
	}
	for _, s := range []string{"", "yesterday", "2023-11-14", "1700000000", "2023-13-14 14:35:47.6+0000"} {
		if _, err := ParseTimestamp(s); err == nil {
			t.Errorf("ParseTimestamp(%q): no error", s)
		}
	}
	// Round trip: parsing what FormatTimestamp renders gives the time
	// truncated to a tenth of a second.
	at := time.Date(2024, 6, 1, 0, 6, 51, 428_571_428, time.UTC)
	got, err := ParseTimestamp(FormatTimestamp(at))
	if err != nil || !got.Equal(at.Truncate(100*time.Millisecond)) {
		t.Errorf("round trip of %v: %v, %v", at, got, err)
	}
}

func TestEnv(t *testing.T) {
	o := Options{
		Image: "verifier", Tag: "1.0", NoChecks: true, NoChecksValue: "True",
		SubmissionStorage: "CASSANDRA",
		Postgres:          Postgres{Host: "db.internal", Port: 6543, DB: "delegation", User: "coord", Password: "pg-secret", SSLMode: "require"},
		Cassandra: Cassandra{Keyspace: "bpu", Host: "cassandra.example", Port: 9142, Username: "svc", Password: "cass-secret",
			SSLCertFile: "/etc/ssl/keyspaces.crt", AWSAccessKeyID: "AKIAEXAMPLE", AWSSecretAccessKey: "aws-secret"},
		AWSRegion: "us-west-2", AWSS3Bucket: "blocks-bucket", NetworkName: "mainnet", AuthVolumeMountPath: "/auth",
	}
	start, end := time.Date(2024, 6, 1, 0, 4, 0, 0, time.UTC), time.Date(2024, 6, 1, 0, 8, 0, 0, time.UTC)
	got := Env(o, "delegation-verify-24-06-01-00-30-1", start, end, "10.1.2.3")
	want := []EnvVar{
		{"AWS_ROLE_SESSION_NAME", "delegation-verify-24-06-01-00-30-1", false},
		{"AWS_REGION", "us-west-2", false},
		{"AWS_DEFAULT_REGION", "us-west-2", false},
		{"AWS_S3_BUCKET", "blocks-bucket", false},
		{"AWS_KEYSPACE", "bpu", false},
		{"CASSANDRA_HOST", "10.1.2.3", false},
		{"CASSANDRA_PORT", "9142", false},
		{"CASSANDRA_USERNAME", "svc", false},
		{"CASSANDRA_PASSWORD", "cass-secret", true},
		{"SSL_CERTFILE", "/root/.cassandra/sf-class2-root.crt", false},
		{"AUTH_VOLUME_MOUNT_PATH", "/auth", false},
		{"NETWORK_NAME", "mainnet", false},
		{"START_TIMESTAMP", "2024-06-01 00:04:00.0+0000", false},
		{"END_TIMESTAMP", "2024-06-01 00:08:00.0+0000", false},
		{"NO_CHECKS", "True", false},
		{"AWS_ACCESS_KEY_ID", "AKIAEXAMPLE", true},
		{"AWS_SECRET_ACCESS_KEY", "aws-secret", true},
		{"SUBMISSION_STORAGE", "CASSANDRA", false},
		{"POSTGRES_HOST", "db.internal", false},
		{"POSTGRES_DB", "delegation", false},
		{"POSTGRES_USER", "coord", false},
		{"POSTGRES_PASSWORD", "pg-secret", true},
		{"POSTGRES_PORT", "6543", false},
		{"POSTGRES_SSLMODE", "require", false},
	}
	if len(got) != len(want) {
		t.Fatalf("Env gives %d variables, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Env[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}

	// Unset values are passed on empty, ports included.
	for _, v := range Env(Options{}, "j", start, end, "0.0.0.0") {
		switch v.Name {
		case "AWS_ROLE_SESSION_NAME", "CASSANDRA_HOST", "SSL_CERTFILE", "START_TIMESTAMP", "END_TIMESTAMP":
		default:
			if v.Value != "" {
				t.Errorf("%s = %q, want empty", v.Name, v.Value)
			}
		}
	}
}

func TestTimeoutPrelude(t *testing.T) {
	// No WORKER_TIMEOUT: the context ends only with its parent, and that is
	// no timeout.
	parent, cancel := context.WithCancel(t.Context())
	ctx, stop := Options{}.WithTimeout(parent)
	defer stop()
	cancel()
	<-ctx.Done()
	if TimedOut(ctx) {
		t.Error("a cancelled parent counts as WORKER_TIMEOUT")
	}

	ctx, stop = Options{Timeout: 10 * time.Millisecond}.WithTimeout(t.Context())
	defer stop()
	<-ctx.Done()
	if !TimedOut(ctx) || !errors.Is(context.Cause(ctx), ErrTimeout) {
		t.Errorf("after WORKER_TIMEOUT: TimedOut %v, cause %v", TimedOut(ctx), context.Cause(ctx))
	}
	// The prelude does not resolve anything once the timeout is over, and
	// says why.
	if _, err := (Options{Cassandra: Cassandra{Host: "localhost"}}).Prelude(ctx, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrTimeout) {
		t.Errorf("Prelude after the timeout: %v, want ErrTimeout", err)
	}
	host, err := Options{Cassandra: Cassandra{Host: "localhost"}}.Prelude(t.Context(), slog.New(slog.DiscardHandler))
	if err != nil || host != "127.0.0.1" {
		t.Errorf("Prelude: %q, %v; want 127.0.0.1", host, err)
	}
}

func TestResolveHost(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	if got := ResolveHost(ctx, "", log); got != "0.0.0.0" {
		t.Errorf("empty host: %q, want 0.0.0.0", got)
	}
	if got := ResolveHost(ctx, "localhost", log); got != "127.0.0.1" {
		t.Errorf("localhost: %q, want 127.0.0.1", got)
	}
	if got := ResolveHost(ctx, "192.0.2.7", log); got != "192.0.2.7" {
		t.Errorf("an address: %q", got)
	}

	// Failure: every try, with doubling waits, then the host unchanged.
	var logs strings.Builder
	began := time.Now()
	got := resolveHost(ctx, net.DefaultResolver, "no-such-host.invalid", slog.New(slog.NewTextHandler(&logs, nil)), 3, 20*time.Millisecond)
	if got != "no-such-host.invalid" {
		t.Errorf("unresolvable host: %q, want it unchanged", got)
	}
	if took := time.Since(began); took < 60*time.Millisecond {
		t.Errorf("3 tries took %v, want at least 20ms + 40ms of backoff", took)
	}
	if n := strings.Count(logs.String(), "retrying"); n != 2 {
		t.Errorf("%d retry warnings, want 2:\n%s", n, logs.String())
	}

	// A cancelled context stops the retries.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	began = time.Now()
	if got := resolveHost(cctx, net.DefaultResolver, "no-such-host.invalid", log, 5, time.Second); got != "no-such-host.invalid" {
		t.Errorf("cancelled: %q", got)
	}
	if took := time.Since(began); took > 500*time.Millisecond {
		t.Errorf("cancelled resolution took %v", took)
	}
}

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestJobNames(t *testing.T) {
	now := time.Date(2024, 6, 1, 9, 5, 59, 0, time.FixedZone("X", -3600))
	group := JobGroupName(now)
	if group != "delegation-verify-24-06-01-10-05" {
		t.Errorf("JobGroupName = %q", group)
	}
	if got := JobName(group, 3); got != "delegation-verify-24-06-01-10-05-3" {
		t.Errorf("JobName = %q", got)
	}
	for _, g := range []string{group, strings.Repeat("x", 100), "-Odd_Group.Name-", "", "---"} {
		for _, i := range []int{0, 7, 999, 1 << 40} {
			name := JobName(g, i)
			if len(name) > 63 || !dns1123Label.MatchString(name) {
				t.Errorf("JobName(%q, %d) = %q: not a DNS-1123 label of at most 63 characters", g, i, name)
			}
		}
	}
}
