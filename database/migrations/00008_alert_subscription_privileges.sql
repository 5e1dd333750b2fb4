-- Alert subscriptions hold webhook URLs (which carry tokens) and signing
-- secrets. `coordinator serve` manages subscriptions as the read-only user
-- (create-ro-user grants it INSERT and DELETE on alert_subscriptions and
-- SELECT on every column but url and secret); host is what the API shows of
-- the URL. A read-only user that got SELECT on the whole table by default
-- privileges (made before this table) loses url and secret here.

-- +goose Up
ALTER TABLE alert_subscriptions ADD COLUMN host TEXT NOT NULL DEFAULT '';
UPDATE alert_subscriptions SET host = coalesce(substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?([^/?#]*)'), '');

-- +goose StatementBegin
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
    WHERE g.table_schema = current_schema() AND g.table_name = 'alert_subscriptions' AND g.privilege_type = 'SELECT'
      AND g.grantee NOT IN ('PUBLIC', (SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'alert_subscriptions'))
  LOOP
    EXECUTE format('REVOKE SELECT ON alert_subscriptions FROM %I', r.grantee);
    EXECUTE format('GRANT SELECT (id, all_producers, producers, channel, host, token_hash, rules, file_name, created_at) ON alert_subscriptions TO %I', r.grantee);
  END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE alert_subscriptions DROP COLUMN host;
