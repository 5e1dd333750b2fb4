package config

import (
	"slices"
	"testing"
	"time"

	"github.com/delegation-program/uptime-coordinator/workers"
)

// The verifier contract marks its own secrets; they must be the registry's.
func TestWorkerEnvSecretsAreTheRegistrys(t *testing.T) {
	for _, v := range workers.Env(workers.Options{}, "", time.Time{}, time.Time{}, "") {
		reg, ok := lookupVar(v.Name)
		if !ok {
			continue // SSL_CERTFILE's value, START_TIMESTAMP...: not variables of the coordinator
		}
		if reg.Secret != v.Secret {
			t.Errorf("%s: secret %v in the verifier contract, %v in the registry", v.Name, v.Secret, reg.Secret)
		}
	}
	for _, name := range []string{"POSTGRES_PASSWORD", "CASSANDRA_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if !slices.Contains(workers.SecretVars, name) {
			t.Errorf("%s is not a secret of the verifier contract", name)
		}
	}
}

func TestWorkerOptions(t *testing.T) {
	env := base()
	for k, v := range map[string]string{
		"WORKER_MODE": "process", "WORKER_COMMAND": "verify --x", "WORKER_TIMEOUT": "90s", "RETRY_COUNT": "4",
		"NO_CHECKS": "True", "POSTGRES_PASSWORD": "pg-secret-1", "POSTGRES_RO_PASSWORD": "ro-secret-1",
		"SUBMISSION_STORAGE": "cassandra", "AWS_KEYSPACE": "bpu", "CASSANDRA_HOST": "cassandra.example",
		"CASSANDRA_PORT": "9142", "CASSANDRA_USERNAME": "svc", "CASSANDRA_PASSWORD": "cass-secret",
		"AWS_REGION": "us-west-2", "AUTH_VOLUME_MOUNT_PATH": "/auth", "WEBHOOK_URL": "https://hooks.example/T0/B0/abcdefghijklmnopqrstuvwx",
	} {
		env[k] = v
	}
	c, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	o := c.WorkerOptions()
	if o.Command != "verify --x" || o.Timeout != 90*time.Second || o.Retries != 4 || !o.NoChecks || o.NoChecksValue != "True" {
		t.Errorf("launch options %+v", o)
	}
	if o.SubmissionStorage != "CASSANDRA" || o.AWSRegion != "us-west-2" || o.AuthVolumeMountPath != "/auth" {
		t.Errorf("verifier options %+v", o)
	}
	wantPG := workers.Postgres{Host: "db.internal", Port: 5432, DB: "coordinator", User: "coordinator", Password: "pg-secret-1"}
	if o.Postgres != wantPG {
		t.Errorf("Postgres %+v, want %+v", o.Postgres, wantPG)
	}
	wantCS := workers.Cassandra{Keyspace: "bpu", Host: "cassandra.example", Port: 9142, Username: "svc", Password: "cass-secret"}
	if o.Cassandra != wantCS {
		t.Errorf("Cassandra %+v, want %+v", o.Cassandra, wantCS)
	}
	// Every secret of the registry is masked, not only the verifier's.
	got := o.Masker().Replace("pg-secret-1 ro-secret-1 cass-secret https://hooks.example/T0/B0/abcdefghijklmnopqrstuvwx svc")
	if want := "*** *** *** *** svc"; got != want {
		t.Errorf("masked %q, want %q", got, want)
	}
}
