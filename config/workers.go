package config

import "github.com/delegation-program/uptime-coordinator/workers"

// WorkerOptions is what the worker launchers take of the configuration
// (the Kubernetes launcher also takes the Kubernetes section): the Workers
// section, RETRY_COUNT, the stores the verifiers read and the secrets to
// mask.
func (c *Config) WorkerOptions() workers.Options {
	w, p, cs := c.Workers, c.Postgres, c.Cassandra
	return workers.Options{
		Image:             w.Image,
		Tag:               w.Tag,
		Command:           w.Command,
		Timeout:           w.Timeout,
		Retries:           c.Runtime.RetryCount,
		NoChecks:          w.NoChecks,
		PassEnv:           w.PassEnv,
		Mask:              SecretMasker(c.Secrets()),
		SubmissionStorage: c.Runtime.SubmissionStorage,
		Postgres: workers.Postgres{
			Host: p.Host, Port: p.Port, DB: p.DB, User: p.User, Password: p.Password, SSLMode: p.SSLMode,
		},
		Cassandra: workers.Cassandra{
			Keyspace: cs.Keyspace, Host: cs.Host, Port: cs.Port, Username: cs.Username, Password: cs.Password,
			SSLCertFile: cs.SSLCertFile, AWSAccessKeyID: cs.AWSAccessKeyID, AWSSecretAccessKey: cs.AWSSecretAccessKey,
		},
		AWSRegion:           w.AWSRegion,
		AWSS3Bucket:         w.AWSS3Bucket,
		NetworkName:         w.NetworkName,
		NoChecksValue:       w.NoChecksRaw,
		AuthVolumeMountPath: c.Kubernetes.AuthVolumeMountPath,
	}
}
