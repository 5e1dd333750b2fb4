// Package workers holds the contract between the coordinator and the
// stateless verifier that both worker modes (local processes and Kubernetes
// Jobs) honour: the timestamp format of a mini-batch's bounds, the
// verifier's environment, the worker names and the resolution of the
// Cassandra host; and what both launchers share: the mode names, their
// Options, Events, ErrTimeout and the prelude of a batch (WithTimeout,
// Prelude). It depends on no other package of the coordinator.
package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/delegation-program/uptime-coordinator/internal/retrypolicy"
)

// WorkerSSLCertFile is where the verifier image keeps the CA bundle for TLS
// to Cassandra / AWS Keyspaces; Env passes it as SSL_CERTFILE, as the
// original coordinator did for its Jobs.
const WorkerSSLCertFile = "/root/.cassandra/sf-class2-root.crt"

// FormatTimestamp renders t (in UTC) as the stateless verifier expects its
// START and END arguments: seconds with one fractional digit (truncated, not
// rounded) and a +0000 offset, e.g. "2023-11-14 14:35:47.6+0000".
func FormatTimestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.0") + "+0000"
}

// timestampLayouts are the forms ParseTimestamp accepts. Go accepts a
// fractional second after the seconds field even when the layout has none.
var timestampLayouts = []string{
	"2006-01-02 15:04:05Z0700",  // FormatTimestamp: 2023-11-14 14:35:47.6+0000
	"2006-01-02 15:04:05Z07:00", // Python's str(datetime): 2023-11-14 14:35:47.000630+00:00
	"2006-01-02 15:04:05Z07",
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05Z07:00", // RFC 3339
	"2006-01-02 15:04:05",       // no offset: UTC
	"2006-01-02T15:04:05",
}

// ParseTimestamp parses a mini-batch bound as FormatTimestamp renders it, and
// the other forms a verifier may receive: any number of fractional digits, an
// offset written +0000, +00:00, +00 or Z, a T between date and time, or no
// offset at all (UTC). The result is in UTC.
func ParseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid timestamp %q: expected e.g. %q", s, "2023-11-14 14:35:47.6+0000")
}

// EnvVar is one variable of the verifier's environment. Secret values
// (passwords and AWS keys) must not be logged nor written as plain values
// into a Job spec.
type EnvVar struct {
	Name   string
	Value  string
	Secret bool
}

// Env returns the verifier's environment for the mini-batch [start, end),
// in the order of the original coordinator: jobName becomes
// AWS_ROLE_SESSION_NAME and cassandraHost (the resolved address, see
// Prelude) CASSANDRA_HOST; SSL_CERTFILE is WorkerSSLCertFile, the path
// inside the verifier image. Values the configuration does not set are
// empty. The passwords and AWS keys are Secret (SecretVars).
func Env(o Options, jobName string, start, end time.Time, cassandraHost string) []EnvVar {
	port := func(p int) string {
		if p == 0 {
			return ""
		}
		return strconv.Itoa(p)
	}
	vars := []EnvVar{
		{Name: "AWS_ROLE_SESSION_NAME", Value: jobName},
		{Name: "AWS_REGION", Value: o.AWSRegion},
		{Name: "AWS_DEFAULT_REGION", Value: o.AWSRegion},
		{Name: "AWS_S3_BUCKET", Value: o.AWSS3Bucket},
		{Name: "AWS_KEYSPACE", Value: o.Cassandra.Keyspace},
		{Name: "CASSANDRA_HOST", Value: cassandraHost},
		{Name: "CASSANDRA_PORT", Value: port(o.Cassandra.Port)},
		{Name: "CASSANDRA_USERNAME", Value: o.Cassandra.Username},
		{Name: "CASSANDRA_PASSWORD", Value: o.Cassandra.Password},
		{Name: "SSL_CERTFILE", Value: WorkerSSLCertFile},
		{Name: "AUTH_VOLUME_MOUNT_PATH", Value: o.AuthVolumeMountPath},
		{Name: "NETWORK_NAME", Value: o.NetworkName},
		{Name: "START_TIMESTAMP", Value: FormatTimestamp(start)},
		{Name: "END_TIMESTAMP", Value: FormatTimestamp(end)},
		{Name: "NO_CHECKS", Value: o.NoChecksValue},
		{Name: "AWS_ACCESS_KEY_ID", Value: o.Cassandra.AWSAccessKeyID},
		{Name: "AWS_SECRET_ACCESS_KEY", Value: o.Cassandra.AWSSecretAccessKey},
		{Name: "SUBMISSION_STORAGE", Value: o.SubmissionStorage},
		{Name: "POSTGRES_HOST", Value: o.Postgres.Host},
		{Name: "POSTGRES_DB", Value: o.Postgres.DB},
		{Name: "POSTGRES_USER", Value: o.Postgres.User},
		{Name: "POSTGRES_PASSWORD", Value: o.Postgres.Password},
		{Name: "POSTGRES_PORT", Value: port(o.Postgres.Port)},
		{Name: "POSTGRES_SSLMODE", Value: o.Postgres.SSLMode},
	}
	for i := range vars {
		vars[i].Secret = slices.Contains(SecretVars, vars[i].Name)
	}
	return vars
}

