package kubetest

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// RunFunc stands in for a Pod's containers: the fake kubelet calls it once
// the Pod is Running. A nil error makes the Pod Succeeded (exit code 0), any
// other error makes it Failed (exit code 1, the error as the termination
// message). ctx is cancelled when the Pod is deleted or the test ends.
type RunFunc func(ctx context.Context, pod *corev1.Pod) error

// maxTerminationMessage matches the kubelet's limit on termination messages.
const maxTerminationMessage = 4096

var (
	errPodDeleted     = errors.New("pod deleted")
	errKubeletStopped = errors.New("fake kubelet stopped")
)

// Kubelet is a fake kubelet for one namespace, started by StartKubelet.
type Kubelet struct {
	t        testing.TB
	cs       kubernetes.Interface
	ns       string
	nodeName string
	run      RunFunc

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	pods     map[types.UID]context.CancelCauseFunc // pods this kubelet has taken on
	closed   bool                                  // the test is over: no more logging
	holdFunc HoldFunc                              // see SetHold
}

// StartKubelet plays the kubelet for the Pods of namespace: it registers a fake
// Node, and for each new Pending Pod it binds the Pod to that Node (as a
// scheduler would), sets its status to Running, calls run in a goroutine and
// finally sets the status to Succeeded or Failed according to run's result,
// so that controllers such as the job controller see a real outcome. If a
// running Pod is deleted, run's context is cancelled, the Pod is marked Failed
// (exit code 143) and then removed, as a kubelet would.
//
// cs needs rights to create Nodes and pod bindings and to update pod status;
// the cluster's admin clientset has them. The fake kubelet stops, and waits
// for run calls to return, when the test ends.
func StartKubelet(t testing.TB, cs kubernetes.Interface, namespace string, run RunFunc) *Kubelet {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	k := &Kubelet{
		t:        t,
		cs:       cs,
		ns:       namespace,
		nodeName: "kubetest-node-" + namespace,
		run:      run,
		ctx:      ctx,
		cancel:   cancel,
		pods:     map[types.UID]context.CancelCauseFunc{},
	}

	if err := k.registerNode(ctx); err != nil {
		cancel(errKubeletStopped)
		t.Fatalf("kubetest: fake kubelet: %v", err)
	}

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace))
	podInformer := factory.Core().V1().Pods().Informer()
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.observe(obj) },
		UpdateFunc: func(_, obj any) { k.observe(obj) },
		DeleteFunc: k.forget,
	}); err != nil {
		cancel(errKubeletStopped)
		t.Fatalf("kubetest: fake kubelet: add pod event handler: %v", err)
	}
	t.Cleanup(func() { k.stop(factory) })
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("kubetest: fake kubelet: cache for %v did not sync", typ)
		}
	}
	return k
}

// NodeName returns the name of the fake Node the Pods are bound to.
func (k *Kubelet) NodeName() string { return k.nodeName }

func (k *Kubelet) registerNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   k.nodeName,
		Labels: map[string]string{"kubernetes.io/hostname": k.nodeName, "kubetest/fake-node": "true"},
	}}
	_, err := k.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", k.nodeName, err)
	}
	return nil
}

func (k *Kubelet) stop(factory informers.SharedInformerFactory) {
	k.cancel(errKubeletStopped)
	factory.Shutdown()

	done := make(chan struct{})
	go func() {
		k.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		k.t.Errorf("kubetest: fake kubelet: run functions still running 30s after their context was cancelled")
	}
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := k.cs.CoreV1().Nodes().Delete(ctx, k.nodeName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		k.t.Logf("kubetest: fake kubelet: delete node %s: %v", k.nodeName, err)
	}
}

func (k *Kubelet) logf(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.t.Logf("kubetest: fake kubelet: "+format, args...)
	}
}

// observe is called by the informer for added and updated Pods.
func (k *Kubelet) observe(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.ctx.Err() != nil {
		return
	}
	if cancel, handled := k.pods[pod.UID]; handled {
		if pod.DeletionTimestamp != nil {
			cancel(errPodDeleted)
		}
		return
	}
	if pod.DeletionTimestamp != nil ||
		(pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "") ||
		(pod.Spec.NodeName != "" && pod.Spec.NodeName != k.nodeName) {
		return
	}
	ctx, cancel := context.WithCancelCause(k.ctx)
	k.pods[pod.UID] = cancel
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer cancel(nil)
		k.runPod(ctx, pod.DeepCopy())
	}()
}

// forget is called by the informer for deleted Pods.
func (k *Kubelet) forget(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if cancel, handled := k.pods[pod.UID]; handled {
		cancel(errPodDeleted)
	}
}

