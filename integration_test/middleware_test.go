package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoTenant answers with the tenant found in the request context.
var echoTenant = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	name, ok := tenantplugin.FromContext(r.Context())
	if !ok {
		http.Error(w, "no tenant", 500)
		return
	}
	fmt.Fprintf(w, "%s %s", name, r.URL.Path)
})

func serve(h http.Handler, host, path string, header map[string]string) (int, string) {
	req := httptest.NewRequest("GET", "http://x"+path, nil)
	req.Host = host
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestMiddlewareResolvers(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	a := "mwa_" + e.shared
	b := "mwb_" + e.shared
	require.NoError(t, e.m.CreateTenant(ctx, a, "Shop."+a+".example:443", "www."+a+".example"))
	require.NoError(t, e.m.CreateTenant(ctx, b))
	dir := e.p.Directory()
	h := tenanthttp.Middleware(tenanthttp.WithResolvers(
		tenanthttp.Subdomain("app.localhost", dir),
		tenanthttp.Host(dir),
		tenanthttp.PathPrefix("/t", dir),
		tenanthttp.Header("X-Tenant", dir),
	))(echoTenant)

	cases := []struct {
		host, path string
		header     map[string]string
		code       int
		body       string
	}{
		{a + ".app.localhost:8080", "/x", nil, 200, a + " /x"},
		{"SHOP." + a + ".EXAMPLE", "/", nil, 200, a + " /"},
		{"www." + a + ".example.", "/", nil, 200, a + " /"},
		{"other.example", "/t/" + b + "/polls/1", nil, 200, b + " /polls/1"},
		{"other.example", "/", map[string]string{"X-Tenant": b}, 200, b + " /"},
		{"nobody.app.localhost", "/", nil, 404, ""},
		{"deep.er.app.localhost", "/", nil, 404, ""},
		{"other.example", "/", nil, 404, ""},
		{"other.example", "/t/nobody/x", nil, 404, ""},
		{"other.example", "/t/Bad-Name/x", nil, 400, ""},
		{"other.example", "/", map[string]string{"X-Tenant": `x";drop`}, 400, ""},
		{"bad host", "/", nil, 400, ""},
		{"", "/", nil, 400, ""},
	}
	for _, c := range cases {
		code, body := serve(h, c.host, c.path, c.header)
		assert.Equal(t, c.code, code, "%s %s %v: %s", c.host, c.path, c.header, body)
		if c.code == 200 {
			assert.Equal(t, c.body, body)
		}
	}

	// Steady state: a cached host costs no query.
	serve(h, a+".app.localhost", "/", nil)
	before := server.Counter.Count()
	for i := 0; i < 50; i++ {
		code, _ := serve(h, a+".app.localhost", "/", nil)
		require.Equal(t, 200, code)
		code, _ = serve(h, "shop."+a+".example", "/", nil)
		require.Equal(t, 200, code)
	}
	assert.Equal(t, before, server.Counter.Count(), "cached lookups sent queries")

	// Dropping a tenant and changing domains take effect at once.
	require.NoError(t, e.m.DropTenant(ctx, a))
	code, _ := serve(h, a+".app.localhost", "/", nil)
	assert.Equal(t, 404, code)
	code, _ = serve(h, "shop."+a+".example", "/", nil)
	assert.Equal(t, 404, code, "domains go with their tenant")
	require.NoError(t, e.m.AddDomain(ctx, b, "new."+b+".example"))
	code, body := serve(h, "new."+b+".example", "/", nil)
	assert.Equal(t, 200, code)
	assert.Equal(t, b+" /", body)
	require.NoError(t, e.m.RemoveDomain(ctx, "new."+b+".example"))
	code, _ = serve(h, "new."+b+".example", "/", nil)
	assert.Equal(t, 404, code)
	require.ErrorIs(t, e.m.AddDomain(ctx, "nobody", "x.example"), tenantplugin.ErrUnknownTenant)
}

func TestMiddlewareFailures(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	dir := e.p.Directory()
	var called bool
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })

	// A resolver that panics is a 503, not a crash.
	h := tenanthttp.Middleware(tenanthttp.WithResolvers(tenanthttp.ResolverFunc(func(*http.Request) (string, error) {
		panic("boom")
	})))(next)
	code, _ := serve(h, "x.example", "/", nil)
	assert.Equal(t, 503, code)
	// A resolver returning an invalid name never reaches the handler.
	h = tenanthttp.Middleware(tenanthttp.WithResolvers(tenanthttp.ResolverFunc(func(*http.Request) (string, error) {
		return "pg_catalog", nil
	})))(next)
	code, _ = serve(h, "x.example", "/", nil)
	assert.Equal(t, 400, code)

	// Registry unreachable: 503, through a custom error handler.
	var gotErr error
	h = tenanthttp.Middleware(
		tenanthttp.WithResolvers(tenanthttp.Host(dir)),
		tenanthttp.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, status int, err error) {
			gotErr = err
			w.WriteHeader(status)
		}),
	)(next)
	sqlDB, err := e.db.DB()
	require.NoError(t, err)
	require.NoError(t, sqlDB.Close())
	code, _ = serve(h, "down.example", "/", nil)
	assert.Equal(t, 503, code)
	var re *tenantplugin.RegistryError
	assert.ErrorAs(t, gotErr, &re)
	assert.False(t, called)
}
