// Package kubernetes runs the stateless verifier as Kubernetes Jobs, one per
// mini-batch (WORKER_MODE=kubernetes, the original coordinator's production
// mode).
//
// Each Job is the original's: the verifier image with the entrypoint script
// from a ConfigMap, an init container, the auth emptyDir, Karpenter's node
// pool and do-not-disrupt annotation, a topology spread over the batch's
// Jobs, backoffLimit RETRY_COUNT and the verifier contract's environment
// (workers.Env). Secrets are never written into a Job: they are read by the
// Pod from the Secret WORKER_SECRET_NAME (secretKeyRef, key = variable name).
//
// The Jobs carry labels naming their batch window and mini-batch, and the
// Launcher follows them with an informer filtered on those labels:
//
//   - A batch succeeds when every Job has the Complete condition.
//   - A batch fails as soon as one Job has the Failed condition (its pods
//     failed RETRY_COUNT+1 times), with the Job's reason and message and the
//     last pod's exit status in the error. The batch's other Jobs are left
//     running: the engine's retry of the batch adopts them.
//   - A batch fails when it outlives WORKER_TIMEOUT; its unfinished Jobs are
//     then deleted (their Pods with them), so a retry starts them afresh.
//   - When ctx ends (shutdown), Verify returns ctx.Err() and leaves the Jobs
//     running; a restarted coordinator adopts them.
//
// Adoption: Verify first looks for Jobs of the same window and mini-batch
// split. A Complete one counts as done and a running one is followed instead
// of being duplicated. A Failed one is deleted (propagation Background) and
// created again, once per Verify call: the engine's batch retries
// (RETRY_COUNT) bound how often a mini-batch is retried in all.
package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// Mode is the worker mode this package implements, as passed to Events.
const Mode = workers.ModeKubernetes

// ErrJobFailed is wrapped by the error of a batch one of whose Jobs failed
// or disappeared.
var ErrJobFailed = errors.New("worker job failed")

// Launcher is the kubernetes-mode coordinator.Launcher.
type Launcher struct {
	opts      workers.Options
	kube      config.Kubernetes
	client    kubernetes.Interface
	namespace string
	log       *slog.Logger
	events    workers.Events
	now       func() time.Time
}

var _ coordinator.Launcher = (*Launcher)(nil)

// Option configures a Launcher.
type Option func(*Launcher)

// WithEvents reports worker counters to e (nil: none).
func WithEvents(e workers.Events) Option {
	return func(l *Launcher) {
		if e != nil {
			l.events = e
		}
	}
}

// WithClock sets the clock that names the Job groups (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(l *Launcher) { l.now = now }
}

// New returns a Launcher that runs the verifier Jobs, as o and the Jobs'
// settings k say, in namespace through clientset. log may be nil
// (slog.Default()).
func New(o workers.Options, k config.Kubernetes, clientset kubernetes.Interface, namespace string, log *slog.Logger, opts ...Option) *Launcher {
	if log == nil {
		log = slog.Default()
	}
	l := &Launcher{opts: o, kube: k, client: clientset, namespace: namespace, log: log, events: workers.NoEvents{}, now: time.Now}
	for _, opt := range opts {
		opt(l)
	}
	return l
}

