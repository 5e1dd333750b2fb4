// Package subapi is the HTTP API of alert subscriptions in `coordinator
// serve` (huma v2, next to the read API): POST /api/v1/subscriptions,
// GET and DELETE /api/v1/subscriptions/{id} and POST
// /api/v1/subscriptions/{id}/test, authorised by the subscription's bearer
// token (or ADMIN_API_TOKEN).
package subapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/delegation-program/uptime-coordinator/alerting/rules"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
)

// Prefix is the subscriptions' path.
const Prefix = "/api/v1/subscriptions"

// Handlers serve the subscription API through a subscriptions.Service.
type Handlers struct {
	Service *subscriptions.Service
	Logger  *slog.Logger
	Now     func() time.Time
}

// Producers is the API's producers field: "*" or a list of public keys.
type Producers struct{ subscriptions.Producers }

// UnmarshalJSON reads "*" or a list.
func (p *Producers) UnmarshalJSON(b []byte) error { return p.Producers.UnmarshalJSON(b) }

// Schema describes "*" or a list of keys in the OpenAPI document.
func (Producers) Schema(huma.Registry) *huma.Schema {
	one := 1
	return &huma.Schema{Description: `The producers' public keys, or "*" for every producer (needs the admin token).`,
		OneOf: []*huma.Schema{
			{Type: "string", Enum: []any{"*"}},
			{Type: "array", MinItems: &one, MaxItems: ptr(subscriptions.MaxProducers), Items: &huma.Schema{Type: "string"}},
		}}
}

func ptr(n int) *int { return &n }

// SpecBody is a subscription request.
type SpecBody struct {
	Producers Producers    `json:"producers"`
	Channel   string       `json:"channel" enum:"slack,discord,webhook" doc:"Where messages go."`
	URL       string       `json:"url" doc:"The webhook URL: https, to a public address."`
	Rules     []rules.Rule `json:"rules" minItems:"1" doc:"missed_batches {count, default 3}, score_below {window 24h|7d|30d|90d, percent}, error_class {class}."`
}

type createInput struct {
	Authorization string `header:"Authorization" doc:"Bearer ADMIN_API_TOKEN, needed for \"*\"."`
	Body          SpecBody
}

type createOutput struct {
	Body subscriptions.Created
}

type idInput struct {
	Authorization string `header:"Authorization" doc:"Bearer <the subscription's token> (or ADMIN_API_TOKEN); 401 without."`
	ID            int64  `path:"id"`
}

type getOutput struct {
	Body subscriptions.Subscription
}

type testOutput struct {
	Body struct {
		ID string `json:"id" doc:"The test message's idempotency key."`
	}
}

// Register adds the subscription operations to api.
func (h *Handlers) Register(api huma.API) {
	tags := []string{"alerts"}
	huma.Register(api, huma.Operation{OperationID: "create-subscription", Method: http.MethodPost, Path: Prefix,
		Summary: "Subscribe to per-producer alerts", DefaultStatus: http.StatusCreated, Tags: tags,
		Description: "Returns the subscription's id, the bearer token that reads, tests and deletes it, and the secret that signs the generic webhook's messages (X-Signature-256: sha256=HMAC-SHA256 of the body). Both are shown once.",
		Errors:      []int{http.StatusBadRequest, http.StatusForbidden}}, h.create)
	huma.Register(api, huma.Operation{OperationID: "get-subscription", Method: http.MethodGet, Path: Prefix + "/{id}",
		Summary: "One subscription", Tags: tags, Errors: []int{http.StatusUnauthorized, http.StatusNotFound}}, h.get)
	huma.Register(api, huma.Operation{OperationID: "delete-subscription", Method: http.MethodDelete, Path: Prefix + "/{id}",
		Summary: "Delete a subscription", DefaultStatus: http.StatusNoContent, Tags: tags,
		Errors: []int{http.StatusUnauthorized, http.StatusNotFound}}, h.delete)
	huma.Register(api, huma.Operation{OperationID: "test-subscription", Method: http.MethodPost, Path: Prefix + "/{id}/test",
		Summary: "Send a test message", DefaultStatus: http.StatusAccepted, Tags: tags,
		Description: "Queues a test message (event \"test\"); the coordinator's run delivers it.",
		Errors:      []int{http.StatusUnauthorized, http.StatusNotFound}}, h.test)
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(header string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

func (h *Handlers) fail(err error) error {
	switch {
	case errors.Is(err, subscriptions.ErrInvalid):
		return huma.Error400BadRequest(err.Error())
	case errors.Is(err, subscriptions.ErrForbidden):
		return huma.Error403Forbidden(err.Error())
	case errors.Is(err, subscriptions.ErrNotFound):
		return huma.Error404NotFound(err.Error())
	}
	h.log().Error("subscription API: database error", "error", err)
	return huma.Error500InternalServerError("the subscription could not be processed")
}

func (h *Handlers) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handlers) create(ctx context.Context, in *createInput) (*createOutput, error) {
	spec := subscriptions.Spec{Producers: in.Body.Producers.Producers, Channel: in.Body.Channel, URL: in.Body.URL, Rules: in.Body.Rules}
	c, err := h.Service.Create(ctx, spec, bearer(in.Authorization))
	if err != nil {
		return nil, h.fail(err)
	}
	h.log().Info("alert subscription created", "id", c.ID, "channel", spec.Channel, "every_producer", spec.Producers.All,
		"producers", len(spec.Producers.Keys))
	return &createOutput{Body: c}, nil
}

func (h *Handlers) token(in *idInput) (string, error) {
	t := bearer(in.Authorization)
	if t == "" {
		return "", huma.Error401Unauthorized("Authorization: Bearer <token> is required")
	}
	return t, nil
}

func (h *Handlers) get(ctx context.Context, in *idInput) (*getOutput, error) {
	t, err := h.token(in)
	if err != nil {
		return nil, err
	}
	s, err := h.Service.Get(ctx, in.ID, t)
	if err != nil {
		return nil, h.fail(err)
	}
	return &getOutput{Body: s}, nil
}

func (h *Handlers) delete(ctx context.Context, in *idInput) (*struct{}, error) {
	t, err := h.token(in)
	if err != nil {
		return nil, err
	}
	if err := h.Service.Delete(ctx, in.ID, t); err != nil {
		return nil, h.fail(err)
	}
	h.log().Info("alert subscription deleted", "id", in.ID)
	return nil, nil
}

func (h *Handlers) test(ctx context.Context, in *idInput) (*testOutput, error) {
	t, err := h.token(in)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	key, err := h.Service.Test(ctx, in.ID, t, now())
	if err != nil {
		return nil, h.fail(err)
	}
	out := &testOutput{}
	out.Body.ID = key
	return out, nil
}
