-- Index for coordinator serve (the read API): a producer's batches with a
-- point, by batch. Its producer page counts them per window and finds the
-- first and latest; without it those read points_summary's whole
-- (bot_log_id, node_id) index. Built CONCURRENTLY, so a large database is
-- migrated while the collector and the coordinator keep writing.

-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_points_summary_node_bot_log ON points_summary (node_id, bot_log_id);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS idx_points_summary_node_bot_log;
