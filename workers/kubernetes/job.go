package kubernetes

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// Labels and annotations of the worker Jobs. The window labels let a
// restarted coordinator find the Jobs it already created for a batch.
const (
	// LabelManagedBy marks the Jobs this coordinator created, with value
	// ManagedBy.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "uptime-coordinator"
	// LabelGroup names the Jobs of one batch, as the original coordinator
	// (workers.JobGroupName); the topology spread constraint selects on it.
	LabelGroup = "job-group-name"
	// LabelWindowStart and LabelWindowEnd hold the batch window's bounds in
	// unix seconds.
	LabelWindowStart = "uptime.delegation/window-start"
	LabelWindowEnd   = "uptime.delegation/window-end"
	// LabelPart is the mini-batch index, LabelParts the number of
	// mini-batches the window was cut into.
	LabelPart  = "uptime.delegation/part"
	LabelParts = "uptime.delegation/parts"
	// AnnotationStart and AnnotationEnd hold the mini-batch's bounds as the
	// verifier receives them (workers.FormatTimestamp).
	AnnotationStart = "uptime.delegation/start"
	AnnotationEnd   = "uptime.delegation/end"
	// AnnotationDoNotDisrupt keeps Karpenter from consolidating a node away
	// from under a running verifier.
	AnnotationDoNotDisrupt = "karpenter.sh/do-not-disrupt"
	// LabelNodePool is the node selector and toleration key of K8S_NODE_POOL.
	LabelNodePool = "karpenter.sh/nodepool"
)

// Pod spec constants, as the original coordinator set them.
const (
	ServiceAccountName = "delegation-verify" // default of WORKER_SERVICE_ACCOUNT
	ContainerName      = "delegation-verify"
	InitContainerName  = "delegation-verify-init"
	EntrypointDir      = "/bin/entrypoint"
	EntrypointCommand  = EntrypointDir + "/entrypoint-worker.sh"
	authVolume         = "auth-volume"
	entrypointVolume   = "entrypoint-volume"
	topologyKey        = "kubernetes.io/hostname"
	entrypointMode     = int32(0o777)
)

// windowSelector selects the Jobs of batch.
func windowSelector(batch coordinator.Window) labels.Selector {
	return labels.SelectorFromSet(labels.Set{
		LabelManagedBy:   ManagedBy,
		LabelWindowStart: unix(batch.Start),
		LabelWindowEnd:   unix(batch.End),
	})
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// jobSpec is what one Job is built from.
type jobSpec struct {
	group         string
	batch         coordinator.Window
	parts         int
	index         int
	part          coordinator.Window
	cassandraHost string
}

func (s jobSpec) name() string { return workers.JobName(s.group, s.index) }

// windowLabels are the labels a Job and its Pods carry.
func (s jobSpec) windowLabels() map[string]string {
	return map[string]string{
		LabelGroup:       s.group,
		LabelWindowStart: unix(s.batch.Start),
		LabelWindowEnd:   unix(s.batch.End),
		LabelPart:        strconv.Itoa(s.index),
		LabelParts:       strconv.Itoa(s.parts),
	}
}

// buildJob returns the Job of one mini-batch: the original coordinator's Job
// with the verifier's secrets read from k.SecretName and labels that
// identify the window and mini-batch.
func buildJob(o workers.Options, k config.Kubernetes, namespace string, s jobSpec) (*batchv1.Job, error) {
	res, err := resources(k.Resources)
	if err != nil {
		return nil, err
	}
	name := s.name()
	env := podEnv(k, workers.Env(o, name, s.part.Start, s.part.End, s.cassandraHost))
	image := o.ImageRef()
	pullPolicy := corev1.PullPolicy(k.ImagePullPolicy)
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	authMount := corev1.VolumeMount{Name: authVolume, MountPath: k.AuthVolumeMountPath}

	jobLabels := s.windowLabels()
	jobLabels[LabelManagedBy] = ManagedBy
	annotations := map[string]string{
		AnnotationStart: workers.FormatTimestamp(s.part.Start),
		AnnotationEnd:   workers.FormatTimestamp(s.part.End),
	}

	pod := corev1.PodSpec{
		ServiceAccountName: cmp.Or(k.ServiceAccount, ServiceAccountName),
		RestartPolicy:      corev1.RestartPolicyNever,
		SecurityContext:    k.PodSecurityContext.DeepCopy(),
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew:           int32(max(k.SpreadMaxSkew, 1)),
			TopologyKey:       topologyKey,
			WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{LabelGroup: s.group}},
		}},
		InitContainers: []corev1.Container{{
			Name:            InitContainerName,
			Image:           image,
			Command:         []string{"ls"},
			Env:             env,
			ImagePullPolicy: pullPolicy,
			SecurityContext: k.ContainerSecurityContext.DeepCopy(),
			VolumeMounts:    []corev1.VolumeMount{authMount},
		}},
		Containers: []corev1.Container{{
			Name:            ContainerName,
			Image:           image,
			Command:         []string{EntrypointCommand},
			Env:             env,
			Resources:       res,
			ImagePullPolicy: pullPolicy,
			SecurityContext: k.ContainerSecurityContext.DeepCopy(),
			VolumeMounts: []corev1.VolumeMount{
				authMount,
				{Name: entrypointVolume, MountPath: EntrypointDir},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: authVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: entrypointVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: k.EntrypointConfigMap},
				DefaultMode:          new(entrypointMode),
			}}},
		},
	}
	if k.NodePool != "" {
		pod.NodeSelector = map[string]string{LabelNodePool: k.NodePool}
		pod.Tolerations = []corev1.Toleration{{Key: LabelNodePool, Operator: corev1.TolerationOpExists}}
	}

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      jobLabels,
			Annotations: annotations,
		},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(o.Retries)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      s.windowLabels(),
					Annotations: map[string]string{AnnotationDoNotDisrupt: "true"},
				},
				Spec: pod,
			},
		},
	}
	if k.TTLSecondsAfterFinished != nil {
		job.Spec.TTLSecondsAfterFinished = new(*k.TTLSecondsAfterFinished)
	}
	return job, nil
}

