package kubernetes

import (
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

// run is the state of one Verify call: it adopts or creates the Jobs of a
// batch's mini-batches and follows them to the batch's outcome.
type run struct {
	client    kubernetes.Interface
	namespace string
	opts      workers.Options
	kube      config.Kubernetes
	events    workers.Events
	now       func() time.Time // names the Job groups

	batch coordinator.Window
	parts []*part
	log   *slog.Logger
	mask  *strings.Replacer
	jobs  batchlisters.JobNamespaceLister
	// notify wakes the wait loop up (see wakeUp).
	notify chan struct{}

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

// verify watches the window's Jobs and Pods, adopts or creates the Jobs and
// waits for them.
func (r *run) verify(ctx context.Context) error {
	r.notify = make(chan struct{}, 1)
	r.observed, r.gone = map[types.UID]*batchv1.Job{}, map[types.UID]bool{}
	r.stuckSince = map[types.UID]time.Time{}
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
			if err := deleteJob(ctx, r.client, r.namespace, j.Name, j.UID); err != nil {
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
	host, err := r.opts.Prelude(ctx, r.log)
	if err != nil {
		return err
	}
	group, err := r.group(ctx)
	if err != nil {
		return err
	}
	for _, p := range todo {
		spec := jobSpec{group: group, batch: r.batch, parts: len(r.parts), index: p.index, part: p.window, cassandraHost: host}
		job, err := buildJob(r.opts, r.kube, r.namespace, spec)
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
		p.log(r.log).Info("worker job created", "group", group, "image", r.opts.ImageRef())
		r.events.Started(Mode)
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
		r.events.Failed(Mode)
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
		r.events.Failed(Mode)
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
	limit := r.kube.StuckTimeout
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
		r.events.Failed(Mode)
		err := fmt.Errorf("%w: job %s (mini-batch %d, %s - %s): pod %s stuck in %s for %v (WORKER_STUCK_TIMEOUT): %s",
			ErrJobFailed, j.Name, p.index, workers.FormatTimestamp(p.window.Start), workers.FormatTimestamp(p.window.End),
			pod.Name, reason, now.Sub(since).Round(time.Second), r.mask.Replace(message))
		p.log(r.log).Error("worker pod stuck; deleting its job", "error", err)
		if derr := deleteJob(ctx, r.client, r.namespace, j.Name, j.UID); derr != nil {
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
		r.events.Failed(Mode)
		if err := deleteJob(ctx, r.client, r.namespace, p.name, p.uid); err != nil {
			errs = append(errs, err)
		}
	}
	if len(stopped) == 0 {
		return fmt.Errorf("%w: the batch outlived WORKER_TIMEOUT=%v before its worker jobs were created", workers.ErrTimeout, r.opts.Timeout)
	}
	r.log.Error("worker jobs outlived WORKER_TIMEOUT; deleted them", "timeout", r.opts.Timeout, "jobs", stopped)
	err := fmt.Errorf("%w: worker jobs %v still unfinished after WORKER_TIMEOUT=%v were deleted", workers.ErrTimeout, stopped, r.opts.Timeout)
	return errors.Join(append([]error{err}, errs...)...)
}

func (r *run) retried() { r.events.Retried(Mode) }

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