// Preflight checks at start-up what every worker Job will need from the
// namespace, so that a missing piece fails the start with one clear message
// instead of leaving each verifier Pod in CreateContainerConfigError (or
// each Job without a pod): the workers' ServiceAccount and entrypoint
// ConfigMap must exist, and the Secret WORKER_SECRET_NAME must exist and
// hold every key the Jobs reference (SecretKeys). In compatibility mode
// (WORKER_SECRET_NAME empty) the Secret is not checked, and a warning says
// that secrets go into the Jobs as plain values.
func (l *Launcher) Preflight(ctx context.Context) error {
	if l.kube.SecretsInline {
		if err := l.preflightObjects(ctx); err != nil {
			return err
		}
		l.log.Warn("WORKER_SECRET_NAME is empty: compatibility mode, the worker Jobs get passwords and keys as plain " +
			"environment values, as the original coordinator passed them; anyone who can read Jobs or Pods in the " +
			"namespace can read them. Set WORKER_SECRET_NAME to a Secret holding them to keep them out of the Jobs.")
		return nil
	}
	if err := l.preflightObjects(ctx); err != nil {
		return err
	}
	keys := SecretKeys(l.opts, l.kube)
	if len(keys) == 0 {
		return nil // no secret is set: the Jobs reference none
	}
	name := l.kube.SecretName
	fix := "create it with those keys (the Helm chart does, from its values), or set WORKER_SECRET_NAME to the empty string " +
		"to pass them to the Jobs as plain environment values as the original coordinator did"
	secret, err := l.client.CoreV1().Secrets(l.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("worker Secret %q (WORKER_SECRET_NAME) does not exist in namespace %s; the worker Jobs read %s from it: %s",
			name, l.namespace, strings.Join(keys, ", "), fix)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("cannot read worker Secret %q (WORKER_SECRET_NAME) in namespace %s to check its keys: the coordinator's Role needs get on secrets (resourceNames [%s]): %w",
			name, l.namespace, name, err)
	case err != nil:
		return fmt.Errorf("reading worker Secret %q (WORKER_SECRET_NAME) in namespace %s: %w", name, l.namespace, err)
	}
	var missing []string
	for _, k := range keys {
		if _, ok := secret.Data[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("worker Secret %q (WORKER_SECRET_NAME) in namespace %s lacks the key(s) %s that the worker Jobs reference: add them, or %s",
			name, l.namespace, strings.Join(missing, ", "), fix)
	}
	l.log.Info("worker Secret holds every key the Jobs reference", "secret", name, "keys", keys)
	return nil
}

// preflightObjects checks that the workers' ServiceAccount and entrypoint
// ConfigMap exist: without the first the job controller creates no pod at
// all, without the second the pods never start, and neither fails the Job.
func (l *Launcher) preflightObjects(ctx context.Context) error {
	sa := cmp.Or(l.kube.ServiceAccount, ServiceAccountName)
	_, err := l.client.CoreV1().ServiceAccounts(l.namespace).Get(ctx, sa, metav1.GetOptions{})
	if err := preflightError(err, "ServiceAccount", sa, "WORKER_SERVICE_ACCOUNT", l.namespace,
		"the worker Jobs run as it; the job controller creates no pod without it"); err != nil {
		return err
	}
	cm := l.kube.EntrypointConfigMap
	_, err = l.client.CoreV1().ConfigMaps(l.namespace).Get(ctx, cm, metav1.GetOptions{})
	return preflightError(err, "ConfigMap", cm, "WORKER_ENTRYPOINT_CONFIGMAP", l.namespace,
		"it holds entrypoint-worker.sh, mounted into every worker Job; the pods never start without it")
}

func preflightError(err error, kind, name, variable, namespace, why string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("worker %s %q (%s) does not exist in namespace %s: %s", kind, name, variable, namespace, why)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("cannot read worker %s %q (%s) in namespace %s to check it exists: the coordinator's Role needs get on it: %w",
			kind, name, variable, namespace, err)
	default:
		return fmt.Errorf("reading worker %s %q (%s) in namespace %s: %w", kind, name, variable, namespace, err)
	}
}

// Verify creates (or adopts) one Job per mini-batch and waits for them; see
// the package documentation for the outcomes.
func (l *Launcher) Verify(ctx context.Context, batch coordinator.Window, parts []coordinator.Window) error {
	if len(parts) == 0 {
		return nil
	}
	r := &run{
		client:    l.client,
		namespace: l.namespace,
		opts:      l.opts,
		kube:      l.kube,
		events:    l.events,
		now:       l.now,
		batch:     batch,
		log:       l.log.With("namespace", l.namespace, "window_start", batch.Start, "window_end", batch.End),
		mask:      l.opts.Masker(),
	}
	for i, w := range parts {
		r.parts = append(r.parts, &part{index: i, window: w})
	}
	runCtx, cancel := l.opts.WithTimeout(ctx)
	defer cancel()
	err := r.verify(runCtx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		r.leave()
		return ctx.Err()
	case workers.TimedOut(runCtx):
		return r.timeout(ctx)
	}
	return err
}
