-- Per-producer batch evidence: why each producer did or did not get a point
-- in each batch, the verifier's error classes, and the batches that failed.
-- New tables only: the original's tables are untouched. No foreign keys to
-- bot_logs (a per-row check on ~10,000 rows a batch would cost as much as the
-- rest of the evidence); cleanup_old_data deletes them with their batch.

-- +goose Up
-- Idempotent like the tables below (CREATE TYPE has no IF NOT EXISTS): a
-- rerun on a database that already has the type leaves it as it is.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'evidence_outcome' AND typnamespace = current_schema()::regnamespace) THEN
        CREATE TYPE evidence_outcome AS ENUM ('point', 'off_chain', 'invalid', 'unverified');
    END IF;
END
$$;
-- +goose StatementEnd

-- Producer keys of the evidence rows: every submitter, including those that
-- never had a valid submission (and so have no nodes row). Never deleted.
CREATE TABLE IF NOT EXISTS evidence_producers (
    id                 SERIAL PRIMARY KEY,
    block_producer_key TEXT NOT NULL UNIQUE
);

-- One row per (batch, producer that submitted in its window). A producer
-- without a row for a batch that has a batch_evidence_summary row sent
-- nothing in the window (no_submission).
CREATE TABLE IF NOT EXISTS batch_evidence (
    bot_log_id       INT NOT NULL,
    producer_id      INT NOT NULL,
    outcome          evidence_outcome NOT NULL,
    submissions      INT NOT NULL, -- all of the producer's submissions in the window
    valid            INT NOT NULL, -- valid ones
    unverified       INT NOT NULL, -- ones the verifier never marked; the rest failed
    invalid_by_class JSONB,        -- failed ones by error class, {"snark_invalid": 2}; NULL when none failed
    -- NULL, or {"error_examples": {class: raw validation_error of the latest
    -- failed submission of the class}, "state_hashes": [off_chain only: the
    -- distinct state hashes named]}
    details          JSONB,
    -- (bot_log_id, producer_id): a batch's rows are appended at the end of
    -- the index; a producer's rows are found by one probe per batch.
    PRIMARY KEY (bot_log_id, producer_id)
);

-- One row per batch scored with evidence: its totals.
CREATE TABLE IF NOT EXISTS batch_evidence_summary (
    bot_log_id           INT PRIMARY KEY,
    submissions          INT NOT NULL,
    valid                INT NOT NULL,
    unverified           INT NOT NULL,
    invalid              INT NOT NULL,
    producers            INT NOT NULL, -- distinct submitters
    point_producers      INT NOT NULL,
    off_chain_producers  INT NOT NULL,
    invalid_producers    INT NOT NULL,
    unverified_producers INT NOT NULL
);

-- Failed submissions of a batch per verifier error class.
CREATE TABLE IF NOT EXISTS batch_error_classes (
    bot_log_id  INT NOT NULL,
    class       TEXT NOT NULL,
    submissions INT NOT NULL,
    producers   INT NOT NULL,
    example     TEXT NOT NULL, -- raw validation_error of the class's latest submission
    PRIMARY KEY (bot_log_id, class)
);

-- Failed batch attempts (the last one is shown by coordinator status).
CREATE TABLE IF NOT EXISTS coordinator_failures (
    id           BIGSERIAL PRIMARY KEY,
    failed_at    TIMESTAMPTZ NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end   TIMESTAMPTZ NOT NULL,
    attempt      INT NOT NULL,      -- 1 for the first attempt
    final        BOOLEAN NOT NULL,  -- the batch was abandoned after its retries
    error        TEXT NOT NULL
);

-- cleanup_old_data, as in 00003, also deletes the evidence of the batches it
-- deletes and old failures. evidence_producers is a dictionary of keys (one
-- small row per key ever seen) that is never cleaned: the coordinator caches
-- its ids.
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
  n_evidence INT;
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
  WITH del AS (DELETE FROM batch_evidence WHERE bot_log_id IN (SELECT id FROM bot_logs WHERE batch_start_epoch < threshold_epoch) RETURNING 1)
  SELECT COUNT(*) INTO n_evidence FROM del;
  DELETE FROM batch_evidence_summary WHERE bot_log_id IN (SELECT id FROM bot_logs WHERE batch_start_epoch < threshold_epoch);
  DELETE FROM batch_error_classes WHERE bot_log_id IN (SELECT id FROM bot_logs WHERE batch_start_epoch < threshold_epoch);
  DELETE FROM coordinator_failures WHERE window_start < to_timestamp(threshold_epoch);
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

  RAISE NOTICE 'Cleanup summary: % points_summary, % points, % bot_logs_statehash, % bot_logs, % submissions, % statehash, % batch_evidence',
    n_points_summary, n_points, n_bot_logs_statehash, n_bot_logs, n_submissions, n_statehash, n_evidence;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
-- cleanup_old_data as 00003 left it.
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
DROP TABLE IF EXISTS coordinator_failures;
DROP TABLE IF EXISTS batch_error_classes;
DROP TABLE IF EXISTS batch_evidence_summary;
DROP TABLE IF EXISTS batch_evidence;
DROP TABLE IF EXISTS evidence_producers;
DROP TYPE IF EXISTS evidence_outcome;
