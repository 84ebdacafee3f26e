package integration_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Issue 10: extensions, types, and drops that stay inside the tenant.
// Extensions are database-wide, so each case gets a database of its own.

type ExtItem struct {
	ID    uint
	Email string `gorm:"type:citext"`
	Owner string
}

// extDatabase creates a scratch database, runs setup SQL in it, and returns
// a DSN for it with extra query parameters (e.g. search_path).
func extDatabase(t *testing.T, setup string, params url.Values) string {
	t.Helper()
	d, err := testdb.Create("tenantplugin_ext")
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Drop() })
	if setup != "" {
		db, err := gorm.Open(tenantplugin.Open(d.URL), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		require.NoError(t, db.Exec(setup).Error)
		closeDB(db)
	}
	u, err := url.Parse(d.URL)
	require.NoError(t, err)
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func extPlugin(t *testing.T, dsn string, opts ...tenantplugin.Option) (*gorm.DB, *tenantplugin.Plugin) {
	t.Helper()
	db, err := gorm.Open(tenantplugin.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { closeDB(db) })
	p := tenantplugin.New(append([]tenantplugin.Option{tenantplugin.WithTenantModels(&ExtItem{})}, opts...)...)
	require.NoError(t, db.Use(p))
	return db, p
}

// sameAnswer checks the case-insensitive filter gives one row, built by GORM
// and written raw alike.
func sameAnswer(t *testing.T, db *gorm.DB, tenant string) {
	t.Helper()
	tdb := db.WithContext(tenantplugin.WithTenant(context.Background(), tenant))
	require.NoError(t, tdb.Create(&ExtItem{Email: "alice@x.com", Owner: tenant}).Error)
	var built, raw int64
	require.NoError(t, tdb.Model(&ExtItem{}).Where("email = ?", "ALICE@X.COM").Count(&built).Error)
	require.NoError(t, tdb.Raw("SELECT count(*) FROM ext_items WHERE email = ?", "ALICE@X.COM").Scan(&raw).Error)
	assert.EqualValues(t, 1, built, "GORM-built")
	assert.EqualValues(t, 1, raw, "raw")
}

func TestExtensionInSharedSchemaNeedsItOnTheDefaultPath(t *testing.T) {
	ctx := context.Background()
	setup := `CREATE SCHEMA core; CREATE EXTENSION citext SCHEMA core`
	// The default path ("$user", public) does not see core: refused at
	// start-up, saying what to change.
	db, p := extPlugin(t, extDatabase(t, setup, nil), tenantplugin.WithSharedSchema("core"))
	_, err := p.Migrator().Migrate(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "extension citext")
	assert.Contains(t, err.Error(), "default search_path")
	assert.NotContains(t, err.Error(), "tenantplugin_capture_")
	_ = db

	// With core on the default path, both ways give one row.
	db, p = extPlugin(t, extDatabase(t, setup, url.Values{"search_path": {"core,public"}}), tenantplugin.WithSharedSchema("core"))
	m := p.Migrator()
	_, err = m.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, m.CreateTenant(ctx, "acme"))
	sameAnswer(t, db, "acme")
}

func TestExtensionOutsideSharedAndExtensionSchemasIsRefused(t *testing.T) {
	ctx := context.Background()
	dsn := extDatabase(t, `CREATE EXTENSION citext SCHEMA public`, nil)
	_, p := extPlugin(t, dsn, tenantplugin.WithSharedSchema("core"))
	_, err := p.Migrator().Migrate(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `extension citext lives in schema "public"`)
	assert.Contains(t, err.Error(), "WithExtensionSchemas")
	assert.NotContains(t, err.Error(), "does not exist")

	// Named as an extension schema, it works: public is on the default path.
	db, p := extPlugin(t, dsn, tenantplugin.WithSharedSchema("core"), tenantplugin.WithExtensionSchemas("public"))
	m := p.Migrator()
	_, err = m.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, m.CreateTenant(ctx, "acme"))
	sameAnswer(t, db, "acme")
	// Both creation paths.
	require.NoError(t, p.Migrator(tenantplugin.WithAutoMigrateCreate()).CreateTenant(ctx, "slow"))
	sameAnswer(t, db, "slow")

	// An extension schema holding a table of its own is refused: raw SQL for
	// every tenant would reach it.
	require.NoError(t, db.Exec(`CREATE TABLE public.stray (id int)`).Error)
	err = m.MigrateShared(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `extension schema "public" holds tables (stray)`)
}

