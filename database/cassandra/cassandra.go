// Package cassandra reads the collector's uptime submissions from Apache
// Cassandra or AWS Keyspaces and writes the verifier's results back.
//
// The collector stores one row per submission in <keyspace>.submissions,
// partitioned by (submitted_at_date, shard): the UTC date as 'YYYY-MM-DD' text
// and the 144-second slice of that day (600 shards a day). A window is read
// by querying the partitions it touches, with IN lists small enough for
// Keyspaces (at most 100 partitions per statement), reading every page and
// sorting the merged rows on the client.
package cassandra

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/delegation-program/uptime-coordinator/config"
)

// Defaults of the connection. The request timeout is the original
// coordinator's; the retry policy is its exponential backoff.
const (
	DefaultPort           = 9042
	DefaultRequestTimeout = 20 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultPageSize       = 5000
)

// keyspaceName is what Open accepts as a keyspace: an unquoted CQL identifier
// (Cassandra allows at most 48 characters). It is spliced into statements, so
// anything else is refused.
var keyspaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)

// Store reads and updates the submissions table. It is safe for concurrent
// use.
type Store struct {
	session  *gocql.Session
	pageSize int

	selectQuery string
	updateQuery string
}

// Option changes how Open connects or reads.
type Option func(*options)

type options struct {
	pageSize       int
	requestTimeout time.Duration
	connectTimeout time.Duration
	retry          gocql.RetryPolicy
	stsEndpoint    string // tests point web identity at a local STS
}

// WithPageSize sets the number of rows a page holds (default 5000). Keyspaces
// also cuts pages at 1 MB regardless.
func WithPageSize(n int) Option { return func(o *options) { o.pageSize = n } }

// WithTimeouts sets the per-request and the connect timeout.
func WithTimeouts(request, connect time.Duration) Option {
	return func(o *options) { o.requestTimeout, o.connectTimeout = request, connect }
}

// Open connects to the cluster cfg describes: native protocol v4,
// reads at cfg.Consistency (default LOCAL_ONE, the original's), the
// original's retry policy (exponential backoff with jitter, base 0.1 s, at
// most 10 s, 10 retries), TLS as UsesTLS says, and password authentication
// or AWS SigV4 with the AWS SDK's default credential chain.
func Open(ctx context.Context, cfg config.Cassandra, opts ...Option) (*Store, error) {
	o := options{
		pageSize:       DefaultPageSize,
		requestTimeout: DefaultRequestTimeout,
		connectTimeout: DefaultConnectTimeout,
		retry:          NewBackoffRetryPolicy(),
	}
	for _, f := range opts {
		f(&o)
	}
	if o.pageSize < 1 {
		return nil, fmt.Errorf("cassandra: page size %d: must be at least 1", o.pageSize)
	}
	if !keyspaceName.MatchString(cfg.Keyspace) {
		return nil, fmt.Errorf("cassandra: keyspace %q: expected a CQL identifier (a letter, then letters, digits or _; at most 48)", cfg.Keyspace)
	}
	if cfg.Host == "" {
		return nil, errors.New("cassandra: no host configured")
	}

	cluster := gocql.NewCluster(cfg.Host)
	cluster.Port = cfg.Port
	if cluster.Port == 0 {
		cluster.Port = DefaultPort
	}
	cluster.ProtoVersion = 4
	cluster.Consistency = gocql.LocalOne // the original's (the driver's default)
	if cfg.Consistency != "" {
		c, err := gocql.ParseConsistencyWrapper(cfg.Consistency)
		if err != nil {
			return nil, fmt.Errorf("cassandra: consistency %q: %w", cfg.Consistency, err)
		}
		cluster.Consistency = c
	}
	cluster.Timeout = o.requestTimeout
	cluster.ConnectTimeout = o.connectTimeout
	cluster.RetryPolicy = o.retry
	cluster.PageSize = o.pageSize

	if UsesTLS(cfg) {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		cluster.SslOpts = &gocql.SslOptions{Config: tc, EnableHostVerification: cfg.VerifyHost}
	}

	a, err := newAuth(ctx, cfg, o.stsEndpoint)
	if err != nil {
		return nil, err
	}
	cluster.Authenticator = a.authenticator
	if a.aws != nil {
		// Fail early, with the credentials' own error, rather than in the
		// middle of the handshake.
		creds, err := a.aws.Retrieve(ctx)
		if err != nil {
			return nil, fmt.Errorf("cassandra: AWS credentials (%s): %w", a.describe, err)
		}
		a.describe += " (credentials from " + creds.Source + ")"
		// Keyspaces names its data centre after the region, as the original
		// coordinator's load balancing assumes.
		cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(a.region))
	}

	session, err := createSession(ctx, cluster)
	if err != nil {
		return nil, fmt.Errorf("cassandra: connecting to %s:%d (%s): %w", cfg.Host, cluster.Port, a.describe, err)
	}
	return &Store{
		session:     session,
		pageSize:    o.pageSize,
		selectQuery: "SELECT " + strings.Join(columns, ", ") + " FROM " + cfg.Keyspace + ".submissions" + selectWhere,
		updateQuery: "UPDATE " + cfg.Keyspace + ".submissions" + updateSet,
	}, nil
}

