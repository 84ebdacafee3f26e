package tenanthttp

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gorm-tenancy/tenantplugin"
)

// Option configures Middleware.
type Option func(*middleware)

type middleware struct {
	resolvers []Resolver
	onError   func(w http.ResponseWriter, r *http.Request, status int, err error)
}

// WithResolvers adds resolvers, tried in order until one matches.
func WithResolvers(rs ...Resolver) Option {
	return func(m *middleware) { m.resolvers = append(m.resolvers, rs...) }
}

// WithErrorHandler replaces the error response. status is the suggested
// code: 400, 404 or 503 (see StatusFor). The default writes the status and
// its text.
func WithErrorHandler(fn func(w http.ResponseWriter, r *http.Request, status int, err error)) Option {
	return func(m *middleware) { m.onError = fn }
}

// Middleware returns net/http middleware that resolves each request's tenant
// with the resolvers, in order, and serves the request with a context
// carrying it (tenantplugin.WithTenant). A request no resolver matches gets
// 404; it never falls back to another tenant or to the shared schema. A
// resolver that panics gets 503, never a crash.
func Middleware(opts ...Option) func(http.Handler) http.Handler {
	m := &middleware{onError: defaultOnError}
	for _, o := range opts {
		o(m)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tenant, err := m.resolve(r)
			if err != nil {
				m.onError(w, r, StatusFor(err), err)
				return
			}
			next.ServeHTTP(w, r.WithContext(tenantplugin.WithTenant(r.Context(), tenant)))
		})
	}
}

func (m *middleware) resolve(r *http.Request) (tenant string, err error) {
	defer func() { // a resolver's panic is an error, never a crash
		if p := recover(); p != nil {
			tenant, err = "", fmt.Errorf("tenanthttp: resolver panicked: %v", p)
		}
	}()
	for _, res := range m.resolvers {
		t, err := res.Resolve(r)
		if errors.Is(err, ErrNoMatch) {
			continue
		}
		if err != nil {
			return "", err
		}
		if verr := tenantplugin.ValidateName(t); verr != nil {
			return "", verr
		}
		return t, nil
	}
	return "", fmt.Errorf("%w: no resolver matched the request", tenantplugin.ErrUnknownTenant)
}

// StatusFor maps a resolver error to an HTTP status: 400 for malformed
// input (tenantplugin.ErrMalformedHost, tenantplugin.ErrInvalidTenantName,
// ErrMalformedRequest), 404 for an unknown tenant, 503 otherwise (a
// *tenantplugin.RegistryError, say).
func StatusFor(err error) int {
	switch {
	case errors.Is(err, tenantplugin.ErrMalformedHost), errors.Is(err, tenantplugin.ErrInvalidTenantName),
		errors.Is(err, ErrMalformedRequest):
		return http.StatusBadRequest
	case errors.Is(err, tenantplugin.ErrUnknownTenant):
		return http.StatusNotFound
	}
	return http.StatusServiceUnavailable
}

func defaultOnError(w http.ResponseWriter, _ *http.Request, status int, _ error) {
	http.Error(w, http.StatusText(status), status)
}
