package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// newRolesEnv is an isolated env with per-tenant roles. Roles live in the
// whole cluster, not in the test database, so the cleanup drops them.
func newRolesEnv(t testing.TB) *isolatedEnv {
	t.Helper()
	shared := fmt.Sprintf("roles_shared_%d", sharedN.Add(1))
	db, err := server.Open(2, nil)
	require.NoError(t, err)
	p := testPlugin(shared, tenantplugin.WithTenantRoles())
	require.NoError(t, db.Use(p))
	m := p.Migrator()
	require.NoError(t, m.MigrateShared(context.Background()))
	e := &isolatedEnv{env: &env{t: t, db: db, p: p, m: m}, shared: shared}
	t.Cleanup(func() {
		ctx := context.Background()
		names, _ := m.Tenants(ctx)
		for _, n := range names {
			_ = m.DropTenant(ctx, n)
		}
		// The group role may hold privileges in other databases of the
		// cluster; then it stays, which is harmless.
		db.Exec(`DROP OWNED BY ` + tenantplugin.QuoteIdentifier(tenantplugin.SharedAccessRoleName(server.Name)))
		db.Exec(`DROP ROLE IF EXISTS ` + tenantplugin.QuoteIdentifier(tenantplugin.SharedAccessRoleName(server.Name)))
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	return e
}

func TestTenantRoles(t *testing.T) {
	e := newRolesEnv(t)
	ctx := context.Background()
	a, b := "ra_"+e.shared, "rb_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, a))
	require.NoError(t, e.m.CreateTenant(ctx, b))
	plan := Plan{Name: "gold"}
	require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).Create(&plan).Error)
	for _, tn := range []string{a, b} {
		require.NoError(t, e.as(tn).Create(&Poll{Question: "q", Owner: tn, PlanID: &plan.ID,
			Choices: []Choice{{Text: "c", Owner: tn}}}).Error, "a GORM write in its own transaction, under the role")
	}

	// Raw SQL runs under a's role: its own and the shared tables work...
	var who string
	require.NoError(t, e.as(a).Raw("SELECT current_user").Scan(&who).Error)
	assert.Equal(t, tenantplugin.RoleName(server.Name, a), who)
	var n int64
	require.NoError(t, e.as(a).Raw("SELECT count(*) FROM polls JOIN plans ON plans.id = polls.plan_id").Scan(&n).Error)
	assert.EqualValues(t, 1, n)
	require.NoError(t, e.as(a).Exec("INSERT INTO choices (poll_id, text, owner) VALUES (1, 'raw', ?)", a).Error)

	// ...and another tenant's schema, named explicitly, is refused.
	err := e.as(a).Raw(fmt.Sprintf(`SELECT count(*) FROM %s.polls`, tenantplugin.QuoteIdentifier(b))).Scan(&n).Error
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	err = e.as(a).Transaction(func(tx *gorm.DB) error {
		return tx.Exec(fmt.Sprintf(`DELETE FROM %s.choices`, tenantplugin.QuoteIdentifier(b))).Error
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	err = e.p.RunInTenant(ctx, a, func(tx *gorm.DB) error {
		return tx.Exec(fmt.Sprintf(`UPDATE %s.polls SET question = 'x'`, tenantplugin.QuoteIdentifier(b))).Error
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	assert.EqualValues(t, 1, e.count(b, "choices"), "b unchanged")

	// Without roles the same raw statement would have read b: the guard is
	// what refused it.
	p2 := testPlugin(e.shared)
	db2, err := server.Open(1, nil)
	require.NoError(t, err)
	defer func() { s, _ := db2.DB(); s.Close() }()
	require.NoError(t, db2.Use(p2))
	require.NoError(t, db2.WithContext(tenantplugin.WithTenant(ctx, a)).
		Raw(fmt.Sprintf(`SELECT count(*) FROM %s.polls`, tenantplugin.QuoteIdentifier(b))).Scan(&n).Error)
	assert.EqualValues(t, 1, n)

	// No connection keeps the role.
	var cur, sess string
	for i := 0; i < 3; i++ {
		require.NoError(t, e.db.Raw("SELECT current_user, session_user").Row().Scan(&cur, &sess))
		assert.Equal(t, sess, cur)
	}

	// Dropping the tenant drops its role.
	require.NoError(t, e.m.DropTenant(ctx, b))
	var exists bool
	require.NoError(t, e.db.Raw("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ?)", tenantplugin.RoleName(server.Name, b)).Scan(&exists).Error)
	assert.False(t, exists)
}

// Role names are injective: short names map one to one, long ones hash,
// the two forms and the group role never meet, and databases of one
// cluster get different names.
func TestRoleNames(t *testing.T) {
	db := "tenantplugin_test_db"
	short := tenantplugin.RoleName(db, "thor")
	assert.True(t, strings.HasSuffix(short, "_thor"), short)
	assert.NotEqual(t, short, tenantplugin.RoleName("other_db", "thor"), "databases of one cluster")
	seen := map[string]string{tenantplugin.SharedAccessRoleName(db): "(shared access)"}
	names := []string{"shared", "shared_access", "s", "a", strings.Repeat("a", 50), strings.Repeat("a", 51), strings.Repeat("a", 52),
		strings.Repeat("a", 57), strings.Repeat("a", 63), strings.Repeat("b", 63)}
	for i := 0; i < 200; i++ {
		names = append(names, fmt.Sprintf("%s_%d", strings.Repeat("x", 45), i)) // straddles the 51-byte limit
	}
	for _, n := range names {
		r := tenantplugin.RoleName(db, n)
		assert.LessOrEqual(t, len(r), tenantplugin.MaxNameLength, n)
		if prev, ok := seen[r]; ok {
			t.Fatalf("role %q for both %q and %q", r, prev, n)
		}
		seen[r] = n
	}
}