// createSession is gocql's CreateSession bounded by ctx. A session that
// arrives after ctx ended is closed.
func createSession(ctx context.Context, cluster *gocql.ClusterConfig) (*gocql.Session, error) {
	type result struct {
		s   *gocql.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := cluster.CreateSession()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Close closes the session.
func (s *Store) Close() { s.session.Close() }

// KeyspacesPort is the port of AWS Keyspaces' TLS endpoints.
const KeyspacesPort = 9142

//go:embed keyspaces-roots.pem
var keyspacesRoots []byte

// UsesTLS reports whether Open connects with TLS: when SSL_CERTFILE is set,
// and always to AWS Keyspaces (port 9142 or an *.amazonaws.com host), which
// only speaks TLS; the original always used TLS there.
func UsesTLS(cfg config.Cassandra) bool {
	host := strings.ToLower(strings.TrimSuffix(cfg.Host, "."))
	return cfg.SSLCertFile != "" || cfg.Port == KeyspacesPort || strings.HasSuffix(host, ".amazonaws.com")
}

// rootCAs is the CA bundle in cfg.SSLCertFile or, when unset, the system's
// roots plus the built-in roots of Keyspaces' certificates (Amazon Trust
// Services and Starfield), so a minimal image needs no bundle of its own.
func rootCAs(cfg config.Cassandra) (*x509.CertPool, error) {
	if cfg.SSLCertFile == "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(keyspacesRoots) {
			return nil, errors.New("cassandra: the built-in Keyspaces roots hold no certificate")
		}
		return pool, nil
	}
	pem, err := os.ReadFile(cfg.SSLCertFile)
	if err != nil {
		return nil, fmt.Errorf("cassandra: reading the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cassandra: %s holds no PEM certificate", cfg.SSLCertFile)
	}
	return pool, nil
}

// tlsConfig trusts rootCAs. With VerifyHost the server's certificate must
// also name the configured host; without it the chain is still verified
// (gocql alone would skip all verification), only the name check is left
// out, as in the original.
func tlsConfig(cfg config.Cassandra) (*tls.Config, error) {
	pool, err := rootCAs(cfg)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cfg.VerifyHost {
		// Every node is checked against the configured name: Keyspaces'
		// peers are discovered by address but carry the endpoint's name.
		tc.ServerName = cfg.Host
		return tc, nil
	}
	tc.InsecureSkipVerify = true // replaced by VerifyConnection below
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("cassandra: the server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
		if err != nil {
			return fmt.Errorf("cassandra: server certificate: %w", err)
		}
		return nil
	}
	return tc, nil
}
