package config

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	kjson "sigs.k8s.io/json"
)

// The loader reads registered variables through a lookup function, applies
// their defaults and collects every problem instead of stopping at the first.

func newLoader(lookup func(string) (string, bool)) *loader {
	return &loader{lookup: lookup, raw: map[string]string{}, defaults: map[string]string{}}
}

// err returns the problems collected so far as one *Error, or nil.
func (l *loader) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	return &Error{Problems: l.errs}
}

type loader struct {
	lookup   func(string) (string, bool)
	raw      map[string]string
	errs     []string
	defaults map[string]string
}

func (l *loader) fail(name, value, expected string) {
	if value == "" {
		l.errs = append(l.errs, fmt.Sprintf("%s: missing; expected %s", name, expected))
		return
	}
	if v, ok := lookupVar(name); ok && v.Secret {
		value = "(hidden)"
	}
	l.errs = append(l.errs, fmt.Sprintf("%s: invalid value %q; expected %s", name, value, expected))
}

// str returns the variable's trimmed value, or its registered default.
func (l *loader) str(name string) string {
	v, ok := lookupVar(name)
	if !ok {
		panic("config: unregistered variable " + name)
	}
	s, set := l.lookup(name)
	s = strings.TrimSpace(s)
	if !set || s == "" {
		s = v.Default
		if d, ok := l.defaults[name]; ok {
			s = d
		}
	}
	if set || s != "" {
		l.raw[name] = s
	}
	return s
}

// strOrEmpty is str, except that a variable set to "" (or blanks) stays
// empty instead of taking its default: for variables where empty means off.
func (l *loader) strOrEmpty(name string) string {
	if s, set := l.lookup(name); set && strings.TrimSpace(s) == "" {
		l.str(name) // registers it
		l.raw[name] = ""
		return ""
	}
	return l.str(name)
}

func (l *loader) required(name, expected string) string {
	s := l.str(name)
	if s == "" {
		l.fail(name, "", expected)
	}
	return s
}

func (l *loader) requireFor(name, why, expected string) {
	if l.raw[name] == "" {
		l.errs = append(l.errs, fmt.Sprintf("%s: missing; required for %s; expected %s", name, why, expected))
	}
}

func (l *loader) integer(name string, lo, hi int) int {
	s := l.str(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		l.fail(name, s, fmt.Sprintf("a whole number from %d to %d", lo, hi))
		return 0
	}
	return n
}

func (l *loader) boolean(name string) bool {
	s := strings.ToLower(l.str(name))
	switch s {
	case "1", "true":
		return true
	case "", "0", "false":
		return false
	}
	l.fail(name, s, `"1" or "true" to enable, "0", "false" or unset to disable`)
	return false
}

func (l *loader) oneOf(name string, optional bool, allowed ...string) string {
	s := l.str(name)
	if s == "" && optional {
		return ""
	}
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return a
		}
	}
	l.fail(name, s, "one of "+strings.Join(allowed, ", "))
	return s
}

func (l *loader) duration(name string) time.Duration {
	s := l.str(name)
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		l.fail(name, s, "a positive Go duration such as 90m or 2h")
		return 0
	}
	return d
}

// percent reads a percentage between 0 and 100.
func (l *loader) percent(name string) float64 {
	s := l.str(name)
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 100 {
		l.fail(name, s, "a percentage between 0 and 100")
		return 0
	}
	return f
}

func (l *loader) seconds(name string) *time.Duration {
	s := l.str(name)
	if s == "" {
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		l.fail(name, s, "a number of seconds >= 0")
		return nil
	}
	d := time.Duration(f * float64(time.Second))
	return &d
}

func (l *loader) quantity(name string) string {
	s := l.str(name)
	if s == "" {
		return ""
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		l.fail(name, s, "a Kubernetes quantity such as 500m, 2 or 1Gi")
		return ""
	}
	return s
}

// httpURL reads an optional http(s) URL (a secret one is hidden in problems).
func (l *loader) httpURL(name, expected string) string {
	s := l.str(name)
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.fail(name, s, expected)
	}
	return s
}

// int32Seconds reads an optional whole number of seconds >= 0.
func (l *loader) int32Seconds(name string) *int32 {
	s := l.str(name)
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 {
		l.fail(name, s, "a whole number of seconds >= 0")
		return nil
	}
	v := int32(n)
	return &v
}

// optionalPercent reads an optional percentage (nil when unset).
func (l *loader) optionalPercent(name string) *float64 {
	if s, _ := l.lookup(name); strings.TrimSpace(s) == "" {
		l.str(name) // record the default, if any
		return nil
	}
	f := l.percent(name)
	return &f
}

// jsonObject decodes the variable's JSON into v strictly, as the API
// server does: field names match case-sensitively, and unknown or repeated
// fields are errors, so a misspelt field is not silently dropped.
func (l *loader) jsonObject(name string, v any, expected string) {
	s := l.str(name)
	if s == "" {
		return
	}
	strict, err := kjson.UnmarshalStrict([]byte(s), v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		l.fail(name, s, expected+" ("+err.Error()+")")
	}
}
