// Package subscriptions manages per-producer alert subscriptions: creating
// them (validating producers, channel, rules and the webhook URL against the
// outbound policy), reading and deleting them with their bearer token
// (stored hashed), sending a test message, and reconciling the subscriptions
// of ALERT_SUBSCRIPTIONS_FILE into the table.
package subscriptions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/delegation-program/uptime-coordinator/alerting/channels"
	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/queue"
	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// Errors of the Service; the API maps them to statuses.
var (
	// ErrInvalid: the request names something wrong (400).
	ErrInvalid = errors.New("invalid subscription")
	// ErrForbidden: "*" without the admin token (403).
	ErrForbidden = errors.New(`subscribing to every producer ("*") needs the admin token (ADMIN_API_TOKEN)`)
	// ErrNotFound: no subscription with this id and token (404).
	ErrNotFound = errors.New("no such subscription for this token")
)

// MaxProducers bounds the producers of one subscription.
const MaxProducers = 1000

// Producers is a subscription's producers: a list of keys, or every
// producer ("*" in JSON and YAML).
type Producers struct {
	All  bool
	Keys []string
}

// MarshalJSON writes "*" or the list.
func (p Producers) MarshalJSON() ([]byte, error) {
	if p.All {
		return []byte(`"*"`), nil
	}
	return json.Marshal(p.Keys)
}

// UnmarshalJSON reads "*" or a list of keys.
func (p *Producers) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != "*" {
			return fmt.Errorf(`producers must be "*" or a list of public keys, got %q`, s)
		}
		*p = Producers{All: true}
		return nil
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return errors.New(`producers must be "*" or a list of public keys`)
	}
	*p = Producers{Keys: keys}
	return nil
}

// UnmarshalYAML reads "*" or a list of keys.
func (p *Producers) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err == nil {
		if s != "*" {
			return fmt.Errorf(`producers must be "*" or a list of public keys, got %q`, s)
		}
		*p = Producers{All: true}
		return nil
	}
	var keys []string
	if err := unmarshal(&keys); err != nil {
		return errors.New(`producers must be "*" or a list of public keys`)
	}
	*p = Producers{Keys: keys}
	return nil
}

// Spec is what a subscription asks for.
type Spec struct {
	Producers Producers    `json:"producers"`
	Channel   string       `json:"channel"`
	URL       string       `json:"url"`
	Rules     []rules.Rule `json:"rules"`
}

const base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// ValidKey reports whether k looks like a Mina public key: 55 base58
// characters starting B62.
func ValidKey(k string) bool {
	if len(k) != 55 || !strings.HasPrefix(k, "B62") {
		return false
	}
	for _, c := range k {
		if !strings.ContainsRune(base58, c) {
			return false
		}
	}
	return true
}

// Validate checks and normalises a spec (rule defaults, duplicate
// producers and rules dropped), naming every problem; the URL is checked
// against the outbound policy.
func Validate(ctx context.Context, policy outbound.Policy, s Spec) (Spec, error) {
	var errs []error
	if !s.Producers.All {
		seen := map[string]bool{}
		var keys []string
		for _, k := range s.Producers.Keys {
			switch {
			case !ValidKey(k):
				errs = append(errs, fmt.Errorf("producer %q is not a public key (55 base58 characters starting B62)", k))
			case !seen[k]:
				seen[k] = true
				keys = append(keys, k)
			}
		}
		s.Producers.Keys = keys
		switch {
		case len(s.Producers.Keys) == 0 && len(errs) == 0:
			errs = append(errs, errors.New(`producers is empty: give public keys, or "*"`))
		case len(s.Producers.Keys) > MaxProducers:
			errs = append(errs, fmt.Errorf("at most %d producers per subscription, got %d", MaxProducers, len(s.Producers.Keys)))
		}
	}
	if !channels.Valid(s.Channel) {
		errs = append(errs, fmt.Errorf("channel must be slack, discord or webhook, got %q", s.Channel))
	}
	if s.URL == "" {
		errs = append(errs, errors.New("url is missing"))
	} else if err := policy.CheckURL(ctx, s.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	if len(s.Rules) == 0 {
		errs = append(errs, errors.New("rules is empty: give at least one rule (missed_batches, score_below, error_class)"))
	}
	seen := map[string]bool{}
	var rs []rules.Rule
	for i, r := range s.Rules {
		n, err := r.Normalize()
		if err != nil {
			errs = append(errs, fmt.Errorf("rules[%d]: %w", i, err))
			continue
		}
		if n.Kind == rules.ErrorClass && !slices.Contains(coordinator.ClassNames, n.Class) {
			errs = append(errs, fmt.Errorf("rules[%d]: unknown error class %q (one of %s)", i, n.Class, strings.Join(coordinator.ClassNames, ", ")))
			continue
		}
		if !seen[n.Key()] {
			seen[n.Key()] = true
			rs = append(rs, n)
		}
	}
	s.Rules = rs
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return s, nil
}

// Service manages subscriptions in Postgres on behalf of their owners:
// creation, reading and deletion authorised by token, test messages.
type Service struct {
	Pool   *pgxpool.Pool
	Policy outbound.Policy
	// AdminToken (ADMIN_API_TOKEN) may create "*" subscriptions and read or
	// delete any subscription. Empty: nobody may create "*" through the API.
	AdminToken string
	// Queue sends test messages.
	Queue *queue.Queue
}

// Created is the answer to a creation: the token that manages the
// subscription and the webhook's signing secret, shown once.
type Created struct {
	ID     int64  `json:"id"`
	Token  string `json:"token"`
	Secret string `json:"secret"`
}

// Subscription is a stored subscription as the API shows it: the URL's host
// only (webhook URLs hold tokens), never the secret.
type Subscription struct {
	ID        int64        `json:"id"`
	Producers Producers    `json:"producers"`
	Channel   string       `json:"channel"`
	Host      string       `json:"host"`
	Rules     []rules.Rule `json:"rules"`
	Source    string       `json:"source"` // api or file
	Firing    int          `json:"firing"` // alerts currently firing
	CreatedAt time.Time    `json:"created_at"`
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

func (s *Service) admin(token string) bool {
	return s.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.AdminToken)) == 1
}

