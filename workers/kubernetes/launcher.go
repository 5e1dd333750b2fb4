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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// Mode is the worker mode this package implements, as passed to Events.
const Mode = config.WorkerKubernetes

var (
	// ErrTimeout is wrapped by the error of a batch whose Jobs outlived
	// WORKER_TIMEOUT.
	ErrTimeout = errors.New("verifier timeout")
	// ErrJobFailed is wrapped by the error of a batch one of whose Jobs
	// failed or disappeared.
	ErrJobFailed = errors.New("worker job failed")
)

// Events receives the Launcher's worker counters; monitor.WorkerEvents
// implements it. mode is always Mode.
type Events interface {
	// Started counts a worker Job created (adopted Jobs are not counted).
	Started(mode string)
	// Failed counts a worker Job that failed or was stopped by the timeout.
	Failed(mode string)
	// Retried counts a failed verifier pod the job controller replaced, and
	// a Failed Job deleted and created again on adoption.
	Retried(mode string)
}

// Launcher is the kubernetes-mode coordinator.Launcher.
type Launcher struct {
	cfg       *config.Config
	client    kubernetes.Interface
	namespace string
	log       *slog.Logger
	events    Events
	now       func() time.Time
}

var _ coordinator.Launcher = (*Launcher)(nil)

// Option configures a Launcher.
type Option func(*Launcher)

// WithEvents reports worker counters to e.
func WithEvents(e Events) Option {
	return func(l *Launcher) { l.events = e }
}

// WithClock sets the clock that names the Job groups (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(l *Launcher) { l.now = now }
}

