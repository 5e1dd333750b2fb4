-- coordinator serve no longer needs points_summary (node_id, bot_log_id)
-- (00009): it keeps each producer's batches with a point in memory, loaded
-- once at start and extended on each batch notification. The index cost the
-- batch write about 16% at 10,000 producers (each batch adds an entry in a
-- different leaf page for every producer); dropping it gives that back.
-- Dropped CONCURRENTLY, so a live database is migrated without blocking the
-- collector and the coordinator.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS idx_points_summary_node_bot_log;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_points_summary_node_bot_log ON points_summary (node_id, bot_log_id);
