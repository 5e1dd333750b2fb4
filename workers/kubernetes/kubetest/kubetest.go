// Package kubetest runs a real Kubernetes control plane for tests: etcd,
// kube-apiserver (RBAC enforced) and kube-controller-manager with the job,
// service-account, garbage-collector and ttl-after-finished controllers.
//
// There is no scheduler and no kubelet. Tests play the kubelet themselves with
// StartKubelet, which binds each new Pod of a namespace to a fake Node, marks
// it Running, runs a Go function in its place and then marks it Succeeded or
// Failed, so the real job controller sees the outcome.
//
// The binaries are built by tools/kube/build.sh into KUBE_TOOLS_DIR (default
// $HOME/.cache/uptime-coordinator/kube-v1.36.3); Start fails the test if they
// are missing.
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/internal/porttest"
)

// Version is the Kubernetes version of the control-plane binaries.
const Version = "v1.36.3"

// ToolsDirEnv names the environment variable that overrides where
// tools/kube/build.sh puts the binaries.
const ToolsDirEnv = "KUBE_TOOLS_DIR"

// ToolsDir returns the directory holding bin/ with the control-plane binaries:
// $KUBE_TOOLS_DIR, or $HOME/.cache/uptime-coordinator/kube-v1.36.3.
func ToolsDir() (string, error) {
	opts, err := config.LoadTests(config.Environment)
	if err != nil {
		return "", err
	}
	if opts.KubeToolsDir != "" {
		return opts.KubeToolsDir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate kube tools: %s is unset and: %w", ToolsDirEnv, err)
	}
	return filepath.Join(home, ".cache", "uptime-coordinator", "kube-"+Version), nil
}

// Option configures Start.
type Option func(*options)

type options struct {
	startTimeout    time.Duration
	stopTimeout     time.Duration
	apiServerArgs   []string
	controllerArgs  []string
	controllers     []string
	logLinesOnError int
}

// WithStartTimeout bounds how long each component may take to become ready
// (default 60s).
func WithStartTimeout(d time.Duration) Option {
	return func(o *options) { o.startTimeout = d }
}

// WithStopTimeout sets how long cleanup waits after SIGTERM before it sends
// SIGKILL to a component (default 15s).
func WithStopTimeout(d time.Duration) Option {
	return func(o *options) { o.stopTimeout = d }
}

// WithAPIServerArgs appends flags to the kube-apiserver command line.
func WithAPIServerArgs(args ...string) Option {
	return func(o *options) { o.apiServerArgs = append(o.apiServerArgs, args...) }
}

// WithControllerManagerArgs appends flags to the kube-controller-manager
// command line.
func WithControllerManagerArgs(args ...string) Option {
	return func(o *options) { o.controllerArgs = append(o.controllerArgs, args...) }
}

// WithControllers replaces the list of controllers that
// kube-controller-manager runs. The default is DefaultControllers.
func WithControllers(controllers ...string) Option {
	return func(o *options) { o.controllers = controllers }
}

// DefaultControllers are the kube-controller-manager controllers the harness
// enables: enough for Jobs to create Pods (which need the namespace's default
// ServiceAccount), to clean them up and to honour ttlSecondsAfterFinished.
var DefaultControllers = []string{
	"job-controller",
	"serviceaccount-controller",
	"garbage-collector-controller",
	"ttl-after-finished-controller",
}

// Cluster is a running control plane owned by one test.
type Cluster struct {
	t          testing.TB
	opts       options
	dir        string // certificates, keys, kubeconfig
	logDir     string // component logs: t.ArtifactDir(), kept with go test -artifacts
	etcdDir    string
	procs      []*process // in start order
	adminToken string
	config     *rest.Config
	clientset  *kubernetes.Clientset
	kubeconfig string
	startup    map[string]time.Duration
}

// Start starts etcd, kube-apiserver and kube-controller-manager on free
// loopback ports and returns once the API server is ready and the controllers
// have created the default ServiceAccount. Everything is stopped, and the
// processes reaped, when the test ends; if the test failed, the tail of each
// component's log is printed. The logs are written to t.ArtifactDir(), so
// `go test -artifacts` keeps them.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{
		startTimeout:    60 * time.Second,
		stopTimeout:     15 * time.Second,
		controllers:     slices.Clone(DefaultControllers),
		logLinesOnError: 40,
	}
	for _, opt := range opts {
		opt(&o)
	}

	toolsDir, err := ToolsDir()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	binDir := filepath.Join(toolsDir, "bin")
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			t.Fatalf("kubetest: control-plane binary missing: %v\n"+
				"Build the binaries first by running tools/kube/build.sh "+
				"(it installs into $%s, default %s).", err, ToolsDirEnv, toolsDir)
		}
	}

	c := &Cluster{t: t, opts: o, dir: t.TempDir(), logDir: t.ArtifactDir(), startup: map[string]time.Duration{}}
	t.Cleanup(c.stop)
	begin := time.Now()
	if err := c.start(binDir); err != nil {
		t.Fatalf("kubetest: start control plane: %v", err)
	}
	c.startup["total"] = time.Since(begin)
	t.Logf("kubetest: control plane %s ready at %s in %s (etcd %s, kube-apiserver %s, kube-controller-manager %s)",
		Version, c.config.Host, c.startup["total"].Round(time.Millisecond),
		c.startup["etcd"].Round(time.Millisecond), c.startup["kube-apiserver"].Round(time.Millisecond),
		c.startup["kube-controller-manager"].Round(time.Millisecond))
	return c
}