// runPod takes one Pod through binding, Running and a terminal phase. API
// calls use the kubelet's context; podCtx, which is also cancelled when the
// Pod is deleted, only bounds run.
func (k *Kubelet) runPod(podCtx context.Context, pod *corev1.Pod) {
	ctx := k.ctx
	if h := k.holdFor(podCtx, pod); h != nil {
		k.holdPod(podCtx, pod, h)
		return
	}
	if err := k.bind(ctx, pod); err != nil {
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			k.logf("bind pod %s: %v", pod.Name, err)
		}
		return
	}

	started := metav1.Now()
	running, err := k.updateStatus(ctx, pod, func(p *corev1.Pod) { setRunning(p, started) })
	if err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) {
			k.logf("set pod %s Running: %v", pod.Name, err)
		}
		return
	}

	runErr := k.callRun(podCtx, running)
	if errors.Is(context.Cause(podCtx), errKubeletStopped) {
		return // the test is over; a stopped kubelet reports nothing
	}
	deleted := errors.Is(context.Cause(podCtx), errPodDeleted)
	exitCode, reason := int32(0), "Completed"
	switch {
	case deleted:
		exitCode, reason = 143, "Error"
		runErr = fmt.Errorf("%w while running: %v", errPodDeleted, runErr)
	case runErr != nil:
		exitCode, reason = 1, "Error"
	}
	finished := metav1.Now()
	if _, err := k.updateStatus(ctx, pod, func(p *corev1.Pod) {
		setTerminated(p, started, finished, exitCode, reason, runErr)
	}); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
		k.logf("set pod %s terminal: %v", pod.Name, err)
	}

	if deleted {
		// Finish the graceful deletion, as the kubelet does once the
		// containers are gone.
		err := k.cs.CoreV1().Pods(k.ns).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: new(int64),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			k.logf("delete pod %s: %v", pod.Name, err)
		}
	}
}

// bind binds the Pod to the fake Node, as a scheduler would, unless it is
// bound already.
func (k *Kubelet) bind(ctx context.Context, pod *corev1.Pod) error {
	if pod.Spec.NodeName != "" {
		return nil
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.nodeName},
	}
	return k.cs.CoreV1().Pods(k.ns).Bind(ctx, binding, metav1.CreateOptions{})
}

// callRun calls run, turning a panic into an error so one bad run function
// fails its Pod instead of the whole test binary.
func (k *Kubelet) callRun(ctx context.Context, pod *corev1.Pod) (err error) {
	defer func() {
		if r := recover(); r != nil {
			k.logf("run function panicked for pod %s: %v\n%s", pod.Name, r, debug.Stack())
			err = fmt.Errorf("run function panicked: %v", r)
		}
	}()
	return k.run(ctx, pod.DeepCopy())
}

// updateStatus applies mutate to the latest version of the Pod and writes it
// through the status subresource, retrying on conflicts.
func (k *Kubelet) updateStatus(ctx context.Context, pod *corev1.Pod, mutate func(*corev1.Pod)) (*corev1.Pod, error) {
	pods := k.cs.CoreV1().Pods(k.ns)
	var updated *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		current, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if current.UID != pod.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		}
		mutate(current)
		updated, err = pods.UpdateStatus(ctx, current, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update status of pod %s: %w", pod.Name, err)
	}
	return updated, nil
}

func setRunning(p *corev1.Pod, started metav1.Time) {
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &started
	for _, t := range []corev1.PodConditionType{
		corev1.PodScheduled, corev1.PodReadyToStartContainers, corev1.PodInitialized,
		corev1.ContainersReady, corev1.PodReady,
	} {
		setCondition(p, t, corev1.ConditionTrue, "", started)
	}
	p.Status.InitContainerStatuses = nil
	for _, c := range p.Spec.InitContainers {
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: containerID(p, c.Name),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: started,
				ContainerID: containerID(p, c.Name),
			}},
		})
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: containerID(p, c.Name),
			Ready:       true,
			Started:     new(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
}

// setTerminated sets the terminal phase. The first container carries the run
// function's result; any other containers exit 0.
func setTerminated(p *corev1.Pod, started, finished metav1.Time, exitCode int32, reason string, runErr error) {
	p.Status.Phase = corev1.PodSucceeded
	if exitCode != 0 {
		p.Status.Phase = corev1.PodFailed
	}
	setCondition(p, corev1.PodReadyToStartContainers, corev1.ConditionFalse, "", finished)
	setCondition(p, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", finished)
	setCondition(p, corev1.PodReady, corev1.ConditionFalse, "PodCompleted", finished)
	p.Status.ContainerStatuses = nil
	for i, c := range p.Spec.Containers {
		term := &corev1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: finished,
			ContainerID: containerID(p, c.Name),
		}
		if i == 0 {
			term.ExitCode, term.Reason = exitCode, reason
			if runErr != nil {
				term.Message = truncate(runErr.Error(), maxTerminationMessage)
			}
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: containerID(p, c.Name),
			Started:     new(false),
			State:       corev1.ContainerState{Terminated: term},
		})
	}
}

func setCondition(p *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus, reason string, now metav1.Time) {
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason = status, reason
		return
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
		Type: typ, Status: status, Reason: reason, LastTransitionTime: now,
	})
}

func containerID(p *corev1.Pod, name string) string {
	return "kubetest://" + string(p.UID) + "/" + name
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