func TestExtensionSchemaAndGuard(t *testing.T) {
	ctx := context.Background()
	dsn := extDatabase(t, `CREATE EXTENSION citext SCHEMA public`, nil)
	db, p := extPlugin(t, dsn)
	// Shared schema public holding citext: the guard would hide citext from
	// GORM-built statements, so it refuses and changes nothing.
	require.NoError(t, p.Migrator().MigrateShared(ctx))
	err := p.GuardDefaultSearchPath(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "citext (in public)")

	// Moved to an extension schema, on the default path.
	require.NoError(t, db.Exec(`CREATE SCHEMA extensions; ALTER EXTENSION citext SET SCHEMA extensions`).Error)
	closeDB(db)
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set("search_path", `"$user",public,extensions`)
	u.RawQuery = q.Encode()
	db, p = extPlugin(t, u.String(), tenantplugin.WithExtensionSchemas("extensions"))
	m := p.Migrator()
	_, err = m.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, m.CreateTenant(ctx, "acme"))
	sameAnswer(t, db, "acme")

	// Guarded: new connections (the DSN without search_path, so the role's
	// default applies) see the extension schema and no table unqualified.
	require.NoError(t, p.GuardDefaultSearchPath(ctx))
	t.Cleanup(func() { _ = p.UnguardDefaultSearchPath(ctx) })
	gdb, gp := extPlugin(t, dsn, tenantplugin.WithExtensionSchemas("extensions"))
	_, err = gp.Migrator().Migrate(ctx)
	require.NoError(t, err, "the guarded default path satisfies the start-up check")
	require.NoError(t, gp.Migrator().CreateTenant(ctx, "beta"))
	sameAnswer(t, gdb, "beta")
	err = gdb.Exec("SELECT count(*) FROM tenantplugin_tenants").Error
	require.Error(t, err, "no unqualified table resolves without a tenant")
	assert.Contains(t, err.Error(), "does not exist")
}

// Case 2: CREATE EXTENSION in a per-tenant migration fails that tenant,
// which is left untouched, on both creation paths and on migrate.
func TestTenantMigrationMayNotCreateDatabaseWideObjects(t *testing.T) {
	ctx := context.Background()
	dsn := extDatabase(t, `CREATE EXTENSION citext`, nil)
	db, p := extPlugin(t, dsn)
	bad := &gormigrate.Migration{ID: "hstore", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("CREATE EXTENSION hstore").Error
	}}
	require.NoError(t, p.Migrator().MigrateShared(ctx))
	for _, slow := range []bool{false, true} {
		opts := []tenantplugin.MigratorOption{tenantplugin.WithMigrations(bad)}
		if slow {
			opts = append(opts, tenantplugin.WithAutoMigrateCreate())
		}
		name := fmt.Sprintf("hs_%v", slow)
		err := p.Migrator(opts...).CreateTenant(ctx, name)
		require.ErrorIs(t, err, tenantplugin.ErrDependentObjects, "slow=%v", slow)
		var de *tenantplugin.DependencyError
		require.ErrorAs(t, err, &de)
		assert.Contains(t, de.Objects, "extension hstore")
		assert.Contains(t, err.Error(), "shared migration")
		names, err := p.Migrator().Tenants(ctx)
		require.NoError(t, err)
		assert.NotContains(t, names, name)
		var ext int64
		require.NoError(t, db.Raw("SELECT count(*) FROM pg_extension WHERE extname = 'hstore'").Scan(&ext).Error)
		assert.EqualValues(t, 0, ext)
		var schemas int64
		require.NoError(t, db.Raw("SELECT count(*) FROM pg_namespace WHERE nspname = ?", name).Scan(&schemas).Error)
		assert.EqualValues(t, 0, schemas)
	}
	// An existing tenant that gets the migration later.
	require.NoError(t, p.Migrator().CreateTenant(ctx, "existing"))
	rep, err := p.Migrator(tenantplugin.WithMigrations(bad)).MigrateTenants(ctx)
	require.ErrorIs(t, err, tenantplugin.ErrDependentObjects)
	assert.Equal(t, 1, rep.Failed)
	var fp string
	require.NoError(t, db.Raw("SELECT fingerprint FROM public.tenantplugin_tenants WHERE name = 'existing'").Scan(&fp).Error)
	rep, err = p.Migrator().MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.UpToDate, "left as it was: still up to date without the migration")
}

// Case 3: DropTenant never drops anything outside the tenant's schema.
func TestDropTenantRefusesWhenObjectsOutsideDependOnIt(t *testing.T) {
	ctx := context.Background()
	dsn := extDatabase(t, `CREATE EXTENSION citext`, nil)
	db, p := extPlugin(t, dsn)
	m := p.Migrator()
	_, err := m.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, m.CreateTenant(ctx, "victim"))
	// By hand: an extension in the tenant's schema, and a shared column of
	// its type holding data.
	require.NoError(t, db.Exec(`CREATE EXTENSION hstore SCHEMA victim;
		CREATE TABLE public.docs (id int, attrs victim.hstore); INSERT INTO public.docs VALUES (1, 'a=>1')`).Error)

	err = m.DropTenant(ctx, "victim")
	require.ErrorIs(t, err, tenantplugin.ErrDependentObjects)
	var de *tenantplugin.DependencyError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "drop", de.Op)
	assert.Contains(t, de.Objects, "extension hstore")
	assert.Contains(t, err.Error(), "nothing was changed")
	// Nothing changed: the column and its data, the tenant, its registry row.
	var attrs string
	require.NoError(t, db.Raw("SELECT attrs::text FROM public.docs WHERE id = 1").Scan(&attrs).Error)
	assert.Equal(t, `"a"=>"1"`, attrs)
	names, err := m.Tenants(ctx)
	require.NoError(t, err)
	assert.Contains(t, names, "victim")

	// A view in the shared schema reading the tenant's table, likewise.
	require.NoError(t, db.Exec(`DROP TABLE public.docs; DROP EXTENSION hstore; CREATE VIEW public.peek AS SELECT * FROM victim.ext_items`).Error)
	err = m.DropTenant(ctx, "victim")
	require.ErrorAs(t, err, &de)
	assert.Contains(t, fmt.Sprint(de.Objects), "view peek")
	require.NoError(t, db.Exec(`DROP VIEW public.peek`).Error)
	require.NoError(t, m.DropTenant(ctx, "victim"), "with nothing outside depending on it, it drops")
}

