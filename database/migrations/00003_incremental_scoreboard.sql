-- State of the incremental scoreboard: the batch end for which nodes.score is
-- exact. A batch whose previous end matches updates the scores by the points
-- entering and leaving the window (a cost that depends on the batch only);
-- any other batch recomputes the window in full and records its end here.

-- +goose Up
CREATE TABLE IF NOT EXISTS coordinator_scoreboard (
    singleton        BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    window_end_epoch BIGINT NOT NULL,
    uptime_days      INT NOT NULL
);

-- cleanup_old_data: the original's NOT IN over parent_statehash_id matches no
-- row at all once one parent is NULL (a submission without a known parent), so
-- state hashes were never cleaned up. NOT EXISTS has no such trap. Deleting
-- scored batches also invalidates the incremental scoreboard.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION cleanup_old_data(days_ago INTEGER)
RETURNS void AS $$
DECLARE
  threshold_epoch BIGINT;
  threshold_date DATE;
  n_points_summary INT;
  n_points INT;
  n_bot_logs_statehash INT;
  n_bot_logs INT;
  n_submissions INT;
  n_statehash INT;
BEGIN
  threshold_epoch := EXTRACT(EPOCH FROM (NOW() - INTERVAL '1 day' * days_ago))::BIGINT;
  threshold_date := (NOW() - INTERVAL '1 day' * days_ago)::DATE;
  RAISE NOTICE 'Cleaning up data older than % days ago (epoch %, date %)', days_ago, threshold_epoch, threshold_date;

  WITH del AS (DELETE FROM points_summary WHERE bot_log_id IN (SELECT id FROM bot_logs WHERE batch_start_epoch < threshold_epoch) RETURNING 1)
  SELECT COUNT(*) INTO n_points_summary FROM del;
  WITH del AS (DELETE FROM points WHERE bot_log_id IN (SELECT id FROM bot_logs WHERE batch_start_epoch < threshold_epoch) RETURNING 1)
  SELECT COUNT(*) INTO n_points FROM del;
  WITH del AS (DELETE FROM bot_logs_statehash WHERE bot_log_id IN (SELECT id FROM bot_logs WHERE batch_start_epoch < threshold_epoch) RETURNING 1)
  SELECT COUNT(*) INTO n_bot_logs_statehash FROM del;
  WITH del AS (DELETE FROM bot_logs WHERE batch_start_epoch < threshold_epoch RETURNING 1)
  SELECT COUNT(*) INTO n_bot_logs FROM del;
  WITH del AS (DELETE FROM submissions WHERE submitted_at_date < threshold_date RETURNING 1)
  SELECT COUNT(*) INTO n_submissions FROM del;
  WITH del AS (
    DELETE FROM statehash s
    WHERE NOT EXISTS (SELECT 1 FROM bot_logs_statehash b WHERE b.statehash_id = s.id)
      AND NOT EXISTS (SELECT 1 FROM bot_logs_statehash b WHERE b.parent_statehash_id = s.id)
      AND NOT EXISTS (SELECT 1 FROM points p WHERE p.statehash_id = s.id)
    RETURNING 1)
  SELECT COUNT(*) INTO n_statehash FROM del;
  IF n_bot_logs > 0 THEN
    DELETE FROM coordinator_scoreboard;
  END IF;

  RAISE NOTICE 'Cleanup summary: % points_summary, % points, % bot_logs_statehash, % bot_logs, % submissions, % statehash',
    n_points_summary, n_points, n_bot_logs_statehash, n_bot_logs, n_submissions, n_statehash;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
DROP TABLE IF EXISTS coordinator_scoreboard;
