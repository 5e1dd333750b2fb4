package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// permanentClasses are the SQLSTATE classes of errors that retrying cannot
// fix: invalid authorization (28: wrong password, no such role), invalid
// catalog (3D: no such database), invalid schema (3F), and syntax error or
// access rule violation (42: undefined table or column, permission
// denied). Everything else (connection failures, timeouts, cancellations,
// serialization failures, server shutdowns) is transient.
var permanentClasses = map[string]bool{"28": true, "3D": true, "3F": true, "42": true}

// classify marks err permanent (coordinator.Permanent) when Postgres
// reported an error of a permanent class, and returns it unchanged
// otherwise.
func classify(err error) error {
	var pg *pgconn.PgError
	if err == nil || !errors.As(err, &pg) || len(pg.Code) < 2 {
		return err
	}
	if permanentClasses[pg.Code[:2]] {
		return coordinator.Permanent(err)
	}
	return err
}
