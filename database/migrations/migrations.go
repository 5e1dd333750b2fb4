// Package migrations embeds the coordinator's versioned Postgres schema.
// 00001 is the original tool's schema, written idempotently so that it is a
// no-op on a database the original created; later versions add only what
// the coordinator needs (indexes, its own bookkeeping, fixed functions).
//
// Version 00007 has no .sql file: it is the Go migration of river.go (River's
// tables). Number new files after the highest version of both.
package migrations

import "embed"

// FS holds the migration files, applied in order by goose.
//
//go:embed *.sql
var FS embed.FS