// podEnv turns the verifier contract's variables into a container's
// environment. Secrets never appear as values: a secret the coordinator's
// configuration sets is read from key <NAME> of the Secret k.SecretName
// (SecretKeys lists them; Preflight checks they exist); an unset secret is
// left out. In compatibility mode (k.SecretsInline) secrets are plain
// values, as the original coordinator passed them. Other variables are
// passed as values, empty ones included, as the original did.
func podEnv(k config.Kubernetes, vars []workers.EnvVar) []corev1.EnvVar {
	env := make([]corev1.EnvVar, 0, len(vars))
	for _, v := range vars {
		if !v.Secret || k.SecretsInline {
			env = append(env, corev1.EnvVar{Name: v.Name, Value: v.Value})
			continue
		}
		if v.Value == "" {
			continue
		}
		env = append(env, corev1.EnvVar{Name: v.Name, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: k.SecretName},
				Key:                  v.Name,
				Optional:             new(false),
			},
		}})
	}
	return env
}

// SecretKeys lists the keys of the Secret WORKER_SECRET_NAME the worker
// Jobs reference: the secret variables the options set. None in
// compatibility mode.
func SecretKeys(o workers.Options, k config.Kubernetes) []string {
	if k.SecretsInline {
		return nil
	}
	var keys []string
	for _, v := range workers.Env(o, "", time.Time{}, time.Time{}, "") {
		if v.Secret && v.Value != "" {
			keys = append(keys, v.Name)
		}
	}
	return keys
}

// resources returns the worker container's requests and limits; what the
// configuration leaves unset is omitted.
func resources(r config.Resources) (corev1.ResourceRequirements, error) {
	var req corev1.ResourceRequirements
	for _, q := range []struct {
		list  *corev1.ResourceList
		name  corev1.ResourceName
		value string
		env   string
	}{
		{&req.Requests, corev1.ResourceCPU, r.CPURequest, "WORKER_CPU_REQUEST"},
		{&req.Requests, corev1.ResourceMemory, r.MemoryRequest, "WORKER_MEMORY_REQUEST"},
		{&req.Limits, corev1.ResourceCPU, r.CPULimit, "WORKER_CPU_LIMIT"},
		{&req.Limits, corev1.ResourceMemory, r.MemoryLimit, "WORKER_MEMORY_LIMIT"},
	} {
		if q.value == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.value)
		if err != nil {
			return req, fmt.Errorf("%s: %w", q.env, err)
		}
		if *q.list == nil {
			*q.list = corev1.ResourceList{}
		}
		(*q.list)[q.name] = v
	}
	return req, nil
}

// deleteJob deletes the Job name, if it is still the one with uid, with
// propagation Background: the Job goes at once and the garbage collector
// deletes its Pods (the API's default for Jobs would orphan them, leaving
// a verifier running). A Job already gone, or replaced by another of the
// same name, is not an error.
func deleteJob(ctx context.Context, client kubernetes.Interface, namespace, name string, uid types.UID) error {
	err := client.BatchV1().Jobs(namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: new(metav1.DeletePropagationBackground),
		Preconditions:     &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting worker job %s: %w", name, err)
	}
	return nil
}
