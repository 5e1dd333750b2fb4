package kubetest

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Hold is a state the fake kubelet (or, for Unschedulable, the scheduler)
// keeps a Pod in instead of running it, as a real cluster does when a
// container cannot be created or pulled or no node fits: the Pod stays
// Pending, with the reason in its status, until it is deleted.
type Hold struct {
	// Reason is a container waiting reason such as
	// CreateContainerConfigError, ImagePullBackOff or ErrImagePull, or
	// corev1.PodReasonUnschedulable for a Pod that no node fits (then the
	// Pod is never bound and its PodScheduled condition says so).
	Reason  string
	Message string
}

// HoldFunc decides whether a new Pod is held, and how; nil means run it.
type HoldFunc func(ctx context.Context, pod *corev1.Pod) *Hold

// SetHold installs f, consulted for every Pod the fake kubelet takes on
// from now.
func (k *Kubelet) SetHold(f HoldFunc) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.holdFunc = f
}

func (k *Kubelet) holdFor(ctx context.Context, pod *corev1.Pod) *Hold {
	k.mu.Lock()
	f := k.holdFunc
	k.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(ctx, pod.DeepCopy())
}

// holdPod reports h in the Pod's status and keeps it so until the Pod is
// deleted (then finishes the deletion, as a kubelet would) or the test ends.
func (k *Kubelet) holdPod(podCtx context.Context, pod *corev1.Pod, h *Hold) {
	ctx := k.ctx
	now := metav1.Now()
	var err error
	if h.Reason == corev1.PodReasonUnschedulable {
		_, err = k.updateStatus(ctx, pod, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			setCondition(p, corev1.PodScheduled, corev1.ConditionFalse, h.Reason, now)
			for i := range p.Status.Conditions {
				if p.Status.Conditions[i].Type == corev1.PodScheduled {
					p.Status.Conditions[i].Message = h.Message
				}
			}
		})
	} else {
		if err = k.bind(ctx, pod); err == nil {
			_, err = k.updateStatus(ctx, pod, func(p *corev1.Pod) { setWaiting(p, now, h) })
		}
	}
	if err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) {
			k.logf("hold pod %s in %s: %v", pod.Name, h.Reason, err)
		}
		return
	}
	<-podCtx.Done()
	if !errors.Is(context.Cause(podCtx), errPodDeleted) {
		return
	}
	err = k.cs.CoreV1().Pods(k.ns).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		k.logf("delete held pod %s: %v", pod.Name, err)
	}
}

// setWaiting marks a bound Pod Pending with its first container waiting for
// h.Reason, as the kubelet reports a container it cannot create or pull.
func setWaiting(p *corev1.Pod, now metav1.Time, h *Hold) {
	p.Status.Phase = corev1.PodPending
	setCondition(p, corev1.PodScheduled, corev1.ConditionTrue, "", now)
	setCondition(p, corev1.PodInitialized, corev1.ConditionTrue, "", now)
	setCondition(p, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", now)
	setCondition(p, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", now)
	p.Status.ContainerStatuses = nil
	for i, c := range p.Spec.Containers {
		st := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: new(false)}
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		if i == 0 {
			st.State.Waiting = &corev1.ContainerStateWaiting{Reason: h.Reason, Message: h.Message}
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
	}
}
