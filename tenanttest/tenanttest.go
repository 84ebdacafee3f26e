// Package tenanttest gives each application test a tenant of its own.
//
//	var migrator *tenantplugin.Migrator // one for the whole package, set in TestMain
//
//	func TestPolls(t *testing.T) {
//		t.Parallel()
//		tn := tenanttest.New(t, migrator, tenanttest.WithSubdomain("polls.localhost"))
//		db.WithContext(tn.Context()).Create(&Poll{Question: "?"})
//		rec := httptest.NewRecorder()
//		app.Handler().ServeHTTP(rec, tn.NewRequest("GET", "/api/polls", nil))
//		// rec holds this tenant's polls, and only them
//	}
//
// New creates a registered tenant with a unique name on the fast path
// (Migrator.CreateTenant: the DDL captured once per Migrator, replayed in one
// round trip, then your migrations) and drops it in t.Cleanup. Names are
// unique across parallel tests and across test processes sharing a
// database, so tests may call t.Parallel.
//
// Cost, measured with BenchmarkNew (medians of 3 runs of 30 tenants, a
// one-table model set, a 2-core machine with PostgreSQL 15 on loopback):
// 7.7 ms to create a tenant and 3.1 ms to drop it, against 8.7 ms to create
// one through AutoMigrate in the same runs. Share one Migrator between
// tests: its first tenant also pays the one-time capture of the DDL (a
// rolled-back scratch transaction).
//
// The request helpers build requests that the tenanthttp middleware
// resolves to the test's tenant, by the resolver the option names
// (WithSubdomain, WithDomain, WithHeader, WithPathPrefix); a request made by
// NewRequest also carries the tenant in its context, for handlers tested
// without the middleware.
package tenanttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"gorm.io/gorm"
)

// Option configures New.
type Option func(*config)

type config struct {
	prefix     string
	subdomain  string
	domain     string
	header     string
	pathPrefix string
}

// WithPrefix starts the tenant's name with prefix (default: the test's name,
// lower-cased, with every character outside a-z, 0-9 and _ replaced by _,
// cut to 40 bytes). A prefix that could not start a tenant name gets "t_"
// in front.
func WithPrefix(prefix string) Option { return func(c *config) { c.prefix = prefix } }

// WithSubdomain makes requests resolve by subdomain: their host is
// NAME.base (tenanthttp.Subdomain(base, dir)).
func WithSubdomain(base string) Option {
	return func(c *config) { c.subdomain = strings.Trim(base, ".") }
}

// WithDomain registers the domain NAME.base for the tenant when it is
// created, and makes requests use it as their host (tenanthttp.Host(dir)).
func WithDomain(base string) Option { return func(c *config) { c.domain = strings.Trim(base, ".") } }

// WithHeader makes requests name the tenant in header name
// (tenanthttp.Header(name, dir)).
func WithHeader(name string) Option { return func(c *config) { c.header = name } }

// WithPathPrefix makes requests name the tenant in their path: a target
// /rest becomes /prefix/NAME/rest (tenanthttp.PathPrefix(prefix, dir)).
func WithPathPrefix(prefix string) Option {
	return func(c *config) { c.pathPrefix = "/" + strings.Trim(prefix, "/") }
}

// Tenant is a test's own tenant.
type Tenant struct {
	// Name is the tenant's name (and schema).
	Name string

	m   *tenantplugin.Migrator
	cfg config
	ctx context.Context
}

var (
	seq    atomic.Int64
	runTag = randomTag()
)

