package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Worker modes, as WORKER_MODE spells them.
const (
	// ModeKubernetes runs one Kubernetes Job per mini-batch
	// (workers/kubernetes).
	ModeKubernetes = "kubernetes"
	// ModeProcess runs one local subprocess per mini-batch
	// (workers/process).
	ModeProcess = "process"
	// ModeNone launches nothing: something else verifies, the coordinator
	// only scores.
	ModeNone = "none"
)

// Events receives what a launcher reports of its workers; mode is the
// launcher's Mode*. monitor.Monitor.Workers implements it.
type Events interface {
	// Started counts a worker launched (an adopted Job is not counted).
	Started(mode string)
	// Failed counts a worker that failed, or was stopped by WORKER_TIMEOUT.
	Failed(mode string)
	// Retried counts a failed worker started again (Kubernetes mode: a
	// verifier Pod the job controller replaced, a Failed Job created again).
	Retried(mode string)
}

// NoEvents is Events that reports nothing.
type NoEvents struct{}

func (NoEvents) Started(string) {}
func (NoEvents) Failed(string)  {}
func (NoEvents) Retried(string) {}

// ErrTimeout is wrapped by the error of a batch whose workers outlived
// WORKER_TIMEOUT, in both modes.
var ErrTimeout = errors.New("verifier timeout")

// Options is what both launchers take of the configuration: how workers are
// launched and what every verifier is told (Env). config.Config.WorkerOptions
// builds it from the configuration's sections.
type Options struct {
	Image, Tag string // WORKER_IMAGE, WORKER_TAG
	// Command is WORKER_COMMAND (process mode); empty: docker run of
	// Image:Tag.
	Command string
	// Timeout is WORKER_TIMEOUT, the bound of a batch's verification; 0
	// means none.
	Timeout time.Duration
	// Retries is RETRY_COUNT (Kubernetes mode: each Job's backoffLimit).
	Retries int
	// NoChecks is NO_CHECKS read as a boolean, for the launchers' log.
	NoChecks bool
	// PassEnv is what process-mode workers get of the coordinator's own
	// environment ("NAME=value").
	PassEnv []string
	// Mask hides every secret of the configuration in what is logged or
	// returned (config.SecretMasker); nil hides nothing.
	Mask *strings.Replacer

	// What the verifier contract hands every worker (Env).
	SubmissionStorage   string // SUBMISSION_STORAGE
	Postgres            Postgres
	Cassandra           Cassandra
	AWSRegion           string
	AWSS3Bucket         string
	NetworkName         string
	NoChecksValue       string // NO_CHECKS as given
	AuthVolumeMountPath string
}

// Postgres is the database a verifier reads and writes with
// SUBMISSION_STORAGE=POSTGRES; also what a launcher's leftovers are keyed
// by.
type Postgres struct {
	Host, DB, User, Password, SSLMode string
	Port                              int
}

// Cassandra is the store a verifier reads with SUBMISSION_STORAGE=CASSANDRA.
type Cassandra struct {
	Keyspace, Host     string // Host unresolved (see Prelude)
	Port               int
	Username, Password string
	// SSLCertFile is the coordinator's CA bundle (process-mode verifiers
	// share its file system).
	SSLCertFile                        string
	AWSAccessKeyID, AWSSecretAccessKey string
}

// Masker returns o.Mask, or a replacer that hides nothing.
func (o Options) Masker() *strings.Replacer {
	if o.Mask != nil {
		return o.Mask
	}
	return strings.NewReplacer()
}

// ImageRef returns the verifier image reference, Image:Tag.
func (o Options) ImageRef() string { return o.Image + ":" + o.Tag }

// WithTimeout bounds one batch's verification by WORKER_TIMEOUT: the
// returned context ends after o.Timeout (never when it is 0) with the cause
// ErrTimeout, which TimedOut tells apart from the end of ctx.
func (o Options) WithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, o.Timeout, ErrTimeout)
}

// TimedOut reports whether runCtx (from WithTimeout) ended by WORKER_TIMEOUT
// rather than by its parent.
func TimedOut(runCtx context.Context) bool {
	return runCtx.Err() != nil && errors.Is(context.Cause(runCtx), ErrTimeout)
}

// Prelude is what both launchers do before they launch a batch's workers:
// say that the verifiers run with --no-checks, and resolve CASSANDRA_HOST
// (ResolveHost). It fails only when ctx ended, with its cause.
func (o Options) Prelude(ctx context.Context, log *slog.Logger) (cassandraHost string, err error) {
	if o.NoChecks {
		log.Info("stateless verifier will run with --no-checks")
	}
	host := ResolveHost(ctx, o.Cassandra.Host, log)
	if ctx.Err() != nil {
		return "", fmt.Errorf("before launching the verifiers: %w", context.Cause(ctx))
	}
	return host, nil
}
