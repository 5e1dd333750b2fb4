package cassandra

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

func TestAuthPassword(t *testing.T) {
	a, err := newAuth(config.Cassandra{Username: "svc", Password: "pw"}, "")
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
	for _, tt := range []struct {
		name string
		cfg  config.Cassandra
		want string
	}{
		{"nothing", config.Cassandra{}, "no credentials"},
		{"user only", config.Cassandra{Username: "svc"}, "both a username and a password"},
		{"password only", config.Cassandra{Password: "pw"}, "both a username and a password"},
		{"key id only", config.Cassandra{AWSAccessKeyID: "AKID", AWSRegion: "us-west-2"}, "secret access key"},
		{"secret only", config.Cassandra{AWSSecretAccessKey: "s", AWSRegion: "us-west-2"}, "access key ID"},
		{"role only", config.Cassandra{AWSRoleARN: "arn:aws:iam::1:role/r", AWSRegion: "us-west-2"},
			"role session name (AWS_ROLE_SESSION_NAME), web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE)"},
		{"token only", config.Cassandra{AWSWebIdentityToken: "/t", AWSRegion: "us-west-2"}, "role ARN (AWS_ROLE_ARN), role session name"},
		{"no region", config.Cassandra{Host: "localhost", AWSAccessKeyID: "AKID", AWSSecretAccessKey: "s"}, "needs an AWS region"},
	} {
		_, err := newAuth(tt.cfg, "")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestAuthRegionFromKeyspacesHost(t *testing.T) {
	a, err := newAuth(config.Cassandra{Host: "cassandra.eu-central-1.amazonaws.com", AWSAccessKeyID: "AKID", AWSSecretAccessKey: "s"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.region != "eu-central-1" {
		t.Errorf("region %q, want eu-central-1", a.region)
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

func TestAuthSigV4StaticKeys(t *testing.T) {
	cfg := config.Cassandra{AWSAccessKeyID: "AKIDEXAMPLE", AWSSecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", AWSRegion: "us-west-2"}
	a, err := newAuth(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.aws == nil || a.region != "us-west-2" {
		t.Fatalf("auth %+v", a)
	}
	if strings.Contains(a.describe, cfg.AWSAccessKeyID) || strings.Contains(a.describe, cfg.AWSSecretAccessKey) {
		t.Errorf("description %q shows a key", a.describe)
	}
	const nonce = "0b2c5e1f6a7d8c9e0f1a2b3c4d5e6f70"
	f := sigv4Exchange(t, a.authenticator, nonce)
	if _, ok := f["session_token"]; ok {
		t.Error("static keys sent a session token")
	}
	checkSignature(t, f, "us-west-2", nonce, cfg.AWSAccessKeyID, cfg.AWSSecretAccessKey)
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

func webIdentityConfig(t *testing.T) config.Cassandra {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("web-identity-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Cassandra{
		AWSRoleARN:          "arn:aws:iam::123456789012:role/reader",
		AWSRoleSessionName:  "coordinator",
		AWSWebIdentityToken: token,
		AWSRegion:           "us-east-2",
	}
}

func TestAuthSigV4WebIdentity(t *testing.T) {
	sts := &fakeSTS{}
	srv := httptest.NewServer(sts)
	defer srv.Close()
	cfg := webIdentityConfig(t)

	a, err := newAuth(cfg, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts.requests) != 0 {
		t.Fatal("STS was called before credentials were needed")
	}
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
		"RoleArn":          cfg.AWSRoleARN,
		"RoleSessionName":  cfg.AWSRoleSessionName,
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
	cfg := webIdentityConfig(t)
	cfg.Keyspace, cfg.Host, cfg.Port = "ks", "127.0.0.1", 1
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
