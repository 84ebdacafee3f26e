package tenanthttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/internal/hostname"
)

// A Resolver finds the tenant of an HTTP request. It returns ErrNoMatch when
// the request is not its kind (the next resolver is tried), the tenant name
// when it found one that is registered, or an error:
// tenantplugin.ErrUnknownTenant (answered 404), tenantplugin.ErrMalformedHost,
// tenantplugin.ErrInvalidTenantName or ErrMalformedRequest (400), anything
// else, such as a *tenantplugin.RegistryError, 503.
type Resolver interface {
	Resolve(r *http.Request) (string, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(r *http.Request) (string, error)

// Resolve implements Resolver.
func (f ResolverFunc) Resolve(r *http.Request) (string, error) { return f(r) }

// Directory answers the resolvers' two questions. *tenantplugin.Directory
// (plugin.Directory()) implements it over the tenant registry with a cache.
type Directory interface {
	// TenantForHost returns the tenant registered for a normalized host, or
	// an error matching tenantplugin.ErrUnknownTenant.
	TenantForHost(ctx context.Context, host string) (string, error)
	// Exists reports whether tenant is registered.
	Exists(ctx context.Context, tenant string) (bool, error)
}

// NormalizeHost turns a Host header value into the form the registry keeps:
// the port stripped, lower case, no trailing dot. It rejects, with an error
// matching tenantplugin.ErrMalformedHost, anything that is not a well-formed
// DNS name or IP literal: non-ASCII bytes (checked before case folding, so
// the Kelvin sign cannot pass for "k"), ports outside 1-65535, numeric hosts
// that are not IPv4 addresses. Underscores are allowed in labels (tenant
// names may hold them).
func NormalizeHost(host string) (string, error) {
	h, why, ok := hostname.Normalize(host)
	if !ok {
		return "", fmt.Errorf("%w %q: %s", tenantplugin.ErrMalformedHost, truncate(host), why)
	}
	return h, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Host resolves the request's host against the domains registered for
// tenants (tenantplugin.Migrator.AddDomain, or CreateTenant's domains). A
// host registered for no tenant does not match (ErrNoMatch).
func Host(dir Directory) Resolver {
	return ResolverFunc(func(r *http.Request) (string, error) {
		h, err := NormalizeHost(r.Host)
		if err != nil {
			return "", err
		}
		return registeredHost(r.Context(), dir, h)
	})
}

func registeredHost(ctx context.Context, dir Directory, h string) (string, error) {
	t, err := dir.TenantForHost(ctx, h)
	if errors.Is(err, tenantplugin.ErrUnknownTenant) {
		return "", ErrNoMatch // let a later resolver try
	}
	return t, err
}

// Subdomain resolves NAME.base (any port) to tenant NAME when NAME is
// registered. A host registered as a tenant's domain wins over the
// subdomain rule, so a domain added with AddDomain under base reaches its
// tenant whatever order the resolvers are listed in. Hosts outside base do
// not match; a label under base that is no registered tenant is an unknown
// tenant (404).
func Subdomain(base string, dir Directory) Resolver {
	base = "." + strings.TrimPrefix(strings.ToLower(base), ".")
	return ResolverFunc(func(r *http.Request) (string, error) {
		h, err := NormalizeHost(r.Host)
		if err != nil {
			return "", err
		}
		if !strings.HasSuffix(h, base) {
			return "", ErrNoMatch
		}
		if t, err := registeredHost(r.Context(), dir, h); !errors.Is(err, ErrNoMatch) {
			return t, err
		}
		label := strings.TrimSuffix(h, base)
		if tenantplugin.ValidateName(label) != nil {
			return "", &tenantplugin.UnknownTenantError{Host: h}
		}
		return existing(r.Context(), dir, label)
	})
}

// Header reads the tenant name from a request header. Only use it behind a
// trusted proxy that sets the header itself and strips it from client
// requests: otherwise any client can pick any tenant. A request carrying the
// header twice is ambiguous: ErrMalformedRequest (400).
func Header(name string, dir Directory) Resolver {
	return ResolverFunc(func(r *http.Request) (string, error) {
		vals := r.Header.Values(name)
		switch {
		case len(vals) == 0 || (len(vals) == 1 && vals[0] == ""):
			return "", ErrNoMatch
		case len(vals) > 1:
			return "", fmt.Errorf("%w: %d values of header %s", ErrMalformedRequest, len(vals), name)
		}
		if err := checkName(vals[0]); err != nil {
			return "", err
		}
		return existing(r.Context(), dir, vals[0])
	})
}

// PathPrefix resolves /prefix/NAME/rest to tenant NAME and serves the
// request as /rest. The tenant segment must not hide a separator
// (/t/thor%2Fx/y) and the rest must be a clean path (no "..", ".", empty
// segments or encoded separators): anything else is ErrMalformedRequest
// (400), so that /t/thor/../loki/x can never be served to thor as /loki/x.
func PathPrefix(prefix string, dir Directory) Resolver {
	prefix = "/" + strings.Trim(prefix, "/") + "/"
	return ResolverFunc(func(r *http.Request) (string, error) {
		escaped := r.URL.EscapedPath()
		rest, ok := strings.CutPrefix(escaped, prefix)
		if !ok {
			return "", ErrNoMatch
		}
		rawName, rawTail, _ := strings.Cut(rest, "/")
		if strings.ContainsRune(rawName, '%') || hidesSeparator(rawTail) {
			return "", fmt.Errorf("%w: path %q hides a separator", ErrMalformedRequest, truncate(escaped))
		}
		if err := checkName(rawName); err != nil {
			return "", err
		}
		tail, err := url.PathUnescape(rawTail)
		if err != nil {
			return "", fmt.Errorf("%w: path %q: %v", ErrMalformedRequest, truncate(escaped), err)
		}
		newPath := "/" + tail
		if !cleanPath(newPath) {
			return "", fmt.Errorf("%w: path %q is not clean", ErrMalformedRequest, truncate(escaped))
		}
		t, err := existing(r.Context(), dir, rawName)
		if err == nil {
			r.URL.Path = newPath
			r.URL.RawPath = ""
			if "/"+rawTail != newPath {
				r.URL.RawPath = "/" + rawTail
			}
		}
		return t, err
	})
}

// hidesSeparator reports an encoded '/' or '\' in an escaped path.
func hidesSeparator(escaped string) bool {
	l := strings.ToLower(escaped)
	return strings.Contains(l, "%2f") || strings.Contains(l, "%5c") || strings.ContainsRune(escaped, '\\')
}

// cleanPath reports whether p is its own path.Clean (a trailing slash
// allowed).
func cleanPath(p string) bool {
	if p == "/" {
		return true
	}
	trimmed := strings.TrimSuffix(p, "/")
	return path.Clean(trimmed) == trimmed
}

// checkName checks a tenant name read from a request: a malformed one is
// 400 (tenantplugin.ErrInvalidTenantName); a well-formed name that is
// reserved (public, information_schema, pg_*) is no tenant, 404, as a
// subdomain label of that name is.
func checkName(name string) error {
	err := tenantplugin.ValidateName(name)
	if err == nil {
		return nil
	}
	reserved := name == "public" || name == "information_schema" || strings.HasPrefix(name, "pg_")
	if reserved && tenantplugin.ValidateName("x"+strings.TrimPrefix(name, "pg_")) == nil {
		return &tenantplugin.UnknownTenantError{Tenant: name, Detail: "a reserved schema name, never a tenant"}
	}
	return err
}

func existing(ctx context.Context, dir Directory, name string) (string, error) {
	ok, err := dir.Exists(ctx, name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", &tenantplugin.UnknownTenantError{Tenant: name, Detail: "not registered"}
	}
	return name, nil
}
