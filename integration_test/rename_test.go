package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// registryState describes, as text, everything a rename may change in e's
// database: registry rows, domains, the subscriptions table of the test (a
// shared table with a foreign key to the registry), the tenant schemas with
// their row counts, and the tenant roles named by RoleName.
func (e *isolatedEnv) registryState(names ...string) string {
	e.t.Helper()
	var b strings.Builder
	q := func(sql string, args ...any) {
		var rows []string
		require.NoError(e.t, e.db.Raw(sql, args...).Scan(&rows).Error, sql)
		fmt.Fprintf(&b, "%s\n", strings.Join(rows, "; "))
	}
	s := tenantplugin.QuoteIdentifier(e.shared)
	q(`SELECT name || ' ' || fingerprint || ' ' || created_at::text || ' ' || coalesce(migrated_at::text, '-') FROM ` + s + `.tenantplugin_tenants ORDER BY 1`)
	q(`SELECT host || ' ' || tenant FROM ` + s + `.tenantplugin_domains ORDER BY 1`)
	q(`SELECT id || ' ' || tenant FROM ` + s + `.subscriptions ORDER BY 1`)
	q(`SELECT nspname FROM pg_namespace WHERE nspname IN ? ORDER BY 1`, names)
	roles := make([]string, len(names))
	for i, n := range names {
		roles[i] = tenantplugin.RoleName(server.Name, n)
	}
	q(`SELECT rolname FROM pg_roles WHERE rolname IN ? ORDER BY 1`, roles)
	for _, n := range names {
		var hasTables bool
		require.NoError(e.t, e.db.Raw("SELECT to_regclass(?) IS NOT NULL", tenantplugin.QuoteIdentifier(n)+".polls").Scan(&hasTables).Error)
		if hasTables {
			fmt.Fprintf(&b, "%s polls=%d choices=%d\n", n, e.count(n, "polls"), e.count(n, "choices"))
		}
	}
	return b.String()
}

// addSubscriptions creates the shared table of the README's example of a
// foreign key to the tenant registry.
func (e *isolatedEnv) addSubscriptions() {
	e.t.Helper()
	s := tenantplugin.QuoteIdentifier(e.shared)
	require.NoError(e.t, e.db.Exec(`CREATE TABLE `+s+`.subscriptions (id serial PRIMARY KEY,
  tenant varchar(63) NOT NULL REFERENCES `+s+`.tenantplugin_tenants(name))`).Error)
}

func TestRenameTenant(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	e.addSubscriptions()
	ctx := context.Background()
	thor, asgard, other := "thor_"+e.shared, "asgard_"+e.shared, "other_"+e.shared
	host := "polls." + thor + ".example"
	require.NoError(t, e.m.CreateTenant(ctx, thor, host))
	require.NoError(t, e.m.CreateTenant(ctx, other))
	require.NoError(t, e.as(thor).Create(&Poll{Question: "q", Owner: thor, Choices: []Choice{{Text: "a", Owner: thor}}}).Error)
	require.NoError(t, e.db.Exec(`INSERT INTO `+tenantplugin.QuoteIdentifier(e.shared)+`.subscriptions (tenant) VALUES (?), (?)`, thor, other).Error)
	// Warm the directory's cache with the old name and the host.
	_, err := e.p.ContextFor(ctx, thor)
	require.NoError(t, err)
	got, err := e.p.Directory().TenantForHost(ctx, host)
	require.NoError(t, err)
	require.Equal(t, thor, got)
	var before tenantplugin.TenantRecord
	require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).Where("name = ?", thor).Take(&before).Error)

	require.NoError(t, e.m.RenameTenant(ctx, thor, asgard))

	assert.False(t, e.schemaExists(thor))
	assert.True(t, e.schemaExists(asgard))
	names, err := e.m.Tenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{asgard, other}, names)
	var after tenantplugin.TenantRecord
	require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).Where("name = ?", asgard).Take(&after).Error)
	assert.Equal(t, before.Fingerprint, after.Fingerprint, "the fingerprint moves with the row")
	assert.True(t, before.CreatedAt.Equal(after.CreatedAt))
	hosts, err := e.m.Domains(ctx, asgard)
	require.NoError(t, err)
	assert.Equal(t, []string{host}, hosts)
	var subs []string
	require.NoError(t, e.db.Raw(`SELECT tenant FROM `+tenantplugin.QuoteIdentifier(e.shared)+`.subscriptions ORDER BY id`).Scan(&subs).Error)
	assert.Equal(t, []string{asgard, other}, subs, "the application's reference to the registry follows")

	// The cache was cleared: the old name is unknown at once, the host
	// resolves to the new one.
	_, err = e.p.ContextFor(ctx, thor)
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	_, err = e.p.ContextFor(ctx, asgard)
	require.NoError(t, err)
	got, err = e.p.Directory().TenantForHost(ctx, host)
	require.NoError(t, err)
	assert.Equal(t, asgard, got)

	// The data came along; sequences continue; the tenant is up to date.
	var polls []Poll
	require.NoError(t, e.as(asgard).Preload("Choices").Find(&polls).Error)
	require.Len(t, polls, 1)
	assert.Equal(t, "q", polls[0].Question)
	require.Len(t, polls[0].Choices, 1)
	next := Poll{Question: "after", Owner: asgard}
	require.NoError(t, e.as(asgard).Create(&next).Error)
	assert.Equal(t, polls[0].ID+1, next.ID)
	var n int64
	require.NoError(t, e.as(asgard).Raw("SELECT count(*) FROM polls").Scan(&n).Error, "raw SQL is routed to the new schema")
	assert.EqualValues(t, 2, n)
	require.ErrorIs(t, e.as(thor).Find(&polls).Error, tenantplugin.ErrUnknownTenant)
	rep, err := e.m.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.UpToDate, rep.String())
	assert.Zero(t, rep.Migrated)

	// The old name is free again.
	require.NoError(t, e.m.CreateTenant(ctx, thor))

	// Hyphenated names are names like any other.
	hyphen := "as-gard_" + e.shared
	require.NoError(t, e.m.RenameTenant(ctx, asgard, hyphen))
	require.NoError(t, e.as(hyphen).Find(&polls).Error)
	assert.Len(t, polls, 2)
	got, err = e.p.Directory().TenantForHost(ctx, host)
	require.NoError(t, err)
	assert.Equal(t, hyphen, got)
}

