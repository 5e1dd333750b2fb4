package kubetest

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// EnvOf resolves the environment of the pod's main (first) container the way
// a kubelet would: envFrom (Secrets and ConfigMaps, with prefixes), then env
// in order, with valueFrom secretKeyRef, configMapKeyRef and the common
// fieldRef paths, and $(VAR) references to earlier variables expanded.
// Secrets and ConfigMaps are read through the API with cs, so the caller needs
// read access to them.
func EnvOf(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) (map[string]string, error) {
	if len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("pod %s/%s has no containers", pod.Namespace, pod.Name)
	}
	r := envResolver{
		ctx:        ctx,
		cs:         cs,
		pod:        pod,
		secrets:    map[string]*corev1.Secret{},
		configMaps: map[string]*corev1.ConfigMap{},
	}
	container := &pod.Spec.Containers[0]
	env := map[string]string{}

	for _, from := range container.EnvFrom {
		switch {
		case from.SecretRef != nil:
			s, err := r.secret(from.SecretRef.Name, from.SecretRef.Optional)
			if err != nil {
				return nil, err
			}
			if s != nil {
				for k, v := range s.Data {
					env[from.Prefix+k] = string(v)
				}
			}
		case from.ConfigMapRef != nil:
			cm, err := r.configMap(from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
			if err != nil {
				return nil, err
			}
			if cm != nil {
				for k, v := range cm.Data {
					env[from.Prefix+k] = v
				}
			}
		}
	}

	for _, e := range container.Env {
		if e.ValueFrom == nil {
			env[e.Name] = expandEnv(e.Value, env)
			continue
		}
		value, ok, err := r.valueFrom(e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("resolve env %s of pod %s/%s: %w", e.Name, pod.Namespace, pod.Name, err)
		}
		if ok {
			env[e.Name] = value
		}
	}
	return env, nil
}

type envResolver struct {
	ctx        context.Context
	cs         kubernetes.Interface
	pod        *corev1.Pod
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

// valueFrom resolves one env source. ok is false when an optional source is
// absent, in which case the variable is not set.
func (r *envResolver) valueFrom(src *corev1.EnvVarSource) (value string, ok bool, err error) {
	switch {
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := r.secret(ref.Name, ref.Optional)
		if err != nil || s == nil {
			return "", false, err
		}
		v, found := s.Data[ref.Key]
		if !found {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %q has no key %q", ref.Name, ref.Key)
		}
		return string(v), true, nil
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := r.configMap(ref.Name, ref.Optional)
		if err != nil || cm == nil {
			return "", false, err
		}
		if v, found := cm.Data[ref.Key]; found {
			return v, true, nil
		}
		if v, found := cm.BinaryData[ref.Key]; found {
			return string(v), true, nil
		}
		if isOptional(ref.Optional) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("configmap %q has no key %q", ref.Name, ref.Key)
	case src.FieldRef != nil:
		v, err := r.field(src.FieldRef.FieldPath)
		return v, err == nil, err
	default:
		return "", false, fmt.Errorf("unsupported env source (only secretKeyRef, configMapKeyRef and fieldRef are)")
	}
}

func (r *envResolver) field(path string) (string, error) {
	p := r.pod
	if key, ok := subscript(path, "metadata.labels"); ok {
		return p.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return p.Annotations[key], nil
	}
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return p.Status.HostIP, nil
	case "status.podIP":
		return p.Status.PodIP, nil
	default:
		return "", fmt.Errorf("unsupported fieldRef %q", path)
	}
}

// subscript parses paths such as metadata.labels['app'].
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

func (r *envResolver) secret(name string, optional *bool) (*corev1.Secret, error) {
	return cachedGet(r, r.secrets, "secrets", name, optional, r.cs.CoreV1().Secrets(r.pod.Namespace).Get)
}

func (r *envResolver) configMap(name string, optional *bool) (*corev1.ConfigMap, error) {
	return cachedGet(r, r.configMaps, "configmaps", name, optional, r.cs.CoreV1().ConfigMaps(r.pod.Namespace).Get)
}

// cachedGet reads the object name of the pod's namespace once (through
// cache): a missing one is nil, or the kubelet's NotFound error unless
// optional.
func cachedGet[T any](r *envResolver, cache map[string]*T, resource, name string, optional *bool,
	get func(context.Context, string, metav1.GetOptions) (*T, error)) (*T, error) {
	obj, cached := cache[name]
	if !cached {
		var err error
		obj, err = get(r.ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			obj = nil
		case err != nil:
			return nil, fmt.Errorf("get %s %s/%s: %w", strings.TrimSuffix(resource, "s"), r.pod.Namespace, name, err)
		}
		cache[name] = obj
	}
	if obj == nil && !isOptional(optional) {
		return nil, fmt.Errorf("get %s %s/%s: %w", strings.TrimSuffix(resource, "s"), r.pod.Namespace, name,
			apierrors.NewNotFound(corev1.Resource(resource), name))
	}
	return obj, nil
}

func isOptional(b *bool) bool { return b != nil && *b }

// expandEnv expands $(VAR) references to variables already in env, the way
// the kubelet does: $$ is an escaped $, and references to unknown variables
// are left as they are.
func expandEnv(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