// randomTag tells this test process's tenants from another's on a shared
// database.
func randomTag() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// New creates a tenant for t with m (Migrator.CreateTenant, the fast path)
// and drops it (Migrator.DropTenant) when t and its subtests finish; a
// tenant the test dropped itself is fine. A failure to create it ends the
// test with t.Fatal. m's plugin must be registered and its shared schema
// migrated (MigrateShared).
func New(t testing.TB, m *tenantplugin.Migrator, opts ...Option) *Tenant {
	t.Helper()
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	prefix := cfg.prefix
	if prefix == "" {
		prefix = t.Name()
	}
	name := fmt.Sprintf("%s_%d_%s", sanitize(prefix), seq.Add(1), runTag)
	if err := tenantplugin.ValidateName(name); err != nil {
		t.Fatalf("tenanttest: %v", err)
	}
	var domains []string
	if cfg.domain != "" {
		domains = append(domains, name+"."+cfg.domain)
	}
	if err := m.CreateTenant(context.Background(), name, domains...); err != nil {
		t.Fatalf("tenanttest: %v", err)
	}
	t.Cleanup(func() {
		err := m.DropTenant(context.WithoutCancel(context.Background()), name)
		if err != nil && !errors.Is(err, tenantplugin.ErrUnknownTenant) {
			t.Errorf("tenanttest: %v", err)
		}
	})
	return &Tenant{Name: name, m: m, cfg: cfg, ctx: tenantplugin.WithTenant(t.Context(), name)}
}

// sanitize turns s into the start of a tenant name: lower case, a-z, 0-9
// and _ only, at most 40 bytes, starting with a letter or _ and never with
// pg_.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if str := b.String(); str != "" && !strings.HasSuffix(str, "_") {
				b.WriteByte('_')
			}
		}
	}
	out := strings.TrimSuffix(b.String(), "_")
	// The name goes on with "_": a prefix "pg" would make it start with pg_.
	if out == "" || (out[0] >= '0' && out[0] <= '9') || strings.HasPrefix(out+"_", "pg_") {
		out = "t_" + out
	}
	return strings.TrimSuffix(out, "_")
}

// Context returns a context carrying the tenant (tenantplugin.WithTenant),
// derived from the test's context (t.Context): it is cancelled when the
// test ends, just before the tenant is dropped.
func (tn *Tenant) Context() context.Context { return tn.ctx }

// DB returns the plugin's *gorm.DB routed to the tenant.
func (tn *Tenant) DB() *gorm.DB { return tn.m.Plugin().DB().WithContext(tn.ctx) }

// Host returns the host requests use: NAME.base with WithSubdomain or
// WithDomain, "" otherwise.
func (tn *Tenant) Host() string {
	switch {
	case tn.cfg.domain != "":
		return tn.Name + "." + tn.cfg.domain
	case tn.cfg.subdomain != "":
		return tn.Name + "." + tn.cfg.subdomain
	}
	return ""
}

// NewRequest returns an incoming server request, like
// httptest.NewRequest(method, target, body), that resolves to the tenant
// through the middleware as the options say, and whose context carries the
// tenant. Give it to a handler's ServeHTTP.
func (tn *Tenant) NewRequest(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, tn.target(target), body)
	tn.decorate(r)
	return r.WithContext(tenantplugin.WithTenant(r.Context(), tn.Name))
}

// NewClientRequest returns a client request, like
// http.NewRequestWithContext(tn.Context(), method, url, body), for a real
// server (httptest.NewServer): the tenant travels in its host, header or
// path as the options say. url is the server's URL plus a path.
func (tn *Tenant) NewClientRequest(method, url string, body io.Reader) (*http.Request, error) {
	r, err := http.NewRequestWithContext(tn.ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if tn.cfg.pathPrefix != "" {
		r.URL.Path = tn.target(r.URL.Path)
		r.URL.RawPath = ""
	}
	tn.decorate(r)
	return r, nil
}

func (tn *Tenant) target(target string) string {
	if tn.cfg.pathPrefix == "" {
		return target
	}
	if i := strings.Index(target, "://"); i >= 0 { // absolute URL: rewrite its path
		rest := target[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return target + tn.cfg.pathPrefix + "/" + tn.Name + "/"
		}
		return target[:i+3+j] + tn.cfg.pathPrefix + "/" + tn.Name + rest[j:]
	}
	if !strings.HasPrefix(target, "/") {
		target = "/" + target
	}
	return tn.cfg.pathPrefix + "/" + tn.Name + target
}

func (tn *Tenant) decorate(r *http.Request) {
	if h := tn.Host(); h != "" {
		r.Host = h
	}
	if tn.cfg.header != "" {
		r.Header.Set(tn.cfg.header, tn.Name)
	}
}
