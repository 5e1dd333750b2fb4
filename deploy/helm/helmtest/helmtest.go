// Package helmtest renders the Helm chart deploy/helm/uptime-coordinator
// with Helm's own template engine (helm.sh/helm/v3, no cluster), for tests:
// the chart's tests and the Kubernetes worker tests, which run the launcher
// with the RBAC and ServiceAccounts the chart ships.
package helmtest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// ChartDir is the chart's directory.
func ChartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "uptime-coordinator")
}

// Release names the release a chart is rendered as.
type Release struct{ Name, Namespace string }

// Render renders the chart as release with values merged over the chart's
// values.yaml, as `helm template` does, and returns every object's YAML
// document in a stable order (by template, then position).
func Render(release Release, values map[string]any) ([]string, error) {
	ch, err := loader.Load(ChartDir())
	if err != nil {
		return nil, err
	}
	if values == nil {
		values = map[string]any{}
	}
	vals, err := chartutil.ToRenderValues(ch, values,
		chartutil.ReleaseOptions{Name: release.Name, Namespace: release.Namespace, Revision: 1, IsInstall: true},
		chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	slices.Sort(names)
	var docs []string
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		r := yaml.NewYAMLReader(bufioReader(out[name]))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			docs = append(docs, string(doc))
		}
	}
	return docs, nil
}

// MustRender is Render failing t on error.
func MustRender(t testing.TB, release Release, values map[string]any) []string {
	t.Helper()
	docs, err := Render(release, values)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return docs
}

// Decode decodes every document strictly (unknown or repeated fields fail)
// into the client-go types; kinds client-go does not know (such as the
// Prometheus Operator's ServiceMonitor) become Unstructured.
func Decode(t testing.TB, docs []string) []kruntime.Object {
	t.Helper()
	strict := serializer.NewCodecFactory(clientgoscheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []kruntime.Object
	for _, doc := range docs {
		obj, _, err := strict.Decode([]byte(doc), nil, nil)
		if kruntime.IsNotRegisteredError(err) {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				t.Fatalf("decoding %s: %v", doc, err)
			}
			objs = append(objs, u)
			continue
		}
		if err != nil {
			t.Fatalf("object does not decode strictly: %v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
	return objs
}

// Unstructured decodes every document into an Unstructured object, as
// a dynamic client sends it.
func Unstructured(t testing.TB, docs []string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("decoding %s: %v", doc, err)
		}
		objs = append(objs, u)
	}
	return objs
}

// Find returns the objects of type T.
func Find[T kruntime.Object](objs []kruntime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
