package outbound_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
)

// dns answers fixed addresses per host.
func dns(answers map[string][]string) outbound.Resolver {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, a := range answers[host] {
			out = append(out, netip.MustParseAddr(a))
		}
		if out == nil {
			return nil, errors.New("no such host")
		}
		return out, nil
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	resolve := dns(map[string][]string{
		"hooks.example.com": {"93.184.216.34"},
		"internal.example":  {"10.1.2.3"},
		"mixed.example":     {"93.184.216.34", "192.168.1.1"},
		"metadata.example":  {"169.254.169.254"},
		"local.example":     {"127.0.0.1"},
		"v6local.example":   {"::1"},
		"ula.example":       {"fd00::1"},
		"cgnat.example":     {"100.64.0.1"},
		"mapped.example":    {"::ffff:10.0.0.1"},
	})
	strict := outbound.Policy{Resolve: resolve}
	lax := outbound.Policy{Resolve: resolve, AllowPrivate: true}
	for _, tc := range []struct {
		url        string
		strictWant string // "" allowed
		laxWant    string
	}{
		{"https://hooks.example.com/services/T/B/x", "", ""},
		{"http://hooks.example.com/x", "must be https", "http is allowed only to loopback"},
		{"ftp://hooks.example.com/x", "must be https", "must be https"},
		{"https://internal.example/x", "10.1.2.3 is a private address", ""},
		{"https://mixed.example/x", "192.168.1.1 is a private address", ""},
		{"https://metadata.example/latest", "169.254.169.254 is link-local", "169.254.169.254 is link-local"},
		{"https://169.254.169.254/latest", "is link-local", "is link-local"},
		{"https://[fe80::1]/x", "is link-local", "is link-local"},
		{"https://local.example/x", "127.0.0.1 is a loopback address", ""},
		{"http://local.example/x", "loopback", ""},
		{"http://127.0.0.1:8080/x", "loopback", ""},
		{"https://v6local.example/x", "::1 is a loopback address", ""},
		{"https://ula.example/x", "private", ""},
		{"https://cgnat.example/x", "private", ""},
		{"https://mapped.example/x", "10.0.0.1 is a private address", ""},
		{"https://0.0.0.0/x", "not a unicast address", "not a unicast address"},
		{"https://nowhere.example/x", "resolving nowhere.example", "resolving nowhere.example"},
		{"https://user:pw@hooks.example.com/x", "carries credentials", "carries credentials"},
		{"https:///x", "has no host", "has no host"},
	} {
		for _, c := range []struct {
			p    outbound.Policy
			want string
			name string
		}{{strict, tc.strictWant, "strict"}, {lax, tc.laxWant, "allow-private"}} {
			err := c.p.CheckURL(context.Background(), tc.url)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%s %s: refused: %v", c.name, tc.url, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, outbound.ErrRefused)):
				t.Errorf("%s %s: error %v, want one with %q", c.name, tc.url, err, c.want)
			}
		}
	}
}

// TestDeliveryTimeChecks: the client checks the address it dials, whatever
// the URL check said earlier: a host that resolved to a public address when
// the subscription was made and resolves to loopback now (DNS rebinding) is
// refused, and so is loopback without the flag.
func TestDeliveryTimeChecks(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndex(port, ":"):]
	transport := func() *http.Transport {
		return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}}
	}

	// The rebinding host answers a public address first, loopback after.
	var lookups atomic.Int32
	rebinding := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != "rebind.example" {
			return nil, errors.New("no such host")
		}
		if lookups.Add(1) == 1 {
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	p := outbound.Policy{Resolve: rebinding}
	url := "https://rebind.example" + port + "/hook"
	if err := p.CheckURL(context.Background(), url); err != nil {
		t.Fatalf("subscription-time check refused the public answer: %v", err)
	}
	_, err := p.Client(5*time.Second, transport()).Post(url, "application/json", strings.NewReader("{}"))
	if err == nil || !errors.Is(err, outbound.ErrRefused) || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
		t.Fatalf("delivery to a rebound host: %v, want a loopback refusal", err)
	}

	// Loopback by address, without and with the flag.
	direct := srv.URL + "/hook"
	_, err = outbound.Policy{}.Client(5*time.Second, transport()).Post(direct, "application/json", strings.NewReader("{}"))
	if !errors.Is(err, outbound.ErrRefused) {
		t.Fatalf("delivery to loopback without the flag: %v, want a refusal", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("the server was reached %d times by refused deliveries", hits.Load())
	}
	resp, err := outbound.Policy{AllowPrivate: true}.Client(5*time.Second, transport()).Post(direct, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("delivery to loopback with the flag: %v", err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("server hits %d, want 1", hits.Load())
	}
}

func TestNoRedirectsAndCappedBody(t *testing.T) {
	t.Parallel()
	var target atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			target.Add(1)
			return
		}
		if r.URL.Path == "/big" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	c := outbound.Policy{AllowPrivate: true}.Client(5*time.Second, nil)
	resp, err := c.Post(srv.URL+"/hook", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || target.Load() != 0 {
		t.Fatalf("status %d, redirect target hit %d times: redirects must not be followed", resp.StatusCode, target.Load())
	}
	resp, err = c.Post(srv.URL+"/big", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(outbound.ReadCapped(resp.Body)); got != outbound.MaxResponseBody {
		t.Fatalf("read %d bytes of the body, want the cap %d", got, outbound.MaxResponseBody)
	}
}