func (c *Cluster) start(binDir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*c.opts.startTimeout)
	defer cancel()

	ports, err := porttest.Free(3)
	if err != nil {
		return err
	}
	etcdClientPort, etcdPeerPort, apiPort := ports[0], ports[1], ports[2]

	pkiDir := filepath.Join(c.dir, "pki")
	certDir := filepath.Join(c.dir, "certs")
	for _, d := range []string{pkiDir, certDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	c.etcdDir, err = etcdDataDir(c.dir)
	if err != nil {
		return err
	}

	// etcd.
	begin := time.Now()
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeerPort)
	etcd, err := c.launch(binDir, "etcd",
		"--name=kubetest",
		"--data-dir="+c.etcdDir,
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, etcd, func(ctx context.Context) error {
		return httpGetOK(ctx, http.DefaultClient, etcdURL+"/health", `"health":"true"`)
	}); err != nil {
		return err
	}
	c.startup["etcd"] = time.Since(begin)

	// kube-apiserver.
	begin = time.Now()
	keys, err := writeServiceAccountKeys(pkiDir)
	if err != nil {
		return err
	}
	c.adminToken, err = randomToken()
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(pkiDir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(c.adminToken+`,kubetest-admin,kubetest-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + certDir,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + keys.publicKeyFile,
		"--service-account-signing-key-file=" + keys.privateKeyFile,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
	}
	apiserver, err := c.launch(binDir, "kube-apiserver", append(apiArgs, c.opts.apiServerArgs...)...)
	if err != nil {
		return err
	}
	// --cert-dir makes the API server write a self-signed serving certificate
	// bundle (serving cert plus its CA), which clients then trust.
	caFile := filepath.Join(certDir, "apiserver.crt")
	var caData []byte
	if err := c.waitFor(ctx, apiserver, func(context.Context) error {
		data, err := os.ReadFile(caFile)
		if err != nil || len(data) == 0 {
			return fmt.Errorf("serving certificate not written yet: %w", err)
		}
		caData = data
		return nil
	}); err != nil {
		return err
	}
	c.config = &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(apiPort),
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caData},
		QPS:             100,
		Burst:           200,
	}
	httpClient, err := rest.HTTPClientFor(c.config)
	if err != nil {
		return fmt.Errorf("build HTTP client for kube-apiserver: %w", err)
	}
	if err := c.waitFor(ctx, apiserver, func(ctx context.Context) error {
		return httpGetOK(ctx, httpClient, c.config.Host+"/readyz", "")
	}); err != nil {
		return err
	}
	httpClient.CloseIdleConnections()
	c.clientset, err = kubernetes.NewForConfig(c.config)
	if err != nil {
		return fmt.Errorf("build clientset: %w", err)
	}
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, c.config.Host, caData, c.adminToken); err != nil {
		return err
	}
	c.startup["kube-apiserver"] = time.Since(begin)

	// kube-controller-manager.
	begin = time.Now()
	kcmArgs := []string{
		"--kubeconfig=" + c.kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--controllers=" + strings.Join(c.opts.controllers, ","),
	}
	kcm, err := c.launch(binDir, "kube-controller-manager", append(kcmArgs, c.opts.controllerArgs...)...)
	if err != nil {
		return err
	}
	// The controller manager has no health endpoint with --secure-port=0; the
	// service-account controller creating "default" shows its controllers run.
	if err := c.waitFor(ctx, kcm, func(ctx context.Context) error {
		_, err := c.clientset.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	c.startup["kube-controller-manager"] = time.Since(begin)
	return nil
}

// launch starts one binary and records it for cleanup.
func (c *Cluster) launch(binDir, name string, args ...string) (*process, error) {
	p, err := startProcess(name, filepath.Join(binDir, name), c.logDir, args)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// waitFor polls check every 100ms until it succeeds, p exits or the start
// timeout elapses.
func (c *Cluster) waitFor(ctx context.Context, p *process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.startTimeout)
	defer cancel()
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := p.exitErr(); err != nil {
			return false, err
		}
		checkCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		lastErr = check(checkCtx)
		return lastErr == nil, nil
	})
	if err != nil {
		if lastErr != nil && p.exitErr() == nil {
			return fmt.Errorf("%s not ready after %s: %w (last error: %w)", p.name, c.opts.startTimeout, err, lastErr)
		}
		return fmt.Errorf("%s not ready: %w", p.name, err)
	}
	return nil
}

// stop is the test cleanup: it stops the components in reverse start order.
// If the test failed, it then prints the end of each component's log as it
// was before shutdown began, so shutdown noise does not hide the cause.
func (c *Cluster) stop() {
	var tails []string
	if c.t.Failed() {
		for _, p := range c.procs {
			tails = append(tails, p.tail(c.opts.logLinesOnError))
		}
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		begin := time.Now()
		if err := p.stop(c.opts.stopTimeout); err != nil {
			c.t.Errorf("kubetest: %v", err)
		} else if testing.Verbose() {
			c.t.Logf("kubetest: %s stopped in %s", p.name, time.Since(begin).Round(time.Millisecond))
		}
	}
	if c.t.Failed() {
		for i, p := range c.procs {
			tail := p.tail(c.opts.logLinesOnError)
			if i < len(tails) {
				tail = tails[i]
			}
			c.t.Logf("kubetest: last %d lines of the %s log before shutdown (%s; full log kept by go test -artifacts as %s):\n%s",
				c.opts.logLinesOnError, p.name, p.exitStatus(), filepath.Base(p.logPath), tail)
		}
	}
	if c.etcdDir != "" && !strings.HasPrefix(c.etcdDir, c.dir) {
		if err := os.RemoveAll(c.etcdDir); err != nil {
			c.t.Errorf("kubetest: remove etcd data dir: %v", err)
		}
	}
}

// AdminConfig returns a fresh copy of a client configuration with cluster-admin
// rights (the token's user is in group system:masters).
func (c *Cluster) AdminConfig() *rest.Config {
	return rest.CopyConfig(c.config)
}

// Clientset returns a clientset built from AdminConfig.
func (c *Cluster) Clientset() *kubernetes.Clientset {
	return c.clientset
}

// KubeconfigPath returns the path of a kubeconfig file for the admin user.
func (c *Cluster) KubeconfigPath() string {
	return c.kubeconfig
}

// ConfigForToken returns a client configuration for this cluster that
// authenticates with the given bearer token instead of the admin one.
func (c *Cluster) ConfigForToken(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(c.config)
	cfg.BearerToken = token
	return cfg
}

// PeakMemory returns the peak resident set size in bytes of each running
// component, keyed by binary name (Linux only; empty elsewhere).
func (c *Cluster) PeakMemory() map[string]int64 {
	mem := make(map[string]int64, len(c.procs))
	for _, p := range c.procs {
		if rss := p.peakRSS(); rss > 0 {
			mem[p.name] = rss
		}
	}
	return mem
}

// StartupTimes returns how long each component took to become ready, keyed by
// binary name, plus "total".
func (c *Cluster) StartupTimes() map[string]time.Duration {
	times := make(map[string]time.Duration, len(c.startup))
	for k, v := range c.startup {
		times[k] = v
	}
	return times
}

// CreateNamespace creates a namespace and waits until the service-account
// controller has created its "default" ServiceAccount, without which the API
// server rejects Pods (and so Jobs would not start).
func (c *Cluster) CreateNamespace(t testing.TB, name string) *corev1.Namespace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.startTimeout)
	defer cancel()
	ns, err := c.clientset.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace %q: %v", name, err)
	}
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.clientset.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("kubetest: wait for default ServiceAccount in namespace %q: %v", name, err)
	}
	return ns
}

// TokenFor creates the ServiceAccount namespace/serviceAccount if it does not
// exist and returns a one-hour token for it from the TokenRequest API. Use it
// with ConfigForToken to act as that ServiceAccount, so RBAC applies.
func (c *Cluster) TokenFor(t testing.TB, namespace, serviceAccount string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sas := c.clientset.CoreV1().ServiceAccounts(namespace)
	_, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create ServiceAccount %s/%s: %v", namespace, serviceAccount, err)
	}
	expiry := int64(time.Hour / time.Second)
	tr, err := sas.CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: request token for ServiceAccount %s/%s: %v", namespace, serviceAccount, err)
	}
	return tr.Status.Token
}

// httpGetOK returns nil if GET url answers 200 and, when want is not empty,
// the body contains want.
func httpGetOK(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := io.Copy(&body, io.LimitReader(resp.Body, 64<<10)); err != nil {
		return fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if want != "" && !strings.Contains(body.String(), want) {
		return fmt.Errorf("GET %s: unexpected answer %q", url, body.String())
	}
	return nil
}

// etcdDataDir prefers a directory in /dev/shm (memory-backed, fast) and falls
// back to a directory under the test's temp dir.
func etcdDataDir(testDir string) (string, error) {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "kubetest-etcd-"); err == nil {
			return dir, nil
		}
	}
	dir := filepath.Join(testDir, "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create etcd data dir: %w", err)
	}
	return dir, nil
}

// randomToken returns a random static admin token for this cluster only.
func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
