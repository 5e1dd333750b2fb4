package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// rescoreWrites are the table privileges a rescore uses.
var rescoreWrites = [][2]string{
	{"points", "INSERT"}, {"points", "DELETE"},
	{"points_summary", "INSERT"}, {"points_summary", "DELETE"},
	{"bot_logs", "UPDATE"},
	{"bot_logs_statehash", "INSERT"}, {"bot_logs_statehash", "DELETE"},
	{"score_history", "INSERT"}, {"score_history", "DELETE"},
	{"nodes", "INSERT"}, {"nodes", "UPDATE"}, {"nodes", "DELETE"},
	{"statehash", "INSERT"}, {"statehash", "DELETE"},
	{"batch_evidence", "INSERT"}, {"batch_evidence", "DELETE"},
	{"batch_evidence_summary", "INSERT"}, {"batch_evidence_summary", "DELETE"},
	{"batch_error_classes", "INSERT"}, {"batch_error_classes", "DELETE"},
	{"evidence_producers", "INSERT"},
	{"coordinator_scoreboard", "INSERT"}, {"coordinator_scoreboard", "DELETE"},
	{"alert_score_windows", "DELETE"},
}

// MissingRescorePrivileges lists, as "INSERT on points", the table
// privileges a rescore needs (and, with reverify, the submissions' UPDATE)
// that the connected role lacks: none for the coordinator's writer role,
// most for the read-only user.
func MissingRescorePrivileges(ctx context.Context, pool *pgxpool.Pool, reverify bool) ([]string, error) {
	checks := rescoreWrites
	if reverify {
		checks = append([][2]string{{"submissions", "UPDATE"}}, checks...)
	}
	tables, privs := make([]string, len(checks)), make([]string, len(checks))
	for i, c := range checks {
		tables[i], privs[i] = c[0], c[1]
	}
	rows, err := pool.Query(ctx, `SELECT p || ' on ' || t FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS c(t, p, n)
		WHERE NOT has_table_privilege(t, p) ORDER BY n`, tables, privs)
	if err != nil {
		return nil, fmt.Errorf("checking the role's privileges: %w", err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("checking the role's privileges: %w", err)
	}
	return missing, nil
}
