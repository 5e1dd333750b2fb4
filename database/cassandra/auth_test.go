package cassandra

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/delegation-program/uptime-coordinator/config"
)

// isolateAWS clears every AWS setting the SDK's default chain would find on
// this machine (variables, shared files, instance metadata), so a test sees
// only what it sets.
func isolateAWS(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func TestAuthPassword(t *testing.T) {
	a, err := newAuth(context.Background(), config.Cassandra{Username: "svc", Password: "pw"}, "")
	if err != nil {
		t.Fatal(err)
	}
	pa, ok := a.authenticator.(gocql.PasswordAuthenticator)
	if !ok || pa.Username != "svc" || pa.Password != "pw" {
		t.Fatalf("authenticator %T %+v", a.authenticator, a.authenticator)
	}
	if a.aws != nil {
		t.Error("password authentication has AWS credentials")
	}
	if strings.Contains(a.describe, "pw") {
		t.Errorf("description %q shows the password", a.describe)
	}
}

func TestAuthIncomplete(t *testing.T) {
	isolateAWS(t)
	for _, tt := range []struct {
		name string
		cfg  config.Cassandra
		want string
	}{
		{"user only", config.Cassandra{Username: "svc"}, "both a username and a password"},
		{"password only", config.Cassandra{Password: "pw"}, "both a username and a password"},
		{"no region", config.Cassandra{Host: "localhost"}, "needs an AWS region (AWS_REGION); none is set and host \"localhost\" names none"},
	} {
		_, err := newAuth(context.Background(), tt.cfg, "")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestAuthRegionFromKeyspacesHost(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	a, err := newAuth(context.Background(), config.Cassandra{Host: "cassandra.eu-central-1.amazonaws.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.region != "eu-central-1" {
		t.Errorf("region %q, want eu-central-1", a.region)
	}
	f := sigv4Exchange(t, a.authenticator, "abc")
	checkSignature(t, f, "eu-central-1", "abc", "AKIDEXAMPLE", "secret")
	// AWS_REGION wins over the host.
	a, err = newAuth(context.Background(), config.Cassandra{Host: "cassandra.eu-central-1.amazonaws.com", AWSRegion: "us-east-1"}, "")
	if err != nil || a.region != "us-east-1" {
		t.Errorf("with AWS_REGION: region %q (%v), want us-east-1", a.region, err)
	}
}

// sigv4Exchange plays the Keyspaces side of a SigV4 handshake with a: the
// initial response must be "SigV4\0\0", the answer to a nonce challenge a
// signature. It returns the answer's fields.
func sigv4Exchange(t *testing.T, a gocql.Authenticator, nonce string) map[string]string {
	t.Helper()
	resp, next, err := a.Challenge([]byte("com.amazonaws.cassandra.DefaultAuthenticator"))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp) != "SigV4\x00\x00" {
		t.Fatalf("initial response %q, want SigV4\\0\\0", resp)
	}
	if next == nil {
		t.Fatal("no authenticator for the challenge")
	}
	resp, _, err = next.Challenge([]byte("nonce=" + nonce))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, kv := range strings.Split(string(resp), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("malformed answer %q", resp)
		}
		fields[k] = v
	}
	return fields
}

// checkSignature recomputes the SigV4 signature of a Keyspaces handshake
// (AWS Signature Version 4 over "PUT /authenticate" with the nonce's hash as
// payload, service "cassandra") and compares it with the answer's.
func checkSignature(t *testing.T, f map[string]string, region, nonce, keyID, secret string) {
	t.Helper()
	at, err := time.Parse("2006-01-02T15:04:05.000Z", f["amzdate"])
	if err != nil {
		t.Fatalf("amzdate %q: %v", f["amzdate"], err)
	}
	if d := time.Since(at); d < -time.Minute || d > time.Minute {
		t.Errorf("amzdate %v is not now", at)
	}
	if f["access_key"] != keyID {
		t.Errorf("access_key %q, want %q", f["access_key"], keyID)
	}
	day := at.Format("20060102")
	scope := day + "/" + region + "/cassandra/aws4_request"
	query := strings.Join([]string{
		"X-Amz-Algorithm=AWS4-HMAC-SHA256",
		"X-Amz-Credential=" + keyID + "%2F" + url.QueryEscape(scope),
		"X-Amz-Date=" + url.QueryEscape(f["amzdate"]),
		"X-Amz-Expires=900",
	}, "&")
	payload := sha256.Sum256([]byte(nonce))
	canonical := "PUT\n/authenticate\n" + query + "\nhost:cassandra\n\nhost\n" + hex.EncodeToString(payload[:])
	digest := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + f["amzdate"] + "\n" + scope + "\n" + hex.EncodeToString(digest[:])
	mac := func(key []byte, s string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(s))
		return h.Sum(nil)
	}
	key := mac(mac(mac(mac([]byte("AWS4"+secret), day), region), "cassandra"), "aws4_request")
	if want := hex.EncodeToString(mac(key, toSign)); f["signature"] != want {
		t.Errorf("signature %s, want %s", f["signature"], want)
	}
}

// TestAuthDefaultChainEnvKeys: with no username, the keys in the
// environment reach the SigV4 handshake through the SDK's default chain.
func TestAuthDefaultChainEnvKeys(t *testing.T) {
	isolateAWS(t)
	const keyID, secret = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	t.Setenv("AWS_ACCESS_KEY_ID", keyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	a, err := newAuth(context.Background(), config.Cassandra{AWSRegion: "us-west-2"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.aws == nil || a.region != "us-west-2" {
		t.Fatalf("auth %+v", a)
	}
	creds, err := a.aws.Retrieve(context.Background())
	if err != nil || creds.Source != "EnvConfigCredentials" {
		t.Errorf("credentials from %q (%v), want EnvConfigCredentials", creds.Source, err)
	}
	if strings.Contains(a.describe, keyID) || strings.Contains(a.describe, secret) {
		t.Errorf("description %q shows a key", a.describe)
	}
	const nonce = "0b2c5e1f6a7d8c9e0f1a2b3c4d5e6f70"
	f := sigv4Exchange(t, a.authenticator, nonce)
	if _, ok := f["session_token"]; ok {
		t.Error("static keys sent a session token")
	}
	checkSignature(t, f, "us-west-2", nonce, keyID, secret)
}

// TestAuthDefaultChainSharedCredentials: a profile in the shared
// credentials file is found too (what the hand-written choice never did).
func TestAuthDefaultChainSharedCredentials(t *testing.T) {
	isolateAWS(t)
	file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if err := os.WriteFile(file, []byte("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := newAuth(context.Background(), config.Cassandra{Host: "cassandra.us-west-2.amazonaws.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	f := sigv4Exchange(t, a.authenticator, "n1")
	checkSignature(t, f, "us-west-2", "n1", "AKIDFILE", "file-secret")
}

// fakeSTS answers AssumeRoleWithWebIdentity with fixed credentials and
// records the requests.
type fakeSTS struct {
	mu       sync.Mutex
	requests []url.Values
	status   int
}

func (s *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, r.PostForm)
	status := s.status
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	if status != 0 {
		w.WriteHeader(status)
		fmt.Fprint(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>`+
			`<Code>AccessDenied</Code><Message>not authorized to assume the role</Message></Error><RequestId>r1</RequestId></ErrorResponse>`)
		return
	}
	fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult>
<Credentials><AccessKeyId>ASIATEMP</AccessKeyId><SecretAccessKey>temp-secret</SecretAccessKey>
<SessionToken>session-token-1</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/reader/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
}

// webIdentityEnv sets the variables EKS IRSA sets (role and token file) and
// the role session name the chart sets.
func webIdentityEnv(t *testing.T) (role, session string) {
	isolateAWS(t)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("web-identity-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	role, session = "arn:aws:iam::123456789012:role/reader", "coordinator"
	t.Setenv("AWS_ROLE_ARN", role)
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token)
	t.Setenv("AWS_ROLE_SESSION_NAME", session)
	return role, session
}

func TestAuthDefaultChainWebIdentity(t *testing.T) {
	sts := &fakeSTS{}
	srv := httptest.NewServer(sts)
	defer srv.Close()
	role, session := webIdentityEnv(t)

	a, err := newAuth(context.Background(), config.Cassandra{AWSRegion: "us-east-2"}, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	sts.mu.Lock()
	if len(sts.requests) != 0 {
		t.Fatal("STS was called before credentials were needed")
	}
	sts.mu.Unlock()
	const nonce = "5f0e7a1c"
	f := sigv4Exchange(t, a.authenticator, nonce)
	if f["session_token"] != "session-token-1" {
		t.Errorf("session_token %q, want the one STS issued", f["session_token"])
	}
	checkSignature(t, f, "us-east-2", nonce, "ASIATEMP", "temp-secret")

	// A second handshake reuses the cached credentials.
	sigv4Exchange(t, a.authenticator, nonce)
	sts.mu.Lock()
	defer sts.mu.Unlock()
	if len(sts.requests) != 1 {
		t.Fatalf("%d STS calls, want 1 (credentials are cached)", len(sts.requests))
	}
	req := sts.requests[0]
	for k, want := range map[string]string{
		"Action":           "AssumeRoleWithWebIdentity",
		"RoleArn":          role,
		"RoleSessionName":  session,
		"WebIdentityToken": "web-identity-token-1",
	} {
		if got := req.Get(k); got != want {
			t.Errorf("STS request %s = %q, want %q", k, got, want)
		}
	}
}

func TestOpenReportsRejectedWebIdentity(t *testing.T) {
	srv := httptest.NewServer(&fakeSTS{status: http.StatusBadRequest})
	defer srv.Close()
	webIdentityEnv(t)
	cfg := config.Cassandra{Keyspace: "ks", Host: "127.0.0.1", Port: 1, AWSRegion: "us-east-2"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, cfg, func(o *options) { o.stsEndpoint = srv.URL })
	if err == nil || !strings.Contains(err.Error(), "AWS credentials") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("error %v, want one about the rejected web identity", err)
	}
	if strings.Contains(err.Error(), "web-identity-token-1") {
		t.Errorf("error %q shows the token", err)
	}
}

func TestUsesTLS(t *testing.T) {
	for _, tc := range []struct {
		cfg  config.Cassandra
		want bool
	}{
		{config.Cassandra{Host: "cassandra.us-west-2.amazonaws.com", Port: 9142}, true},
		{config.Cassandra{Host: "cassandra.us-west-2.amazonaws.com"}, true},
		{config.Cassandra{Host: "10.1.2.3", Port: 9142}, true},
		{config.Cassandra{Host: "cassandra.internal", Port: 9042, SSLCertFile: "/ca.pem"}, true},
		{config.Cassandra{Host: "cassandra.internal", Port: 9042}, false},
		{config.Cassandra{Host: "127.0.0.1"}, false},
	} {
		if got := UsesTLS(tc.cfg); got != tc.want {
			t.Errorf("UsesTLS(%s:%d, SSL_CERTFILE %q) = %v, want %v", tc.cfg.Host, tc.cfg.Port, tc.cfg.SSLCertFile, got, tc.want)
		}
	}
}

// TestTLSOnPort9142WithoutCertFile: Open to port 9142 without SSL_CERTFILE
// starts with a TLS handshake (a listener on 127.0.0.1:9142 reads the first
// bytes), and trusts the Amazon roots without any file.
func TestTLSOnPort9142WithoutCertFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:9142")
	if err != nil {
		t.Fatalf("listening on 127.0.0.1:9142 (needed free for this test): %v", err)
	}
	defer ln.Close()
	first := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			first <- nil
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 3)
		_, _ = io.ReadFull(c, b)
		first <- b
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := config.Cassandra{Keyspace: "ks", Host: "127.0.0.1", Port: 9142, Username: "u", Password: "p", VerifyHost: true}
	if s, err := Open(ctx, cfg, WithTimeouts(2*time.Second, 2*time.Second)); err == nil {
		s.Close()
		t.Fatal("Open succeeded against a listener that never answers")
	}
	select {
	case b := <-first:
		// A TLS record of type handshake (22), version 3.x.
		if !bytes.Equal(b[:2], []byte{22, 3}) {
			t.Errorf("first bytes %v, want a TLS handshake record (22, 3, ...)", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open never connected")
	}

	tc, err := tlsConfig(config.Cassandra{Host: "cassandra.us-west-2.amazonaws.com", Port: 9142, VerifyHost: true})
	if err != nil {
		t.Fatal(err)
	}
	if tc.ServerName != "cassandra.us-west-2.amazonaws.com" || tc.InsecureSkipVerify {
		t.Errorf("server name %q, insecure %v", tc.ServerName, tc.InsecureSkipVerify)
	}
	// The Starfield Class 2 root, which Keyspaces' chain ends in, is trusted.
	rest := keyspacesRoots
	var found bool
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(cert.Subject.String(), "Starfield Class 2") {
			found = true
			if _, err := cert.Verify(x509.VerifyOptions{Roots: tc.RootCAs}); err != nil {
				t.Errorf("the Starfield Class 2 root is not trusted: %v", err)
			}
		}
	}
	if !found {
		t.Error("the built-in roots lack the Starfield Class 2 root")
	}
}
