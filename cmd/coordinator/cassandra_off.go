//go:build nocassandra

package main

import (
	"context"
	"errors"

	"github.com/delegation-program/uptime-coordinator/config"
)

// openCassandra: this build has no Cassandra driver.
func openCassandra(context.Context, config.Cassandra) (cassandraStore, error) {
	return nil, errors.New("SUBMISSION_STORAGE=CASSANDRA: this binary was built with -tags nocassandra; use SUBMISSION_STORAGE=POSTGRES, or the default build")
}
