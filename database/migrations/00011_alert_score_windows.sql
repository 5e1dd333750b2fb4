-- Incremental score windows of the score_below alert rules (those whose
-- window is not UPTIME_DAYS_FOR_SCORE, which nodes.score_percent gives):
-- per window, each node's points_summary rows in the batches lying inside
-- [end - window, end], kept up to date batch after batch by the points of the
-- batches entering and leaving the window, as coordinator_scoreboard does for
-- nodes.score. alert_score_windows says for which batch a window's counts are
-- exact; a window whose marker does not follow on from the batch before
-- (a window no subscription used for a while, batches deleted by
-- cleanup_old_data, a new starting row) or that a rescore cleared is counted
-- in full once.

-- +goose Up
CREATE TABLE alert_score_windows (
    window_seconds   BIGINT PRIMARY KEY,
    -- The batch for which the counts are exact, the end of its window and
    -- the number of bot_logs rows inside that window.
    bot_log_id       BIGINT NOT NULL,
    window_end_epoch BIGINT NOT NULL,
    batches          BIGINT NOT NULL
);

CREATE TABLE alert_score_window_points (
    window_seconds BIGINT NOT NULL,
    node_id        INT NOT NULL,
    points         INT NOT NULL,
    PRIMARY KEY (window_seconds, node_id)
);

-- +goose Down
DROP TABLE alert_score_window_points;
DROP TABLE alert_score_windows;
