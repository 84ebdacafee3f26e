package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Issue 18: hostile configurations, derived names, rolling deploys.

// Item 1: every entry point that acts for a tenant refuses a name that is
// not a registered tenant, or is the shared schema.
func TestEntryPointsRefuseWhatIsNotATenant(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	// "legacy": a schema with a polls table, never registered.
	require.NoError(t, e.db.Exec(`CREATE SCHEMA legacy_18; CREATE TABLE legacy_18.polls (id int, question text, owner text, author_id int, plan_id int, deleted_at timestamptz); INSERT INTO legacy_18.polls VALUES (1, 'legacy', 'legacy', NULL, NULL, NULL)`).Error)
	t.Cleanup(func() { e.db.Exec(`DROP SCHEMA legacy_18 CASCADE`) })

	ran := false
	err := e.p.RunInTenant(ctx, "legacy_18", func(tx *gorm.DB) error { ran = true; return nil })
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	assert.Contains(t, err.Error(), "not registered")
	assert.False(t, ran, "the function did not run")
	_, err = e.p.ContextFor(ctx, "legacy_18")
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)

	// The shared schema, at every entry point; no SQL sent.
	before := server.Counter.Count()
	require.ErrorIs(t, e.p.RunInTenant(ctx, e.shared, func(*gorm.DB) error { ran = true; return nil }), tenantplugin.ErrInvalidTenantName)
	_, err = e.p.ContextFor(ctx, e.shared)
	require.ErrorIs(t, err, tenantplugin.ErrInvalidTenantName)
	err = e.db.WithContext(tenantplugin.WithTenant(ctx, e.shared)).Find(&[]Plan{}).Error
	require.ErrorIs(t, err, tenantplugin.ErrInvalidTenantName)
	assert.Contains(t, err.Error(), "shared schema")
	err = e.db.WithContext(tenantplugin.WithTenant(ctx, e.shared)).Exec("SELECT 1").Error
	require.ErrorIs(t, err, tenantplugin.ErrInvalidTenantName)
	require.ErrorIs(t, e.m.CreateTenant(ctx, e.shared), tenantplugin.ErrInvalidTenantName)
	require.ErrorIs(t, e.m.DropTenant(ctx, e.shared), tenantplugin.ErrInvalidTenantName)
	assert.Equal(t, before, server.Counter.Count())
	assert.False(t, ran)

	// A registered tenant works at each of them.
	tn := e.tenant("entry")
	require.NoError(t, e.p.RunInTenant(ctx, tn, func(tx *gorm.DB) error { ran = true; return nil }))
	assert.True(t, ran)
	tctx, err := e.p.ContextFor(ctx, tn)
	require.NoError(t, err)
	name, _ := tenantplugin.FromContext(tctx)
	assert.Equal(t, tn, name)
}

// Item 2: the shared schema can never be a tenant.
func TestSharedSchemaThatIsATenantIsRefused(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	thor := e.tenant("thor")
	db, err := server.Open(1, nil)
	require.NoError(t, err)
	defer closeDB(db)
	p := testPlugin(thor)
	require.NoError(t, db.Use(p))
	err = p.Migrator().MigrateShared(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("the shared schema %q is a tenant", thor))
	var n int64
	require.NoError(t, db.Raw(`SELECT count(*) FROM pg_class WHERE relnamespace = ?::regnamespace AND relname LIKE 'tenantplugin_%'`, thor).Scan(&n).Error)
	assert.EqualValues(t, 0, n, "nothing was created inside the tenant")
}

// Item 3: names PostgreSQL would truncate are refused at registration.
type longTableModel struct{ ID uint }

func (longTableModel) TableName() string { return strings.Repeat("t", 64) }

func TestTruncatedTableNamesAreRefused(t *testing.T) {
	db, err := server.Open(1, nil)
	require.NoError(t, err)
	defer closeDB(db)
	err = db.Use(tenantplugin.New(tenantplugin.WithTenantModels(&longTableModel{})))
	var le *tenantplugin.LayoutError
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "64 bytes long")
}