// TestRenameTenantRefusalsChangeNothing: each refused rename returns its
// typed error and leaves the registry, domains, references, schemas, rows
// and roles exactly as they were.
func TestRenameTenantRefusalsChangeNothing(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	e.addSubscriptions()
	ctx := context.Background()
	a, b, stray, free := "ra_"+e.shared, "rb_"+e.shared, "stray_"+e.shared, "free_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, a, "a."+e.shared+".example"))
	require.NoError(t, e.m.CreateTenant(ctx, b))
	require.NoError(t, e.as(a).Create(&Poll{Question: "q", Owner: a}).Error)
	require.NoError(t, e.db.Exec(`INSERT INTO `+tenantplugin.QuoteIdentifier(e.shared)+`.subscriptions (tenant) VALUES (?)`, a).Error)
	require.NoError(t, e.db.Exec(`CREATE SCHEMA `+tenantplugin.QuoteIdentifier(stray)).Error) // a schema nobody registered
	// A registered tenant whose schema was dropped by hand.
	ghost := "ghost_" + e.shared
	require.NoError(t, e.m.CreateTenant(ctx, ghost))
	require.NoError(t, e.db.Exec(`DROP SCHEMA `+tenantplugin.QuoteIdentifier(ghost)+` CASCADE`).Error)
	all := []string{a, b, stray, free, ghost}
	want := e.registryState(all...)
	var loginRole string
	require.NoError(t, e.db.Raw("SELECT session_user").Scan(&loginRole).Error)

	for _, c := range []struct {
		old, new string
		err      error
	}{
		{"nobody_" + e.shared, free, tenantplugin.ErrUnknownTenant},
		{ghost, free, tenantplugin.ErrUnknownTenant},
		{a, b, tenantplugin.ErrTenantExists},
		{a, stray, tenantplugin.ErrTenantExists},
		{a, a, tenantplugin.ErrTenantExists},
		{a, "Bad Name", tenantplugin.ErrInvalidTenantName},
		{a, `x";DROP SCHEMA public;--`, tenantplugin.ErrInvalidTenantName},
		{a, "pg_toast", tenantplugin.ErrInvalidTenantName},
		{a, e.shared, tenantplugin.ErrInvalidTenantName},
		{a, "public", tenantplugin.ErrInvalidTenantName},
		{a, strings.Repeat("x", 64), tenantplugin.ErrInvalidTenantName},
		{"Bad", free, tenantplugin.ErrInvalidTenantName},
		{e.shared, free, tenantplugin.ErrInvalidTenantName},
		{a, loginRole, tenantplugin.ErrInvalidTenantName}, // as CreateTenant refuses it
	} {
		err := e.m.RenameTenant(ctx, c.old, c.new)
		require.ErrorIs(t, err, c.err, "%s -> %s", c.old, c.new)
		assert.Equal(t, want, e.registryState(all...), "%s -> %s changed something", c.old, c.new)
	}
	// The messages name the tenant.
	err := e.m.RenameTenant(ctx, a, b)
	assert.Contains(t, err.Error(), b)
	err = e.m.RenameTenant(ctx, "nobody_"+e.shared, free)
	assert.Contains(t, err.Error(), "nobody_"+e.shared)

	// Before db.Use.
	require.ErrorIs(t, testPlugin("unused").Migrator().RenameTenant(ctx, a, free), tenantplugin.ErrNotRegistered)
}