// New returns a Launcher that runs the verifier Jobs in namespace through
// clientset. log may be nil (slog.Default()).
func New(cfg *config.Config, clientset kubernetes.Interface, namespace string, log *slog.Logger, opts ...Option) *Launcher {
	if log == nil {
		log = slog.Default()
	}
	l := &Launcher{cfg: cfg, client: clientset, namespace: namespace, log: log, now: time.Now}
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
	if l.cfg.Kubernetes.SecretsInline {
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
	keys := SecretKeys(l.cfg)
	if len(keys) == 0 {
		return nil // no secret is set: the Jobs reference none
	}
	name := l.cfg.Kubernetes.SecretName
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
	sa := cmp.Or(l.cfg.Kubernetes.ServiceAccount, ServiceAccountName)
	_, err := l.client.CoreV1().ServiceAccounts(l.namespace).Get(ctx, sa, metav1.GetOptions{})
	if err := preflightError(err, "ServiceAccount", sa, "WORKER_SERVICE_ACCOUNT", l.namespace,
		"the worker Jobs run as it; the job controller creates no pod without it"); err != nil {
		return err
	}
	cm := l.cfg.Kubernetes.EntrypointConfigMap
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

// part is one mini-batch and the Job that verifies it.
type part struct {
	index  int
	window coordinator.Window
	name   string    // the Job; "" until adopted or created
	uid    types.UID // "" until known
	done   bool
	// retries is how many retries of this Job were reported to Events.
	retries int32
	began   time.Time
}

func (p *part) log(log *slog.Logger) *slog.Logger {
	return log.With("job", p.name, "mini_batch", p.index,
		"start", workers.FormatTimestamp(p.window.Start), "end", workers.FormatTimestamp(p.window.End))
}

// run is the state of one Verify call.
type run struct {
	*Launcher
	batch  coordinator.Window
	parts  []*part
	log    *slog.Logger
	jobs   batchlisters.JobNamespaceLister
	notify chan struct{}
	mask   *strings.Replacer

	// observed is the latest state the informer delivered of each Job of
	// the window, kept after the Job is deleted (gone): a Job that finishes
	// and is deleted at once (ttlSecondsAfterFinished 0) between two looks
	// at the lister still counts as finished.
	mu       sync.Mutex
	observed map[types.UID]*batchv1.Job
	gone     map[types.UID]bool

	// pods lists the window's verifier Pods; stuckSince is when each Pod
	// was first seen stuck (see stuckReason), wake the earliest time a
	// stuck Pod reaches WORKER_STUCK_TIMEOUT (zero: none).
	pods       corelisters.PodNamespaceLister
	stuckSince map[types.UID]time.Time
	wake       time.Time
}

// Verify creates (or adopts) one Job per mini-batch and waits for them; see
// the package documentation for the outcomes.
func (l *Launcher) Verify(ctx context.Context, batch coordinator.Window, parts []coordinator.Window) error {
	if len(parts) == 0 {
		return nil
	}
	r := &run{
		Launcher:   l,
		batch:      batch,
		log:        l.log.With("namespace", l.namespace, "window_start", batch.Start, "window_end", batch.End),
		notify:     make(chan struct{}, 1),
		mask:       workers.Masker(workers.Env(l.cfg, "", coordinator.Window{}, ""), l.cfg.Secrets()...),
		observed:   map[types.UID]*batchv1.Job{},
		gone:       map[types.UID]bool{},
		stuckSince: map[types.UID]time.Time{},
	}
	for i, w := range parts {
		r.parts = append(r.parts, &part{index: i, window: w})
	}

	runCtx := ctx
	if d := l.cfg.Workers.Timeout; d > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeoutCause(ctx, d, ErrTimeout)
		defer cancel()
	}
	err := r.verify(runCtx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		r.leave()
		return ctx.Err()
	case errors.Is(context.Cause(runCtx), ErrTimeout) && runCtx.Err() != nil:
		return r.timeout(ctx)
	}
	return err
}

func (r *run) verify(ctx context.Context) error {
	sel := windowSelector(r.batch)
	// A plain list first: a missing permission then fails the batch with a
	// clear error, where an informer would retry until the timeout.
	if _, err := r.client.BatchV1().Jobs(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String(), Limit: 1}); err != nil {
		return fmt.Errorf("listing worker jobs in namespace %s: %w", r.namespace, err)
	}

	informerCtx, stop := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(r.client, 0,
		informers.WithNamespace(r.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
	jobs := factory.Batch().V1().Jobs()
	if _, err := jobs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.observe(obj, false) },
		UpdateFunc: func(_, obj any) { r.observe(obj, false) },
		DeleteFunc: func(obj any) { r.observe(obj, true) },
	}); err != nil {
		stop()
		return fmt.Errorf("watching worker jobs: %w", err)
	}
	r.jobs = jobs.Lister().Jobs(r.namespace)
	// The Pods carry the window labels but not the managed-by label.
	podSel := labels.SelectorFromSet(labels.Set{LabelWindowStart: unix(r.batch.Start), LabelWindowEnd: unix(r.batch.End)})
	podFactory := informers.NewSharedInformerFactoryWithOptions(r.client, 0,
		informers.WithNamespace(r.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = podSel.String() }))
	pods := podFactory.Core().V1().Pods()
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.wakeUp() },
		UpdateFunc: func(_, _ any) { r.wakeUp() },
	}); err != nil {
		stop()
		return fmt.Errorf("watching worker pods: %w", err)
	}
	r.pods = pods.Lister().Pods(r.namespace)
	factory.Start(informerCtx.Done())
	podFactory.Start(informerCtx.Done())
	defer func() {
		stop()
		factory.Shutdown()
		podFactory.Shutdown()
	}()
	if res := factory.WaitForCacheSyncWithContext(ctx); res.Err != nil {
		return fmt.Errorf("watching worker jobs: %w", res.Err)
	}
	if res := podFactory.WaitForCacheSyncWithContext(ctx); res.Err != nil {
		return fmt.Errorf("watching worker pods: %w", res.Err)
	}

	if err := r.adopt(ctx); err != nil {
		return err
	}
	if err := r.create(ctx); err != nil {
		return err
	}
	return r.wait(ctx)
}

