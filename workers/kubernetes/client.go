package kubernetes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/delegation-program/uptime-coordinator/config"
)

// ServiceAccountNamespaceFile is where a Pod finds its own namespace.
const ServiceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// userAgent identifies the coordinator in the API server's logs and audit.
const userAgent = "uptime-coordinator"

// Client returns a clientset and the namespace for the worker Jobs. Inside
// a cluster it uses the Pod's service account; elsewhere the kubeconfig that
// k.Kubeconfig (KUBECONFIG) names, or ~/.kube/config. The namespace is
// k.Namespace (POD_NAMESPACE), else the service account's namespace file;
// without either it is an error.
func Client(k config.Kubernetes) (*kubernetes.Clientset, string, error) {
	return client(k, ServiceAccountNamespaceFile)
}

func client(k config.Kubernetes, namespaceFile string) (*kubernetes.Clientset, string, error) {
	ns, err := namespace(k.Namespace, namespaceFile)
	if err != nil {
		return nil, "", err
	}
	cfg, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if path := k.Kubeconfig; path != "" {
			rules.Precedence = strings.Split(path, string(os.PathListSeparator))
		}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("not in a cluster, and no usable kubeconfig (KUBECONFIG or ~/.kube/config): %w", err)
		}
	} else if err != nil {
		return nil, "", fmt.Errorf("in-cluster Kubernetes configuration: %w", err)
	}
	cfg.UserAgent = userAgent
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return cs, ns, nil
}

func namespace(configured, namespaceFile string) (string, error) {
	if ns := strings.TrimSpace(configured); ns != "" {
		return ns, nil
	}
	data, err := os.ReadFile(namespaceFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no namespace for the worker jobs: POD_NAMESPACE is unset and %s does not exist (not running in a cluster)", namespaceFile)
	}
	if err != nil {
		return "", fmt.Errorf("reading the namespace for the worker jobs: %w", err)
	}
	ns := strings.TrimSpace(string(data))
	if ns == "" {
		return "", fmt.Errorf("no namespace for the worker jobs: POD_NAMESPACE is unset and %s is empty", namespaceFile)
	}
	return ns, nil
}