// Item 4: a tenant named after the login role would be found by "$user".
func TestTenantNamedAfterTheLoginRoleIsRefused(t *testing.T) {
	ctx := context.Background()
	dsn := extDatabase(t, "", nil)
	db, err := gorm.Open(tenantplugin.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	defer closeDB(db)
	p := tenantplugin.New(tenantplugin.WithTenantModels(&Tag{}))
	require.NoError(t, db.Use(p))
	m := p.Migrator()
	require.NoError(t, m.MigrateShared(ctx))
	var user string
	require.NoError(t, db.Raw("SELECT session_user").Scan(&user).Error)
	err = m.CreateTenant(ctx, user)
	require.ErrorIs(t, err, tenantplugin.ErrInvalidTenantName)
	assert.Contains(t, err.Error(), "role the application connects as")
	var n int64
	require.NoError(t, db.Raw("SELECT count(*) FROM pg_namespace WHERE nspname = ?", user).Scan(&n).Error)
	assert.EqualValues(t, 0, n, "no schema was created")
	// One registered by other means is reported at start-up.
	require.NoError(t, db.Exec("INSERT INTO public.tenantplugin_tenants (name, created_at) VALUES (?, now())", user).Error)
	err = m.MigrateShared(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "name of the role the application connects as")
}

// Item 6: rolling deploys. An older instance leaves tenants migrated by a
// newer one untouched, reports them ahead, and never writes its fingerprint
// over theirs.
func TestRollingDeployNeverRollsBack(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	ctx := context.Background()
	m1 := &gormigrate.Migration{ID: "r1", Migrate: func(tx *gorm.DB) error { return nil }}
	m2 := &gormigrate.Migration{ID: "r2", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("ALTER TABLE polls ADD COLUMN rolled text").Error
	}}
	oldV := e.p.Migrator(tenantplugin.WithMigrations(m1))
	newV := e.p.Migrator(tenantplugin.WithMigrations(m1, m2))
	names := []string{"roll_a_" + e.shared, "roll_b_" + e.shared, "roll_c_" + e.shared}
	_, err := oldV.CreateTenants(ctx, names)
	require.NoError(t, err)
	rep, err := newV.MigrateTenants(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, rep.Migrated)
	fingerprints := func() map[string]string {
		var recs []tenantplugin.TenantRecord
		require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).Find(&recs).Error)
		out := map[string]string{}
		for _, r := range recs {
			out[r.Name] = r.Fingerprint
		}
		return out
	}
	after := fingerprints()

	rep, err = oldV.MigrateTenants(ctx)
	require.NoError(t, err, "ahead is not a failure")
	assert.Equal(t, 3, rep.Ahead, rep.String())
	assert.Equal(t, 0, rep.Migrated)
	assert.Contains(t, rep.String(), "3 ahead")
	for _, r := range rep.Results {
		assert.Equal(t, tenantplugin.StateAhead, r.State)
	}
	assert.Equal(t, after, fingerprints(), "fingerprints only move forward")
	// Forcing does not roll back either.
	rep, err = e.p.Migrator(tenantplugin.WithMigrations(m1), tenantplugin.WithForce()).MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Ahead)

	// The new version's next start finds nothing to do.
	rep, err = e.p.Migrator(tenantplugin.WithMigrations(m1, m2)).MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, rep.UpToDate)
}

// Item 7: errors say what actually failed.
func TestErrorsSayWhatFailed(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	missing := &gormigrate.Migration{ID: "m_missing", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("INSERT INTO no_such_table VALUES (1)").Error
	}}
	for _, slow := range []bool{false, true} {
		opts := []tenantplugin.MigratorOption{tenantplugin.WithMigrations(missing)}
		if slow {
			opts = append(opts, tenantplugin.WithAutoMigrateCreate())
		}
		err := e.p.Migrator(opts...).CreateTenant(ctx, fmt.Sprintf("odin_%v_%s", slow, e.shared))
		require.Error(t, err)
		assert.NotErrorIs(t, err, tenantplugin.ErrUnknownTenant)
		assert.Contains(t, err.Error(), `relation "no_such_table" does not exist`)
		assert.NotContains(t, err.Error(), "unknown tenant")
	}

	// A table-name problem in the capture: a tenant model's foreign key to
	// a shared table that is missing.
	require.NoError(t, e.db.Exec(fmt.Sprintf("DROP TABLE %s.plans CASCADE", e.shared)).Error)
	err := e.p.Migrator().CreateTenant(ctx, "after_drop_"+e.shared)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "capture of the tenant model set")
	assert.Contains(t, err.Error(), `relation "plans" does not exist`)
	assert.NotContains(t, err.Error(), "tenantplugin_capture_")
	assert.NotContains(t, err.Error(), "unknown tenant")
}