// SecretVars are the variables of Env that are secrets: never logged, never
// written as plain values into a Job spec. The configuration's registry
// marks them secret too (a test of config checks it).
var SecretVars = []string{"CASSANDRA_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "POSTGRES_PASSWORD"}

// Resolution retries of ResolveHost, as the original's try_get_hostname_ip.
const (
	resolveTries = 5
	resolveWait  = 200 * time.Millisecond
)

// ResolveHost resolves host to an IPv4 address, as the original coordinator
// did for CASSANDRA_HOST before handing it to the verifiers: up to 5 tries,
// waiting 0.2 s after the first failure and twice as long after each next
// one. An empty host gives "0.0.0.0"; when every try fails (or ctx ends) the
// host is returned unchanged, and the verifier resolves it itself.
func ResolveHost(ctx context.Context, host string, log *slog.Logger) string {
	return resolveHost(ctx, net.DefaultResolver, host, log, resolveTries, resolveWait)
}

func resolveHost(ctx context.Context, r *net.Resolver, host string, log *slog.Logger, tries int, wait time.Duration) string {
	if host == "" {
		return "0.0.0.0"
	}
	if log == nil {
		log = slog.Default()
	}
	b := retrypolicy.Policy{First: wait}.BackOff() // doubling, never capped
	attempt := 0
	ip, err := backoff.Retry(ctx, func() (string, error) {
		attempt++
		ips, err := r.LookupIP(ctx, "ip4", host)
		if err == nil && len(ips) > 0 {
			return ips[0].String(), nil
		}
		if err == nil {
			err = errors.New("no IPv4 address")
		}
		return "", err
	},
		backoff.WithBackOff(b),
		backoff.WithMaxTries(uint(max(tries, 1))),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			log.Warn("resolving a host failed; retrying", "host", host, "attempt", attempt, "retry_in", next, "error", err)
		}))
	if err == nil {
		return ip
	}
	log.Error("could not resolve a host; passing it on unresolved", "host", host, "tries", attempt, "error", err)
	return host
}

// jobNamePrefix starts every worker Job's name.
const jobNamePrefix = "delegation-verify-"

// JobGroupName names the Jobs of one batch, as the original coordinator:
// "delegation-verify-" and now in UTC as yy-mm-dd-HH-MM.
func JobGroupName(now time.Time) string {
	return jobNamePrefix + now.UTC().Format("06-01-02-15-04")
}

// maxLabel is the length limit of a DNS-1123 label (RFC 1123), which a
// Kubernetes Job's name and label values must satisfy.
const maxLabel = 63

// JobName names the Job of mini-batch i of a group: group + "-" + i. The
// result is always a valid DNS-1123 label of at most 63 characters: group is
// lower-cased, characters outside [a-z0-9-] become "-", and a group too long
// for the suffix is shortened.
func JobName(group string, i int) string {
	suffix := "-" + strconv.Itoa(max(i, 0))
	g := []byte(strings.ToLower(group))
	for k, c := range g {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			g[k] = '-'
		}
	}
	name := strings.TrimLeft(string(g), "-")
	if len(name) > maxLabel-len(suffix) {
		name = name[:maxLabel-len(suffix)]
	}
	if name == "" {
		name = strings.TrimSuffix(jobNamePrefix, "-")
	}
	return name + suffix
}
