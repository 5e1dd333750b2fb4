package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/delegation-program/uptime-coordinator/database/pgtest"
	"github.com/delegation-program/uptime-coordinator/database/postgres"
)

func TestCanBulkWritePoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pgtest.NewDatabase(t)
	admin := pgtest.Pool(t, cfg)

	ok, why, err := postgres.CanBulkWritePoints(ctx, admin)
	if err != nil || !ok {
		t.Fatalf("superuser: %v %q %v, want the fast path", ok, why, err)
	}

	role := fmt.Sprintf("bulk_%d", os.Getpid())
	exec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN`, role))
	t.Cleanup(func() {
		for _, s := range []string{"DROP OWNED BY %[1]s", "DROP ROLE IF EXISTS %[1]s"} {
			_, _ = pgtest.Pool(t, cfg).Exec(context.Background(), fmt.Sprintf(s, role))
		}
	})
	user := cfg
	user.User = role
	pool := pgtest.Pool(t, user)
	ok, why, err = postgres.CanBulkWritePoints(ctx, pool)
	if err != nil || ok || !strings.Contains(why, "GRANT SET ON PARAMETER session_replication_role") {
		t.Fatalf("plain role: %v %q %v, want no fast path and the grant that enables it", ok, why, err)
	}
	exec(t, admin, fmt.Sprintf(`GRANT SET ON PARAMETER session_replication_role TO %s`, role))
	if ok, why, err = postgres.CanBulkWritePoints(ctx, pool); err != nil || !ok {
		t.Fatalf("granted role: %v %q %v, want the fast path", ok, why, err)
	}
	// Another tool's trigger on a table written in replica mode turns it off.
	exec(t, admin, `CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`)
	exec(t, admin, `CREATE TRIGGER audit_nodes AFTER UPDATE ON nodes FOR EACH ROW EXECUTE FUNCTION audit()`)
	if ok, why, err = postgres.CanBulkWritePoints(ctx, pool); err != nil || ok || !strings.Contains(why, "audit_nodes") {
		t.Fatalf("with a trigger on nodes: %v %q %v, want no fast path naming the trigger", ok, why, err)
	}
}
