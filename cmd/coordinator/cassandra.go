//go:build !nocassandra

package main

import (
	"context"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/database/cassandra"
)

// openCassandra connects to Cassandra (SUBMISSION_STORAGE=CASSANDRA). It is
// the only use of gocql and of the AWS SDK (Keyspaces' SigV4 authentication):
// a build with -tags nocassandra leaves them out (see cassandra_off.go).
func openCassandra(ctx context.Context, cfg config.Cassandra) (cassandraStore, error) {
	s, err := cassandra.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}
