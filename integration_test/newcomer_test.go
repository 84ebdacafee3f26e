package integration_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRegisteredDomainUnderBaseWinsInEitherOrder: a domain registered for a
// tenant (AddDomain) that lies under the Subdomain resolver's base reaches
// its tenant whether Subdomain or Host is listed first, also when its first
// label happens to be another tenant's name; hosts under base that are not
// registered follow the subdomain rule in both orders.
func TestRegisteredDomainUnderBaseWinsInEitherOrder(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	base := "tracker-" + e.shared + ".test"
	acme, thor := "acme_"+e.shared, "thor_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, acme))
	require.NoError(t, e.m.CreateTenant(ctx, thor))
	// A custom domain under base whose label is no tenant name at all.
	require.NoError(t, e.m.AddDomain(ctx, acme, "acme-corp."+base))
	// A domain under base two labels deep (the subdomain rule never matches it).
	require.NoError(t, e.m.AddDomain(ctx, acme, "www.acme."+base))
	// A domain under base whose label is another tenant's name: the
	// registration is explicit, so it wins over the rule.
	require.NoError(t, e.m.AddDomain(ctx, acme, thor+"-old."+base))

	dir := e.p.Directory()
	orders := map[string]http.Handler{
		"subdomain first": tenanthttp.Middleware(tenanthttp.WithResolvers(tenanthttp.Subdomain(base, dir), tenanthttp.Host(dir)))(echoTenant),
		"host first":      tenanthttp.Middleware(tenanthttp.WithResolvers(tenanthttp.Host(dir), tenanthttp.Subdomain(base, dir)))(echoTenant),
		"subdomain only":  tenanthttp.Middleware(tenanthttp.WithResolvers(tenanthttp.Subdomain(base, dir)))(echoTenant),
	}
	cases := []struct {
		host string
		code int
		body string
	}{
		{"acme-corp." + base, 200, acme + " /"},
		{"ACME-CORP." + base + ":8443", 200, acme + " /"},
		{"www.acme." + base, 200, acme + " /"},
		{thor + "-old." + base, 200, acme + " /"},
		{thor + "." + base, 200, thor + " /"}, // the subdomain rule
		{acme + "." + base, 200, acme + " /"},
		{"nobody." + base, 404, ""},
		{"deep.nobody." + base, 404, ""},
	}
	for order, h := range orders {
		for _, c := range cases {
			code, body := serve(h, c.host, "/", nil)
			assert.Equal(t, c.code, code, "%s: %s: %s", order, c.host, body)
			if c.code == 200 {
				assert.Equal(t, c.body, body, "%s: %s", order, c.host)
			}
		}
	}

	// Removing the domain hands the host back to the subdomain rule at once
	// (acme-corp is no tenant: 404), in both orders.
	require.NoError(t, e.m.RemoveDomain(ctx, "acme-corp."+base))
	for order, h := range orders {
		code, _ := serve(h, "acme-corp."+base, "/", nil)
		assert.Equal(t, 404, code, order)
	}
}
