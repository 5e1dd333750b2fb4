package subscriptions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/delegation-program/uptime-coordinator/alerting/channels"
)

// FileEntry is one subscription of ALERT_SUBSCRIPTIONS_FILE.
type FileEntry struct {
	// Name identifies the entry across reloads (unique in the file).
	Name string `yaml:"name"`
	Spec `yaml:",inline"`
	// Secret is the generic webhook's signing secret (required with the
	// webhook channel: the receiver must know it).
	Secret string `yaml:"secret"`
}

type file struct {
	Subscriptions []FileEntry `yaml:"subscriptions"`
}

// ReadFile parses and validates a subscriptions file, naming every problem
// with the entry it is in.
func (s *Service) ReadFile(ctx context.Context, path string) ([]FileEntry, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ALERT_SUBSCRIPTIONS_FILE: %w", err)
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("ALERT_SUBSCRIPTIONS_FILE %s: %w", path, err)
	}
	var errs []error
	seen := map[string]bool{}
	for i := range f.Subscriptions {
		e := &f.Subscriptions[i]
		where := fmt.Sprintf("subscriptions[%d]", i)
		if e.Name != "" {
			where += fmt.Sprintf(" (%s)", e.Name)
		}
		switch {
		case e.Name == "":
			errs = append(errs, fmt.Errorf("%s: name is missing", where))
		case seen[e.Name]:
			errs = append(errs, fmt.Errorf("%s: name is used twice", where))
		}
		seen[e.Name] = true
		spec, err := Validate(ctx, s.Policy, e.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		e.Spec = spec
		if e.Channel == "webhook" && len(e.Secret) < 16 {
			errs = append(errs, fmt.Errorf("%s: the webhook channel needs a secret of at least 16 characters (the receiver checks signatures with it)", where))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("ALERT_SUBSCRIPTIONS_FILE %s:\n%w", path, err)
	}
	return f.Subscriptions, nil
}

// Reconcile makes the file's subscriptions those of the table that came
// from the file, in one transaction: entries are created, or updated (kept), by
// name, entries no longer in the file are deleted (with their alert state),
// and the state of rules or producers an entry no longer has is dropped.
// Subscriptions made through the API are left alone. It returns how many
// entries were created, kept and deleted.
func (s *Service) Reconcile(ctx context.Context, entries []FileEntry) (created, kept, deleted int, err error) {
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		created, kept, deleted = 0, 0, 0
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name)
			rs, err := json.Marshal(e.Rules)
			if err != nil {
				return err
			}
			keys := e.Producers.Keys
			if keys == nil {
				keys = []string{}
			}
			var id int64
			var inserted bool
			if err := tx.QueryRow(ctx, `INSERT INTO alert_subscriptions (all_producers, producers, channel, url, host, secret, rules, file_name)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (file_name) DO UPDATE SET all_producers = EXCLUDED.all_producers, producers = EXCLUDED.producers,
					channel = EXCLUDED.channel, url = EXCLUDED.url, host = EXCLUDED.host, secret = EXCLUDED.secret, rules = EXCLUDED.rules
				RETURNING id, xmax = 0`, e.Producers.All, keys, e.Channel, e.URL, channels.Host(e.URL), e.Secret, rs, e.Name).Scan(&id, &inserted); err != nil {
				return fmt.Errorf("subscription %s: %w", e.Name, err)
			}
			if inserted {
				created++
				continue
			}
			kept++
			ruleKeys := make([]string, len(e.Rules))
			for i, r := range e.Rules {
				ruleKeys[i] = r.Key()
			}
			if _, err := tx.Exec(ctx, `DELETE FROM alert_state WHERE subscription_id = $1
				AND (rule_key <> ALL($2::text[]) OR (NOT $3 AND producer <> ALL($4::text[])))`, id, ruleKeys, e.Producers.All, keys); err != nil {
				return fmt.Errorf("subscription %s: dropping stale alert state: %w", e.Name, err)
			}
		}
		tag, err := tx.Exec(ctx, `DELETE FROM alert_subscriptions WHERE file_name IS NOT NULL AND file_name <> ALL($1::text[])`, names)
		if err != nil {
			return fmt.Errorf("deleting subscriptions no longer in the file: %w", err)
		}
		deleted = int(tag.RowsAffected())
		return nil
	})
	return created, kept, deleted, err
}