// TestRenameTenantConcurrentSwaps renames p to q and q to p at the same
// time, many times over: the locks are taken in one order, so the two never
// deadlock, and each rename either succeeds or finds its name gone.
func TestRenameTenantConcurrentSwaps(t *testing.T) {
	e := newIsolatedEnv(t, 8)
	ctx := context.Background()
	p, q := "swp_"+e.shared, "swq_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, p))
	require.NoError(t, e.as(p).Create(&Poll{Question: "kept", Owner: p}).Error)
	var mu sync.Mutex
	ok, refused := 0, 0
	for round := 0; round < 10; round++ {
		var wg sync.WaitGroup
		for _, pair := range [][2]string{{p, q}, {q, p}, {p, q}, {q, p}} {
			wg.Add(1)
			go func(from, to string) {
				defer wg.Done()
				err := e.m.RenameTenant(ctx, from, to)
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) {
					t.Errorf("database error (deadlock?) %s: %v", pgErr.Code, err)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, tenantplugin.ErrUnknownTenant), errors.Is(err, tenantplugin.ErrTenantExists):
					refused++
				default:
					t.Errorf("%s -> %s: %v", from, to, err)
				}
			}(pair[0], pair[1])
		}
		wg.Wait()
	}
	t.Logf("renames: %d done, %d refused", ok, refused)
	assert.Equal(t, 40, ok+refused)
	assert.Positive(t, ok)
	names, err := e.m.Tenants(ctx)
	require.NoError(t, err)
	require.Len(t, names, 1)
	assert.True(t, e.schemaExists(names[0]))
	assert.False(t, e.schemaExists(map[string]string{p: q, q: p}[names[0]]))
	var polls []Poll
	require.NoError(t, e.as(names[0]).Find(&polls).Error)
	require.Len(t, polls, 1)
	assert.Equal(t, "kept", polls[0].Question)
}

func TestRenameTenantWithRoles(t *testing.T) {
	e := newRolesEnv(t)
	ctx := context.Background()
	a, b, c := "rra_"+e.shared, "rrb_"+e.shared, "rrc_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, a))
	require.NoError(t, e.m.CreateTenant(ctx, c))
	require.NoError(t, e.m.RenameTenant(ctx, a, b))
	roleExists := func(r string) bool {
		var ok bool
		require.NoError(t, e.db.Raw("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ?)", r).Scan(&ok).Error)
		return ok
	}
	assert.False(t, roleExists(tenantplugin.RoleName(server.Name, a)))
	assert.True(t, roleExists(tenantplugin.RoleName(server.Name, b)))
	var comment string
	require.NoError(t, e.db.Raw("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = ?", tenantplugin.RoleName(server.Name, b)).Scan(&comment).Error)
	assert.Equal(t, "tenantplugin: tenant "+b+" of database "+server.Name, comment, "the role's comment names the tenant it now serves")
	var who string
	require.NoError(t, e.as(b).Raw("SELECT current_user").Scan(&who).Error)
	assert.Equal(t, tenantplugin.RoleName(server.Name, b), who)
	require.NoError(t, e.as(b).Exec("INSERT INTO polls (question, owner) VALUES ('raw', ?)", b).Error, "the renamed role keeps its grants")
	require.NoError(t, e.as(b).Create(&Poll{Question: "gorm", Owner: b}).Error)
	assert.EqualValues(t, 2, e.count(b, "polls"))
	// The other tenant's schema stays out of reach.
	err := e.as(b).Raw(fmt.Sprintf(`SELECT count(*) FROM %s.polls`, tenantplugin.QuoteIdentifier(c))).Scan(new(int64)).Error
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")

	// A role of the new name already exists (another database's tenant,
	// say): refused, nothing changed.
	d := "rrd_" + e.shared
	require.NoError(t, e.db.Exec("CREATE ROLE "+tenantplugin.QuoteIdentifier(tenantplugin.RoleName(server.Name, d))+" NOLOGIN").Error)
	t.Cleanup(func() {
		e.db.Exec("DROP ROLE IF EXISTS " + tenantplugin.QuoteIdentifier(tenantplugin.RoleName(server.Name, d)))
	})
	require.ErrorIs(t, e.m.RenameTenant(ctx, b, d), tenantplugin.ErrTenantExists)
	assert.True(t, e.schemaExists(b))
	assert.True(t, roleExists(tenantplugin.RoleName(server.Name, b)))
}
