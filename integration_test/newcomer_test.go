package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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
// label is another tenant's name; hosts under base that are not registered
// follow the subdomain rule in both orders.
func TestRegisteredDomainUnderBaseWinsInEitherOrder(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	base := "tracker-" + e.shared + ".test"
	acme, thor, loki := "acme_"+e.shared, "thor_"+e.shared, "loki_"+e.shared
	for _, n := range []string{acme, thor, loki} {
		require.NoError(t, e.m.CreateTenant(ctx, n))
	}
	// A custom domain under base whose label is no tenant.
	require.NoError(t, e.m.AddDomain(ctx, acme, "acme-corp."+base))
	// A domain under base two labels deep (the subdomain rule never matches it).
	require.NoError(t, e.m.AddDomain(ctx, acme, "www.acme."+base))
	// A hyphenated label that starts like another tenant's name.
	require.NoError(t, e.m.AddDomain(ctx, acme, thor+"-old."+base))
	// A domain whose label is another tenant's name: the registration is
	// explicit, so it wins over the rule (README: do not let tenants
	// register hosts under your own base).
	require.NoError(t, e.m.AddDomain(ctx, acme, loki+"."+base))

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
		{loki + "." + base, 200, acme + " /"},
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
	assert.Equal(t, tenantplugin.RoleName(server.Name, name), who)
	require.NoError(t, e.p.RunInTenant(ctx, name, func(tx *gorm.DB) error {
		return tx.Exec("INSERT INTO polls (question, owner) VALUES ('raw', current_schema())").Error
	}))
	assert.Equal(t, []string{name}, e.owners(name, "polls"))
	st, err := e.p.Migrator(tenantplugin.WithForce()).MigrateTenant(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateMigrated, st)
	require.NoError(t, e.m.DropTenant(ctx, name))
	var exists bool
	require.NoError(t, e.db.Raw("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ?)", tenantplugin.RoleName(server.Name, name)).Scan(&exists).Error)
	assert.False(t, exists)
	assert.False(t, e.schemaExists(name))
}

// TestStartUpWithNothingToDoLogsOneLine: the start-up Migrate over tenants
// that are all up to date logs one Info line through SlogProgress.
func TestStartUpWithNothingToDoLogsOneLine(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	e.createTenants("quiet", 30)
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rep, err := e.p.Migrator(tenantplugin.WithProgress(tenantplugin.SlogProgress(logger))).Migrate(context.Background())
	require.NoError(t, err)
	require.Equal(t, 30, rep.UpToDate, rep.String())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, buf.String())
	assert.Contains(t, lines[0], `msg="tenantplugin: every tenant up to date" total=30`)
}

// Shared models that reference the tenant registry (the README's example):
// a subscription goes with its tenant (ON DELETE CASCADE); an invoice must be
// dealt with before its tenant can be dropped (no ON DELETE action).
type Subscription struct {
	ID       uint                       `gorm:"primaryKey"`
	Tenant   string                     `gorm:"size:63;not null;index"`
	Registry *tenantplugin.TenantRecord `gorm:"foreignKey:Tenant;references:Name;constraint:OnDelete:CASCADE"`
	Plan     string
	Seats    int
}

type Invoice struct {
	ID       uint                       `gorm:"primaryKey"`
	Tenant   string                     `gorm:"size:63;not null;index"`
	Registry *tenantplugin.TenantRecord `gorm:"foreignKey:Tenant;references:Name"`
	Cents    int
}

// TestSharedTableReferencingTheRegistry: MigrateShared creates shared tables
// with foreign keys to tenantplugin_tenants.name; rows can be written for
// registered tenants only, from shared and tenant contexts; DropTenant
// removes a tenant's subscriptions with it (CASCADE) and refuses, leaving
// everything as it was, while an invoice (no ON DELETE action) references it.
func TestSharedTableReferencingTheRegistry(t *testing.T) {
	ctx := context.Background()
	shared := fmt.Sprintf("subs_shared_%d", sharedN.Add(1))
	db, err := server.Open(2, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	p := testPlugin(shared, tenantplugin.WithSharedModels(&Subscription{}, &Invoice{}))
	require.NoError(t, db.Use(p))
	m := p.Migrator()
	require.NoError(t, m.MigrateShared(ctx))
	e := &env{t: t, db: db, p: p, m: m}

	var defs []string
	require.NoError(t, db.Raw(`SELECT c.relname || ' ' || pg_get_constraintdef(k.oid) FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ? AND k.contype = 'f' AND c.relname IN ('subscriptions', 'invoices') ORDER BY 1`, shared).Scan(&defs).Error)
	assert.Equal(t, []string{
		"invoices FOREIGN KEY (tenant) REFERENCES " + shared + ".tenantplugin_tenants(name)",
		"subscriptions FOREIGN KEY (tenant) REFERENCES " + shared + ".tenantplugin_tenants(name) ON DELETE CASCADE",
	}, defs)

	a, b := "subs_a_"+shared, "subs_b_"+shared
	require.NoError(t, m.CreateTenant(ctx, a))
	require.NoError(t, m.CreateTenant(ctx, b))
	admin := db.WithContext(tenantplugin.SharedOnly(ctx))
	require.NoError(t, admin.Create(&Subscription{Tenant: a, Plan: "pro", Seats: 5}).Error)
	// From a request of tenant b: the shared table is still the shared one.
	require.NoError(t, e.as(b).Create(&Subscription{Tenant: b, Plan: "free", Seats: 1}).Error)
	require.NoError(t, admin.Create(&Invoice{Tenant: b, Cents: 1200}).Error)
	err = admin.Create(&Subscription{Tenant: "nobody", Plan: "pro"}).Error
	require.Error(t, err, "a subscription for an unregistered tenant")
	assert.Contains(t, err.Error(), "SQLSTATE 23503")

	var subs []Subscription
	require.NoError(t, admin.Preload("Registry").Order("tenant").Find(&subs).Error)
	require.Len(t, subs, 2)
	assert.Equal(t, a, subs[0].Registry.Name)
	var mine Subscription
	require.NoError(t, e.as(a).Where("tenant = ?", a).Take(&mine).Error)
	assert.Equal(t, 5, mine.Seats)

	// b has an invoice: DropTenant refuses and changes nothing.
	err = m.DropTenant(ctx, b)
	require.Error(t, err)
	t.Log(err)
	assert.Contains(t, err.Error(), `tenant "`+b+`"`)
	assert.Contains(t, err.Error(), `"invoices"`)
	assert.Contains(t, err.Error(), "SQLSTATE 23503")
	assert.True(t, e.schemaExists(b))
	names, err := m.Tenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{a, b}, names)
	assert.EqualValues(t, 2, e.count(shared, "subscriptions"))

	// Settle the invoice, then the drop goes through and takes b's
	// subscription with it.
	require.NoError(t, admin.Where("tenant = ?", b).Delete(&Invoice{}).Error)
	require.NoError(t, m.DropTenant(ctx, b))
	require.NoError(t, m.DropTenant(ctx, a))
	assert.EqualValues(t, 0, e.count(shared, "subscriptions"))
	assert.False(t, e.schemaExists(a))
	assert.False(t, e.schemaExists(b))
}
