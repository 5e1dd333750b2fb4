package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Contact is one block producer's registration: the spreadsheet row the
// application status update copies into nodes.
type Contact struct {
	DiscordID        string
	Email            string
	BlockProducerKey string
}

// updateApplicationStatus marks the registered nodes in one statement. When
// a key appears more than once, its last contact wins (DISTINCT ON keeps the
// highest ordinality), so the update is deterministic.
const updateApplicationStatus = `
UPDATE nodes AS n
SET application_status = true, discord_id = c.discord_id, email_id = c.email_id
FROM (
	SELECT DISTINCT ON (u.key) u.key, u.discord_id, u.email_id
	FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(key, discord_id, email_id, ord)
	ORDER BY u.key, u.ord DESC
) AS c
WHERE n.block_producer_key = c.key`

// UpdateApplicationStatus sets application_status, discord_id and email_id
// of the nodes whose block_producer_key has a contact, in one set-based
// statement, and returns the number of nodes updated. Contacts without a
// matching node are ignored, as in the original.
func UpdateApplicationStatus(ctx context.Context, pool *pgxpool.Pool, contacts []Contact) (int64, error) {
	if len(contacts) == 0 {
		return 0, nil
	}
	keys := make([]string, len(contacts))
	discord := make([]string, len(contacts))
	email := make([]string, len(contacts))
	for i, c := range contacts {
		keys[i], discord[i], email[i] = c.BlockProducerKey, c.DiscordID, c.Email
	}
	tag, err := pool.Exec(ctx, updateApplicationStatus, keys, discord, email)
	if err != nil {
		return 0, fmt.Errorf("updating the application status of %d contacts: %w", len(contacts), err)
	}
	return tag.RowsAffected(), nil
}
