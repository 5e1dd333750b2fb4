-- Indexes the coordinator's set-based batch writes and reads need, so that the
-- cost of a batch depends on the batch and not on the size of the history.
-- Built CONCURRENTLY so that the collector keeps writing submissions while a
-- large existing database is migrated.

-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_submissions_submitted_at ON submissions (submitted_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_nodes_block_producer_key ON nodes (block_producer_key);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_bot_logs_batch_end_epoch ON bot_logs (batch_end_epoch);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_bot_logs_batch_start_epoch ON bot_logs (batch_start_epoch);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_bot_logs_statehash_bot_log_id ON bot_logs_statehash (bot_log_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_points_bot_log_id ON points (bot_log_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_score_history_score_at ON score_history (score_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS idx_score_history_score_at;
DROP INDEX CONCURRENTLY IF EXISTS idx_points_bot_log_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_bot_logs_statehash_bot_log_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_bot_logs_batch_start_epoch;
DROP INDEX CONCURRENTLY IF EXISTS idx_bot_logs_batch_end_epoch;
DROP INDEX CONCURRENTLY IF EXISTS idx_nodes_block_producer_key;
DROP INDEX CONCURRENTLY IF EXISTS idx_submissions_submitted_at;
