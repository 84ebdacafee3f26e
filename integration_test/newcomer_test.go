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
	"gorm.io/gorm"
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

// TestHyphenatedSubdomainServesItsTenant: my-team.<base> is served to tenant
// my-team through tenanthttp.Subdomain, with no lookup of the app's own; its
// rows land in schema "my-team", and my_team is another tenant.
func TestHyphenatedSubdomainServesItsTenant(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	base := "tracker-" + e.shared + ".test"
	for _, n := range []string{"my-team", "my_team"} {
		require.NoError(t, e.m.CreateTenant(ctx, n))
		t.Cleanup(func() { _ = e.m.DropTenant(context.Background(), n) })
	}
	// The app: plain GORM with the request's context.
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		db := e.db.WithContext(r.Context())
		name, _ := tenantplugin.FromContext(r.Context())
		if r.Method == http.MethodPost {
			if err := db.Create(&Poll{Question: "q", Owner: name}).Error; err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		var n int64
		if err := db.Model(&Poll{}).Count(&n).Error; err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s %d", name, n)
	})
	h := tenanthttp.Middleware(tenanthttp.WithResolvers(tenanthttp.Subdomain(base, e.p.Directory())))(app)
	do := func(method, host string) (int, string) {
		req := httptest.NewRequest(method, "http://x/polls", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	code, body := do("POST", "my-team."+base)
	require.Equal(t, 200, code, body)
	assert.Equal(t, "my-team 1", body)
	code, body = do("GET", "My-Team."+base+":8080")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "my-team 1", body)
	code, body = do("GET", "my_team."+base)
	require.Equal(t, 200, code, body)
	assert.Equal(t, "my_team 0", body)
	assert.EqualValues(t, 1, e.count("my-team", "polls"))
	assert.Equal(t, []string{"my-team"}, e.owners("my-team", "polls"))
	assert.EqualValues(t, 0, e.count("my_team", "polls"))

	// Not a tenant (unregistered, or not a name: a trailing hyphen is no DNS
	// label either): 404 or 400, never another tenant.
	code, _ = do("GET", "other-team."+base)
	assert.Equal(t, 404, code)
	code, _ = do("GET", "my-team-."+base)
	assert.Equal(t, 400, code)
}

// TestHyphenatedTenantWithRoles: a hyphenated tenant gets its role
// (tenantplugin_my-team-...), which routed transactions run under, and loses
// it when dropped; its migration, lock and search_path work too.
func TestHyphenatedTenantWithRoles(t *testing.T) {
	e := newRolesEnv(t)
	ctx := context.Background()
	// Roles are cluster-wide: the name carries this run's database suffix.
	name := "my-team-" + server.Name[len(server.Name)-10:]
	require.NoError(t, e.m.CreateTenant(ctx, name))
	require.NoError(t, e.as(name).Create(&Poll{Question: "q", Owner: name}).Error)
	var who string
	require.NoError(t, e.as(name).Raw("SELECT current_user").Scan(&who).Error)
	assert.Equal(t, tenantplugin.RoleName(name), who)
	require.NoError(t, e.p.RunInTenant(ctx, name, func(tx *gorm.DB) error {
		return tx.Exec("INSERT INTO polls (question, owner) VALUES ('raw', current_schema())").Error
	}))
	assert.Equal(t, []string{name}, e.owners(name, "polls"))
	st, err := e.p.Migrator(tenantplugin.WithForce()).MigrateTenant(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateMigrated, st)
	require.NoError(t, e.m.DropTenant(ctx, name))
	var exists bool
	require.NoError(t, e.db.Raw("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ?)", tenantplugin.RoleName(name)).Scan(&exists).Error)
	assert.False(t, exists)
	assert.False(t, e.schemaExists(name))
}