// observe records a Job the informer delivered and wakes the wait loop
// up; events that arrive while it is busy are coalesced, as it always reads
// the latest state.
func (r *run) observe(obj any, deleted bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if j, ok := obj.(*batchv1.Job); ok {
		r.mu.Lock()
		r.observed[j.UID] = j
		if deleted {
			r.gone[j.UID] = true
		}
		r.mu.Unlock()
	}
	r.wakeUp()
}

// wakeUp wakes the wait loop up; wake-ups that arrive while it is busy are
// coalesced.
func (r *run) wakeUp() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// latest returns the latest state of the Job uid and whether it was
// deleted; nil when the informer has not delivered it yet.
func (r *run) latest(uid types.UID) (*batchv1.Job, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.observed[uid], r.gone[uid]
}

// adopt takes over the Jobs a previous Verify call (or coordinator) created
// for this window and split.
func (r *run) adopt(ctx context.Context) error {
	existing, err := r.jobs.List(windowSelector(r.batch))
	if err != nil {
		return fmt.Errorf("listing worker jobs: %w", err)
	}
	byPart := map[int][]*batchv1.Job{}
	for _, j := range existing {
		if j.Labels[LabelParts] != strconv.Itoa(len(r.parts)) {
			r.log.Warn("ignoring a worker job of the same window cut into a different number of mini-batches",
				"job", j.Name, "parts", j.Labels[LabelParts], "want_parts", len(r.parts))
			continue
		}
		i, err := strconv.Atoi(j.Labels[LabelPart])
		if err != nil || i < 0 || i >= len(r.parts) || j.DeletionTimestamp != nil {
			continue
		}
		byPart[i] = append(byPart[i], j)
	}
	for _, p := range r.parts {
		jobs := byPart[p.index]
		// Prefer a Complete Job, then the newest one still running.
		slices.SortFunc(jobs, func(a, b *batchv1.Job) int {
			ca, cb := finished(a, batchv1.JobComplete) != nil, finished(b, batchv1.JobComplete) != nil
			if ca != cb {
				if ca {
					return -1
				}
				return 1
			}
			return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
		})
		var failed []*batchv1.Job
		for _, j := range jobs {
			switch {
			case p.name != "":
				r.log.Warn("a second worker job for the same mini-batch; following the first", "job", j.Name, "following", p.name, "mini_batch", p.index)
			case finished(j, batchv1.JobComplete) != nil:
				p.name, p.uid, p.done = j.Name, j.UID, true
				p.log(r.log).Info("worker job already completed; mini-batch counts as verified")
			case finished(j, batchv1.JobFailed) != nil:
				failed = append(failed, j)
			default:
				p.name, p.uid, p.began = j.Name, j.UID, j.CreationTimestamp.Time
				p.retries = retries(j)
				p.log(r.log).Info("adopting running worker job", "created", j.CreationTimestamp.Time, "failed_pods", j.Status.Failed)
			}
		}
		if p.name != "" {
			continue
		}
		for _, j := range failed {
			c := finished(j, batchv1.JobFailed)
			r.log.Warn("deleting a failed worker job of this mini-batch to run it again", "job", j.Name, "mini_batch", p.index,
				"reason", c.Reason, "message", r.mask.Replace(c.Message))
			if err := r.deleteJob(ctx, j); err != nil {
				return err
			}
			r.retried()
		}
	}
	return nil
}