// Create validates spec and stores it. bearer is the caller's token: "*"
// needs the admin token.
func (s *Service) Create(ctx context.Context, spec Spec, bearer string) (Created, error) {
	spec, err := Validate(ctx, s.Policy, spec)
	if err != nil {
		return Created{}, err
	}
	if spec.Producers.All && !s.admin(bearer) {
		return Created{}, ErrForbidden
	}
	c := Created{Token: base64.RawURLEncoding.EncodeToString(random(32)), Secret: hex.EncodeToString(random(32))}
	rs, err := json.Marshal(spec.Rules)
	if err != nil {
		return Created{}, fmt.Errorf("encoding rules: %w", err)
	}
	keys := spec.Producers.Keys
	if keys == nil {
		keys = []string{}
	}
	err = s.Pool.QueryRow(ctx, `INSERT INTO alert_subscriptions (all_producers, producers, channel, url, host, secret, token_hash, rules)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		spec.Producers.All, keys, spec.Channel, spec.URL, channels.Host(spec.URL), c.Secret, hashToken(c.Token), rs).Scan(&c.ID)
	if err != nil {
		return Created{}, fmt.Errorf("storing the subscription: %w", err)
	}
	return c, nil
}

// authorize checks that token manages subscription id. (No row lock: the
// API's role may not lock rows; a concurrent delete makes the caller's
// statement find nothing.)
func (s *Service) authorize(ctx context.Context, q pgx.Tx, id int64, token string) error {
	var hash []byte
	err := q.QueryRow(ctx, `SELECT token_hash FROM alert_subscriptions WHERE id = $1`, id).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("reading subscription %d: %w", id, err)
	}
	if s.admin(token) {
		return nil
	}
	if token == "" || hash == nil || subtle.ConstantTimeCompare(hash, hashToken(token)) != 1 {
		return ErrNotFound
	}
	return nil
}

// Get returns subscription id if token manages it.
func (s *Service) Get(ctx context.Context, id int64, token string) (Subscription, error) {
	var out Subscription
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := s.authorize(ctx, tx, id, token); err != nil {
			return err
		}
		var rs []byte
		var file *string
		if err := tx.QueryRow(ctx, `SELECT s.id, s.all_producers, s.producers, s.channel, s.host, s.rules, s.file_name, s.created_at,
			(SELECT count(*) FROM alert_state a WHERE a.subscription_id = s.id)
			FROM alert_subscriptions s WHERE s.id = $1`, id).Scan(&out.ID, &out.Producers.All, &out.Producers.Keys,
			&out.Channel, &out.Host, &rs, &file, &out.CreatedAt, &out.Firing); err != nil {
			return fmt.Errorf("reading subscription %d: %w", id, err)
		}
		out.Source = "api"
		if file != nil {
			out.Source = "file"
		}
		return json.Unmarshal(rs, &out.Rules)
	})
	return out, err
}

// Delete removes subscription id (and its alert state and undelivered
// messages) if token manages it.
func (s *Service) Delete(ctx context.Context, id int64, token string) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := s.authorize(ctx, tx, id, token); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM alert_subscriptions WHERE id = $1`, id); err != nil {
			return fmt.Errorf("deleting subscription %d: %w", id, err)
		}
		return nil
	})
}

// Test queues a test message to subscription id if token manages it, and
// returns its idempotency key.
func (s *Service) Test(ctx context.Context, id int64, token string, now time.Time) (string, error) {
	var key string
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := s.authorize(ctx, tx, id, token); err != nil {
			return err
		}
		key = queue.Key("test", id, now.UnixNano())
		_, err := s.Queue.EnqueueTx(ctx, tx, []queue.Outgoing{{SubscriptionID: id, Message: channels.Message{
			ID: key, Event: channels.Test,
			Text: fmt.Sprintf("🔔 Test message of uptime alert subscription %d, sent %s.", id, now.UTC().Format(time.DateTime+" UTC")),
		}}})
		return err
	})
	return key, err
}
