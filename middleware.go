package tenantplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// A Resolver finds the tenant of an HTTP request. It returns ErrNoMatch when
// the request is not its kind (the next resolver is tried), the tenant name
// when it found one that exists, or an error: ErrUnknownTenant (answered 404),
// ErrMalformedHost or ErrInvalidTenantName (400), anything else, such as a
// *RegistryError, 503.
type Resolver interface {
	Resolve(r *http.Request) (string, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(r *http.Request) (string, error)

// Resolve implements Resolver.
func (f ResolverFunc) Resolve(r *http.Request) (string, error) { return f(r) }

var (
	// ErrNoMatch: a resolver does not apply to the request.
	ErrNoMatch = errors.New("tenantplugin: resolver does not apply")
	// ErrMalformedHost: the request's Host is not a well-formed host name.
	ErrMalformedHost = errors.New("tenantplugin: malformed host")
)

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middleware)

type middleware struct {
	resolvers []Resolver
	onError   func(w http.ResponseWriter, r *http.Request, status int, err error)
}

// Resolvers sets the resolvers, tried in order.
func Resolvers(rs ...Resolver) MiddlewareOption {
	return func(m *middleware) { m.resolvers = append(m.resolvers, rs...) }
}

// OnError replaces the error response. status is the suggested code: 400,
// 404 or 503. The default writes status and a short text.
func OnError(fn func(w http.ResponseWriter, r *http.Request, status int, err error)) MiddlewareOption {
	return func(m *middleware) { m.onError = fn }
}

// Middleware returns net/http middleware that resolves each request's tenant
// with the resolvers, in order, and serves the request with a context carrying
// it (WithTenant). A request no resolver matches gets 404; it never falls back
// to another tenant or to the shared schema. It works with http.ServeMux, chi
// and any router built on http.Handler.
func Middleware(opts ...MiddlewareOption) func(http.Handler) http.Handler {
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
			next.ServeHTTP(w, r.WithContext(WithTenant(r.Context(), tenant)))
		})
	}
}

func (m *middleware) resolve(r *http.Request) (tenant string, err error) {
	defer func() { // a resolver's panic is an error, never a crash
		if p := recover(); p != nil {
			tenant, err = "", fmt.Errorf("tenantplugin: resolver panicked: %v", p)
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
		if verr := ValidateName(t); verr != nil {
			return "", verr
		}
		return t, nil
	}
	return "", fmt.Errorf("%w: no resolver matched the request", ErrUnknownTenant)
}

// StatusFor maps a resolver error to an HTTP status: 400 for malformed input,
// 404 for an unknown tenant, 503 otherwise.
func StatusFor(err error) int {
	switch {
	case errors.Is(err, ErrMalformedHost), errors.Is(err, ErrInvalidTenantName):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownTenant):
		return http.StatusNotFound
	}
	return http.StatusServiceUnavailable
}

func defaultOnError(w http.ResponseWriter, _ *http.Request, status int, _ error) {
	http.Error(w, http.StatusText(status), status)
}

// NormalizeHost turns a Host header value into the form the registry keeps:
// the port stripped, lower case, no trailing dot. It rejects anything that is
// not a well-formed DNS name or IP address (ErrMalformedHost). Underscores are
// allowed in labels (tenant names may hold them, and so may subdomains).
func NormalizeHost(host string) (string, error) {
	h := host
	if strings.HasPrefix(h, "[") { // [::1]:8080
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", malformed(host, "unclosed [")
		}
		ip := net.ParseIP(h[1:end])
		if ip == nil || (len(h) > end+1 && !validPort(h[end+1:])) {
			return "", malformed(host, "bad IPv6 literal or port")
		}
		return "[" + strings.ToLower(ip.String()) + "]", nil
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:]) {
			return "", malformed(host, "bad port")
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return "", malformed(host, "empty")
	}
	if len(h) > 253 {
		return "", malformed(host, "longer than 253 bytes")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", malformed(host, "empty or over-long label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", malformed(host, "label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", malformed(host, fmt.Sprintf("character %q", c))
			}
		}
	}
	return h, nil
}

func validPort(p string) bool { // ":8080"
	if len(p) < 2 || len(p) > 6 || p[0] != ':' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

func malformed(host, why string) error {
	return fmt.Errorf("%w %s: %s", ErrMalformedHost, quoteForMessage(host), why)
}

// HostResolver resolves the request's host against the domains registered
// for tenants (Migrator.AddDomain, or CreateTenant's domains).
func HostResolver(d *Directory) Resolver {
	return ResolverFunc(func(r *http.Request) (string, error) {
		h, err := NormalizeHost(r.Host)
		if err != nil {
			return "", err
		}
		t, err := d.TenantForHost(r.Context(), h)
		if errors.Is(err, ErrUnknownTenant) {
			return "", ErrNoMatch // let a later resolver try
		}
		return t, err
	})
}

// SubdomainResolver resolves NAME.base (any port) to tenant NAME when NAME is
// registered. Hosts outside base do not match; a deeper or invalid label under
// base is an unknown tenant.
func SubdomainResolver(base string, d *Directory) Resolver {
	base = "." + strings.TrimPrefix(strings.ToLower(base), ".")
	return ResolverFunc(func(r *http.Request) (string, error) {
		h, err := NormalizeHost(r.Host)
		if err != nil {
			return "", err
		}
		if !strings.HasSuffix(h, base) {
			return "", ErrNoMatch
		}
		label := strings.TrimSuffix(h, base)
		if ValidateName(label) != nil {
			return "", &unknownHostError{host: h}
		}
		return existing(r.Context(), d, label)
	})
}

// HeaderResolver reads the tenant name from a request header. Only use it
// behind a trusted proxy that sets the header itself and strips it from
// client requests: otherwise any client can pick any tenant.
func HeaderResolver(header string, d *Directory) Resolver {
	return ResolverFunc(func(r *http.Request) (string, error) {
		v := r.Header.Get(header)
		if v == "" {
			return "", ErrNoMatch
		}
		if err := ValidateName(v); err != nil {
			return "", err
		}
		return existing(r.Context(), d, v)
	})
}

// PathPrefixResolver resolves /prefix/NAME/rest to tenant NAME and serves the
// request as /rest.
func PathPrefixResolver(prefix string, d *Directory) Resolver {
	prefix = "/" + strings.Trim(prefix, "/") + "/"
	return ResolverFunc(func(r *http.Request) (string, error) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok {
			return "", ErrNoMatch
		}
		name, tail, _ := strings.Cut(rest, "/")
		if err := ValidateName(name); err != nil {
			return "", err
		}
		t, err := existing(r.Context(), d, name)
		if err == nil {
			r.URL.Path = "/" + tail
			r.URL.RawPath = ""
		}
		return t, err
	})
}

func existing(ctx context.Context, d *Directory, name string) (string, error) {
	ok, err := d.Exists(ctx, name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", notRegistered(name)
	}
	return name, nil
}