// create creates the Jobs of the parts no Job was adopted for.
func (r *run) create(ctx context.Context) error {
	var todo []*part
	for _, p := range r.parts {
		if p.name == "" {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if r.cfg.Workers.NoChecks {
		r.log.Info("stateless verifier will run with --no-checks")
	}
	host := workers.ResolveHost(ctx, r.cfg.Cassandra.Host, r.log)
	group, err := r.group(ctx)
	if err != nil {
		return err
	}
	for _, p := range todo {
		spec := jobSpec{group: group, batch: r.batch, parts: len(r.parts), index: p.index, part: p.window, cassandraHost: host}
		job, err := buildJob(r.cfg, r.namespace, spec)
		if err != nil {
			return fmt.Errorf("building the job of mini-batch %d: %w", p.index, err)
		}
		if err := r.waitGone(ctx, job.Name); err != nil {
			return err
		}
		created, err := r.client.BatchV1().Jobs(r.namespace).Create(ctx, job, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating worker job %s for mini-batch %d (%s - %s): %w", job.Name, p.index,
				workers.FormatTimestamp(p.window.Start), workers.FormatTimestamp(p.window.End), err)
		}
		p.name, p.uid, p.began = created.Name, created.UID, created.CreationTimestamp.Time
		p.log(r.log).Info("worker job created", "group", group, "image", r.cfg.Workers.Image+":"+r.cfg.Workers.Tag)
		if r.events != nil {
			r.events.Started(Mode)
		}
	}
	return nil
}

// group returns the name of this batch's new Jobs: workers.JobGroupName,
// with a suffix when Jobs of another window already use that name (batches
// that start within the same minute, as when catching up).
func (r *run) group(ctx context.Context) (string, error) {
	base := workers.JobGroupName(r.now())
	for n := 1; n <= 100; n++ {
		group := base
		if n > 1 {
			group = base + "-b" + strconv.Itoa(n)
		}
		list, err := r.client.BatchV1().Jobs(r.namespace).List(ctx, metav1.ListOptions{
			LabelSelector: labels.SelectorFromSet(labels.Set{LabelGroup: group}).String(),
		})
		if err != nil {
			return "", fmt.Errorf("listing worker jobs of group %s: %w", group, err)
		}
		// Jobs of this window and split in the group are the ones adopted or
		// deleted above; any other Job could hold a name this batch needs.
		if !slices.ContainsFunc(list.Items, func(j batchv1.Job) bool {
			return j.Labels[LabelWindowStart] != unix(r.batch.Start) || j.Labels[LabelWindowEnd] != unix(r.batch.End) ||
				j.Labels[LabelParts] != strconv.Itoa(len(r.parts))
		}) {
			return group, nil
		}
	}
	return "", fmt.Errorf("no free job group name for %s", base)
}

// deleteJob deletes a Job and, in the background, its Pods.
func (r *run) deleteJob(ctx context.Context, j *batchv1.Job) error {
	err := r.client.BatchV1().Jobs(r.namespace).Delete(ctx, j.Name, metav1.DeleteOptions{
		PropagationPolicy: new(metav1.DeletePropagationBackground),
		Preconditions:     &metav1.Preconditions{UID: &j.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting worker job %s: %w", j.Name, err)
	}
	return nil
}

// waitGone waits until no Job of this window named name is left, so that a
// deleted Job's name can be used again.
func (r *run) waitGone(ctx context.Context, name string) error {
	for {
		if _, err := r.jobs.Get(name); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading worker job %s: %w", name, err)
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the deleted worker job %s to go: %w", name, context.Cause(ctx))
		}
	}
}

// wait follows the Jobs until all completed or one failed.
func (r *run) wait(ctx context.Context) error {
	for {
		r.wake = time.Time{}
		pending := 0
		for _, p := range r.parts {
			if p.done {
				continue
			}
			if err := r.check(ctx, p); err != nil {
				return err
			}
			if !p.done {
				pending++
			}
		}
		if pending == 0 {
			r.log.Info("all worker jobs completed", "mini_batches", len(r.parts))
			return nil
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !r.wake.IsZero() {
			timer = time.NewTimer(time.Until(r.wake))
			fire = timer.C
		}
		select {
		case <-r.notify:
		case <-fire:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// check updates p from the informer's view of its Job.
func (r *run) check(ctx context.Context, p *part) error {
	j, deleted := r.latest(p.uid)
	if j == nil {
		return nil // created, not yet seen by the informer
	}
	finishedJob := finished(j, batchv1.JobComplete) != nil || finished(j, batchv1.JobFailed) != nil
	if deleted && !finishedJob {
		if r.events != nil {
			r.events.Failed(Mode)
		}
		return fmt.Errorf("%w: job %s (mini-batch %d) was deleted before it finished", ErrJobFailed, p.name, p.index)
	}
	if n := retries(j); n > p.retries {
		p.log(r.log).Warn("verifier pod failed; the job controller retries it", "failed_pods", j.Status.Failed,
			"backoff_limit", backoffLimit(j))
		for ; p.retries < n; p.retries++ {
			r.retried()
		}
	}
	if c := finished(j, batchv1.JobComplete); c != nil {
		p.done = true
		p.log(r.log).Info("worker job completed", "took", c.LastTransitionTime.Sub(p.began).Round(time.Millisecond))
		return nil
	}
	if c := finished(j, batchv1.JobFailed); c != nil {
		if r.events != nil {
			r.events.Failed(Mode)
		}
		err := fmt.Errorf("%w: job %s (mini-batch %d, %s - %s) failed after %d pod failures: %s: %s%s",
			ErrJobFailed, j.Name, p.index, workers.FormatTimestamp(p.window.Start), workers.FormatTimestamp(p.window.End),
			j.Status.Failed, c.Reason, r.mask.Replace(c.Message), r.lastPod(ctx, j))
		p.log(r.log).Error("worker job failed", "error", err)
		return err
	}
	return r.checkStuck(ctx, p, j)
}

// checkStuck fails the attempt when a Pod of p's Job has been stuck (see
// stuckReason) for WORKER_STUCK_TIMEOUT: such a Pod never fails by itself,
// so its Job would otherwise hold the batch until WORKER_TIMEOUT. The Job
// is deleted, so the engine's retry of the batch starts it afresh.
func (r *run) checkStuck(ctx context.Context, p *part, j *batchv1.Job) error {
	limit := r.cfg.Kubernetes.StuckTimeout
	if limit <= 0 || r.pods == nil {
		return nil
	}
	pods, err := r.pods.List(labels.SelectorFromSet(labels.Set{batchv1.ControllerUidLabel: string(j.UID)}))
	if err != nil {
		return fmt.Errorf("listing the pods of worker job %s: %w", j.Name, err)
	}
	now := time.Now()
	for _, pod := range pods {
		reason, message := stuckReason(pod)
		if reason == "" || pod.DeletionTimestamp != nil {
			delete(r.stuckSince, pod.UID)
			continue
		}
		since, seen := r.stuckSince[pod.UID]
		if !seen {
			since = now
			r.stuckSince[pod.UID] = now
			p.log(r.log).Warn("worker pod is stuck; the attempt fails if it stays so", "pod", pod.Name,
				"reason", reason, "message", r.mask.Replace(message), "stuck_timeout", limit)
		}
		if deadline := since.Add(limit); now.Before(deadline) {
			if r.wake.IsZero() || deadline.Before(r.wake) {
				r.wake = deadline
			}
			continue
		}
		if r.events != nil {
			r.events.Failed(Mode)
		}
		err := fmt.Errorf("%w: job %s (mini-batch %d, %s - %s): pod %s stuck in %s for %v (WORKER_STUCK_TIMEOUT): %s",
			ErrJobFailed, j.Name, p.index, workers.FormatTimestamp(p.window.Start), workers.FormatTimestamp(p.window.End),
			pod.Name, reason, now.Sub(since).Round(time.Second), r.mask.Replace(message))
		p.log(r.log).Error("worker pod stuck; deleting its job", "error", err)
		if derr := r.deleteJob(ctx, j); derr != nil {
			return errors.Join(err, derr)
		}
		return err
	}
	return nil
}

// stuckWaiting are the container waiting reasons that do not resolve
// without a change to the cluster (a Secret key, the image name, a
// registry) and never fail the Pod by themselves.
var stuckWaiting = map[string]bool{
	"CreateContainerConfigError": true,
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"InvalidImageName":           true,
}

// stuckReason returns why a Pod that has not finished is stuck, and the
// detail the kubelet or scheduler gave: a container (or init container)
// waiting for one of stuckWaiting, or the scheduler's Unschedulable. "" when
// the Pod is not stuck.
func stuckReason(pod *corev1.Pod) (reason, message string) {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return "", ""
	}
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range statuses {
			if w := cs.State.Waiting; w != nil && stuckWaiting[w.Reason] {
				return w.Reason, "container " + cs.Name + ": " + w.Message
			}
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c.Reason, c.Message
		}
	}
	return "", ""
}

// lastPod describes how the Job's last failed Pod ended, for the error of a
// failed Job; "" when that cannot be told.
func (r *run) lastPod(ctx context.Context, j *batchv1.Job) string {
	pods, err := r.client.CoreV1().Pods(r.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{batchv1.ControllerUidLabel: string(j.UID)}).String(),
	})
	if err != nil {
		r.log.Warn("cannot read the pods of a failed worker job", "job", j.Name, "error", err)
		return ""
	}
	var last *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodFailed && (last == nil || last.CreationTimestamp.Before(&p.CreationTimestamp)) {
			last = p
		}
	}
	if last == nil {
		return ""
	}
	for _, c := range last.Status.ContainerStatuses {
		if t := c.State.Terminated; c.Name == ContainerName && t != nil {
			s := fmt.Sprintf("; last pod %s: exit code %d (%s)", last.Name, t.ExitCode, t.Reason)
			if t.Message != "" {
				s += ": " + r.mask.Replace(strings.TrimSpace(t.Message))
			}
			return s
		}
	}
	if last.Status.Reason != "" || last.Status.Message != "" {
		return fmt.Sprintf("; last pod %s: %s: %s", last.Name, last.Status.Reason, r.mask.Replace(last.Status.Message))
	}
	return ""
}

// leave logs the Jobs left running when Verify is stopped by its context.
func (r *run) leave() {
	var running []string
	for _, p := range r.parts {
		if p.name != "" && !p.done {
			running = append(running, p.name)
		}
	}
	r.log.Info("verification stopped; worker jobs left running for a restarted coordinator to adopt", "jobs", running)
}

// timeout deletes the unfinished Jobs of a batch that outlived
// WORKER_TIMEOUT and returns the batch's error.
func (r *run) timeout(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stopped []string
	var errs []error
	for _, p := range r.parts {
		if p.name == "" || p.done {
			continue
		}
		stopped = append(stopped, p.name)
		if r.events != nil {
			r.events.Failed(Mode)
		}
		err := r.client.BatchV1().Jobs(r.namespace).Delete(ctx, p.name, metav1.DeleteOptions{
			PropagationPolicy: new(metav1.DeletePropagationBackground),
			Preconditions:     &metav1.Preconditions{UID: &p.uid},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting worker job %s: %w", p.name, err))
		}
	}
	if len(stopped) == 0 {
		return fmt.Errorf("%w: the batch outlived WORKER_TIMEOUT=%v before its worker jobs were created", ErrTimeout, r.cfg.Workers.Timeout)
	}
	r.log.Error("worker jobs outlived WORKER_TIMEOUT; deleted them", "timeout", r.cfg.Workers.Timeout, "jobs", stopped)
	err := fmt.Errorf("%w: worker jobs %v still unfinished after WORKER_TIMEOUT=%v were deleted", ErrTimeout, stopped, r.cfg.Workers.Timeout)
	return errors.Join(append([]error{err}, errs...)...)
}

func (r *run) retried() {
	if r.events != nil {
		r.events.Retried(Mode)
	}
}

// finished returns the Job's condition t when it is true.
func finished(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if c := &j.Status.Conditions[i]; c.Type == t && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

// retries is how many failed pods of j the job controller replaced (or is
// about to replace): every failure but a final one.
func retries(j *batchv1.Job) int32 {
	n := j.Status.Failed
	if finished(j, batchv1.JobFailed) != nil && n > 0 {
		n--
	}
	return n
}

func backoffLimit(j *batchv1.Job) int32 {
	if j.Spec.BackoffLimit == nil {
		return 6 // the API's default
	}
	return *j.Spec.BackoffLimit
}
