// Package outbound makes the HTTP requests of alert deliveries to URLs that
// users supply, safely: https only (http only to loopback when private
// networks are allowed, for tests), never to private, loopback, link-local
// or otherwise internal addresses, checked when a subscription is made and
// again at every connection (the address actually dialled is the one
// checked, so a host that changes its DNS answer in between — DNS rebinding —
// is refused), no proxies, no redirects, response bodies read up to a small
// cap.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxResponseBody is how much of a response body is read.
const MaxResponseBody = 4 << 10

// ErrRefused marks a URL or address the policy refuses.
var ErrRefused = errors.New("refused by the outbound policy")

// Resolver looks a host name up.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// Policy decides where deliveries may go.
type Policy struct {
	// AllowPrivate (ALERT_ALLOW_PRIVATE_NETWORKS) allows private and
	// loopback addresses, and plain http to loopback. Link-local addresses
	// (cloud metadata services) stay refused.
	AllowPrivate bool
	// Resolve looks host names up (default: the system resolver). Tests set
	// it to simulate DNS answers.
	Resolve Resolver
}

func (p Policy) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if p.Resolve != nil {
		return p.Resolve(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// CheckAddr reports why an address may not be connected to (nil: allowed).
func (p Policy) CheckAddr(a netip.Addr) error {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return fmt.Errorf("%w: invalid address", ErrRefused)
	case a.IsUnspecified(), a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return fmt.Errorf("%w: %s is not a unicast address", ErrRefused, a)
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is link-local", ErrRefused, a)
	case a.IsLoopback() && !p.AllowPrivate:
		return fmt.Errorf("%w: %s is a loopback address (ALERT_ALLOW_PRIVATE_NETWORKS is off)", ErrRefused, a)
	case (a.IsPrivate() || internal(a)) && !p.AllowPrivate:
		return fmt.Errorf("%w: %s is a private address (ALERT_ALLOW_PRIVATE_NETWORKS is off)", ErrRefused, a)
	}
	return nil
}

// internal are ranges that are not public without being "private" to
// netip: carrier-grade NAT, benchmarking, the IPv4 "this network" and
// reserved blocks, IPv6 discard and NAT64 local use.
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

func internal(a netip.Addr) bool {
	for _, p := range internalPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// CheckURL checks a webhook URL: its scheme, and every address its host
// resolves to. It is called when a subscription is made and before every
// delivery; the connection itself is checked again (see Client).
func (p Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL", ErrRefused)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: the URL has no host", ErrRefused)
	}
	if u.User != nil {
		return fmt.Errorf("%w: the URL carries credentials", ErrRefused)
	}
	addrs, err := p.resolve(ctx, host)
	if err != nil {
		return fmt.Errorf("%w: resolving %s: %w", ErrRefused, host, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: %s has no address", ErrRefused, host)
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return fmt.Errorf("%s: %w", host, err)
		}
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowPrivate {
			return fmt.Errorf("%w: the URL must be https", ErrRefused)
		}
		for _, a := range addrs {
			if !a.Unmap().IsLoopback() {
				return fmt.Errorf("%w: http is allowed only to loopback (ALERT_ALLOW_PRIVATE_NETWORKS); use https", ErrRefused)
			}
		}
	default:
		return fmt.Errorf("%w: the URL must be https", ErrRefused)
	}
	return nil
}

// Client returns an HTTP client that dials only addresses the policy allows:
// it resolves the host itself, checks every address and dials the checked
// one (and checks the connected address again). It uses no proxy, follows
// no redirect, and bounds each request by timeout. transport may be nil (tests
// pass one that trusts their server's certificate).
func (p Policy) Client(timeout time.Duration, transport *http.Transport) *http.Client {
	if transport == nil {
		transport = &http.Transport{}
	}
	transport.Proxy = nil
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrRefused, address)
			}
			return p.CheckAddr(ap.Addr())
		},
	}
	transport.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		addrs, err := p.resolve(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		var errs []error
		for _, a := range addrs {
			if err := p.CheckAddr(a); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", host, err))
				continue
			}
			c, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return nil, fmt.Errorf("%w: %s has no address", ErrRefused, host)
		}
		return nil, errors.Join(errs...)
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ReadCapped reads at most MaxResponseBody bytes of a response body, as
// text for error messages, and closes it.
func ReadCapped(body io.ReadCloser) string {
	defer body.Close()
	b, _ := io.ReadAll(io.LimitReader(body, MaxResponseBody))
	return strings.TrimSpace(string(b))
}

// Redact drops the URL (which may hold a token) from an HTTP client error.
func Redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
