-- Per-producer alerts (issue 13): subscriptions, the consecutive-miss count
-- of every producer, the state of firing alerts and the transactional outbox
-- of notifications. River's own tables (the delivery queue) arrive with the
-- Go migration 00007 (see river.go).

-- +goose Up
CREATE TABLE alert_subscriptions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    all_producers BOOLEAN NOT NULL DEFAULT FALSE,
    producers     TEXT[] NOT NULL DEFAULT '{}',
    channel       TEXT NOT NULL CHECK (channel IN ('slack', 'discord', 'webhook')),
    url           TEXT NOT NULL,
    -- HMAC-SHA256 key of the generic webhook's signature.
    secret        TEXT NOT NULL,
    -- sha256 of the subscription's API token; NULL for subscriptions from
    -- ALERT_SUBSCRIPTIONS_FILE, which only the file manages.
    token_hash    BYTEA,
    rules         JSONB NOT NULL,
    -- The entry's name in ALERT_SUBSCRIPTIONS_FILE (NULL: made by the API).
    file_name     TEXT UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (all_producers OR cardinality(producers) > 0)
);
CREATE INDEX alert_subscriptions_producers ON alert_subscriptions USING gin (producers);

-- Consecutive batches without a point, per producer, counted from the batch
-- in which it first appears in nodes.
CREATE TABLE alert_producer_misses (
    producer   TEXT PRIMARY KEY,
    misses     INT NOT NULL,
    bot_log_id BIGINT NOT NULL
);

-- Firing alerts: a row exists from the batch an alert fired in until the
-- batch it resolves in.
CREATE TABLE alert_state (
    subscription_id BIGINT NOT NULL REFERENCES alert_subscriptions (id) ON DELETE CASCADE,
    rule_key        TEXT NOT NULL,
    producer        TEXT NOT NULL,
    fired_bot_log_id BIGINT,
    fired_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, rule_key, producer)
);

-- The transactional outbox: one row per notification, written in the
-- transaction that decided it, delivered by the queue (a River job inserted
-- in the same transaction). id is the idempotency key every payload carries.
-- subscription_id NULL: an operator alert, sent to WEBHOOK_URL.
CREATE TABLE alert_outbox (
    id              TEXT PRIMARY KEY,
    subscription_id BIGINT REFERENCES alert_subscriptions (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    bot_log_id      BIGINT,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX alert_outbox_pending ON alert_outbox (created_at) WHERE delivered_at IS NULL;

-- +goose Down
DROP TABLE alert_outbox;
DROP TABLE alert_state;
DROP TABLE alert_producer_misses;
DROP TABLE alert_subscriptions;