// Case 4: a type the models use, created by a pre-migration: works with zero
// tenants, on both creation paths, and is recorded.
type Mooded struct {
	ID   uint
	Mood string `gorm:"type:mood"`
}

func TestPreMigrationsCreateTypesTheModelsUse(t *testing.T) {
	ctx := context.Background()
	dsn := extDatabase(t, "", nil)
	db, err := gorm.Open(tenantplugin.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	defer closeDB(db)
	p := tenantplugin.New(tenantplugin.WithTenantModels(&Mooded{}))
	require.NoError(t, db.Use(p))

	// Without the pre-migration, the capture says what failed and where.
	_, err = p.Migrator().Migrate(ctx)
	require.NoError(t, err, "zero tenants: nothing to capture yet")
	err = p.Migrator().CreateTenant(ctx, "early")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "capture of the tenant model set")
	assert.Contains(t, err.Error(), "model Mooded (table moodeds), field Mood (column mood)")
	assert.Contains(t, err.Error(), `type "mood" does not exist`)
	assert.NotContains(t, err.Error(), "tenantplugin_capture_")

	mood := &gormigrate.Migration{ID: "0001_mood", Migrate: func(tx *gorm.DB) error {
		return tx.Exec(`CREATE TYPE mood AS ENUM ('happy', 'sad')`).Error
	}}
	m := p.Migrator(tenantplugin.WithPreMigrations(mood))
	_, err = m.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, m.CreateTenant(ctx, "fast"))
	require.NoError(t, p.Migrator(tenantplugin.WithPreMigrations(mood), tenantplugin.WithAutoMigrateCreate()).CreateTenant(ctx, "slow"))
	for _, tn := range []string{"fast", "slow"} {
		tdb := db.WithContext(tenantplugin.WithTenant(ctx, tn))
		require.NoError(t, tdb.Create(&Mooded{Mood: "happy"}).Error)
		var got Mooded
		require.NoError(t, tdb.First(&got).Error)
		assert.Equal(t, "happy", got.Mood)
		var ids []string
		require.NoError(t, tdb.Raw("SELECT id FROM tenantplugin_migrations ORDER BY id").Scan(&ids).Error)
		assert.Equal(t, []string{"0001_mood"}, ids, tn)
		var typeSchema string
		require.NoError(t, tdb.Raw("SELECT typnamespace::regnamespace::text FROM pg_type WHERE typname = 'mood' AND typnamespace = ?::regnamespace", tn).Scan(&typeSchema).Error)
		assert.Equal(t, tn, typeSchema, "the type is the tenant's own")
	}
	rep, err := m.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.UpToDate)
	// The same ID in both lists is refused.
	_, err = p.Migrator(tenantplugin.WithPreMigrations(mood), tenantplugin.WithMigrations(mood)).MigrateTenants(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"0001_mood" is used twice`)
}

// TestExtensionCreatedForATenantIsNamed: a raw CREATE EXTENSION run for a
// tenant (found by GORM's own suite) installs the extension in the tenant's
// schema; the start-up check then says so, names the tenant and the fix,
// instead of calling the schema one raw SQL does not see.
func TestExtensionCreatedForATenantIsNamed(t *testing.T) {
	ctx := context.Background()
	dsn := extDatabase(t, `CREATE EXTENSION citext SCHEMA public`, nil)
	db, p := extPlugin(t, dsn)
	m := p.Migrator()
	_, err := m.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, m.CreateTenant(ctx, "acme"))
	require.NoError(t, db.WithContext(tenantplugin.WithTenant(ctx, "acme")).Exec("CREATE EXTENSION IF NOT EXISTS pgcrypto").Error)
	err = m.MigrateShared(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `extension pgcrypto lives in tenant "acme"'s schema`)
	assert.Contains(t, err.Error(), `ALTER EXTENSION pgcrypto SET SCHEMA "public"`)
	require.NoError(t, db.Exec(`ALTER EXTENSION pgcrypto SET SCHEMA public`).Error)
	require.NoError(t, m.MigrateShared(ctx))
}
