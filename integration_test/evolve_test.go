package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Version 1 of a tenant model, and version 2, which renames Title to Name
// and adds Slug: the same table, evolving.
type EvoTaskV1 struct {
	ID    uint `gorm:"primaryKey"`
	Title string
	Owner string
}

func (EvoTaskV1) TableName() string { return "evo_tasks" }

type EvoTaskV2 struct {
	ID    uint `gorm:"primaryKey"`
	Name  string
	Slug  string `gorm:"index"`
	Owner string
}

func (EvoTaskV2) TableName() string { return "evo_tasks" }

// evolveV2 is the pattern the README shows for evolving a model that
// AutoMigrate and gormigrate both touch:
//   - what AutoMigrate cannot do right (a rename: it would add an empty
//     "name" column beside "title") goes in a pre-migration, before
//     AutoMigrate, guarded for new tenants, which have no table yet;
//   - what needs the new columns (a backfill) goes in a migration, after
//     AutoMigrate, written to be idempotent, and so does any DDL a migration
//     repeats from the model (ADD COLUMN IF NOT EXISTS).
var evolveV2 = []tenantplugin.MigratorOption{
	tenantplugin.WithPreMigrations(&gormigrate.Migration{
		ID: "evo_001_rename_title",
		Migrate: func(tx *gorm.DB) error {
			if !tx.Migrator().HasColumn("evo_tasks", "title") {
				return nil // a new tenant: AutoMigrate creates the table with "name"
			}
			return tx.Migrator().RenameColumn("evo_tasks", "title", "name")
		},
	}),
	tenantplugin.WithMigrations(
		&gormigrate.Migration{
			ID: "evo_002_add_slug",
			Migrate: func(tx *gorm.DB) error {
				return tx.Exec("ALTER TABLE evo_tasks ADD COLUMN IF NOT EXISTS slug text").Error
			},
		},
		&gormigrate.Migration{
			ID: "evo_003_backfill_slug",
			Migrate: func(tx *gorm.DB) error {
				return tx.Exec("UPDATE evo_tasks SET slug = lower(name) WHERE slug IS NULL").Error
			},
		},
	),
}

// evoPlugin opens a pool with a plugin whose tenant model set is model, on
// shared schema shared.
func evoPlugin(t *testing.T, shared string, model any, opts ...tenantplugin.MigratorOption) (*gorm.DB, *tenantplugin.Plugin, *tenantplugin.Migrator) {
	t.Helper()
	db, err := server.Open(4, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	p := tenantplugin.New(tenantplugin.WithSharedSchema(shared), tenantplugin.WithTenantModels(model))
	require.NoError(t, db.Use(p))
	m := p.Migrator(opts...)
	require.NoError(t, m.MigrateShared(context.Background()))
	return db, p, m
}

// TestEvolvingModel: tenants created with version 1 of a model are migrated
// to version 2 by AutoMigrate and gormigrate together, keeping their rows;
// tenants created afterwards, by replayed DDL and by AutoMigrate, end up with
// the same catalog; and the naive migration (a plain ADD COLUMN of a column
// the model already has) fails with an error naming the migration and the
// tenant, leaving the tenant as it was.
func TestEvolvingModel(t *testing.T) {
	ctx := context.Background()
	shared := fmt.Sprintf("evo_shared_%d", sharedN.Add(1))
	e := newIsolatedEnv(t, 2) // for its catalog helpers only
	db1, _, m1 := evoPlugin(t, shared, &EvoTaskV1{})
	old := []string{"evo_a_" + shared, "evo_b_" + shared}
	for _, n := range old {
		require.NoError(t, m1.CreateTenant(ctx, n))
		require.NoError(t, db1.WithContext(tenantplugin.WithTenant(ctx, n)).
			Create(&[]EvoTaskV1{{Title: "Write Docs", Owner: n}, {Title: "Ship It", Owner: n}}).Error)
	}
	before := e.catalog(old[0])

	// The naive way: the model got Slug, and a migration adds the column.
	// AutoMigrate runs first and adds it, so the migration fails.
	_, _, naive := evoPlugin(t, shared, &EvoTaskV2{}, tenantplugin.WithMigrations(&gormigrate.Migration{
		ID: "evo_002_plain_add_slug",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec("ALTER TABLE evo_tasks ADD COLUMN slug text").Error
		},
	}))
	rep, err := naive.MigrateTenants(ctx)
	require.Error(t, err)
	assert.Equal(t, 2, rep.Failed, rep.String())
	for _, f := range rep.Failures() {
		msg := f.Err.Error()
		t.Log(msg)
		// tenantplugin: tenant "evo_a_...": migrate: migrations: migration
		// "evo_002_plain_add_slug": ERROR: column "slug" of relation
		// "evo_tasks" already exists (SQLSTATE 42701)
		assert.True(t, strings.HasPrefix(msg, `tenantplugin: tenant "`+f.Tenant+`": migrate: migrations: migration "evo_002_plain_add_slug": `), msg)
		assert.Contains(t, msg, `column "slug" of relation "evo_tasks" already exists`)
		assert.Equal(t, 1, strings.Count(msg, f.Tenant), "the tenant is named once: %s", msg)
		var me *tenantplugin.MigrationError
		require.ErrorAs(t, f.Err, &me)
		assert.Equal(t, "evo_002_plain_add_slug", me.ID)
		assert.False(t, me.Rollback)
	}
	assert.Equal(t, before, e.catalog(old[0]), "a failed migration changed the tenant")

	// The pattern: a pre-migration for the rename, idempotent migrations
	// after AutoMigrate.
	db2, p2, m2 := evoPlugin(t, shared, &EvoTaskV2{}, evolveV2...)
	rep, err = m2.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Migrated, rep.String())
	for _, n := range old {
		var rows []EvoTaskV2
		require.NoError(t, db2.WithContext(tenantplugin.WithTenant(ctx, n)).Order("id").Find(&rows).Error)
		require.Len(t, rows, 2)
		assert.Equal(t, EvoTaskV2{ID: rows[0].ID, Name: "Write Docs", Slug: "write docs", Owner: n}, rows[0], "the renamed column keeps its rows")
		assert.Equal(t, "ship it", rows[1].Slug)
		assert.NotContains(t, e.catalog(n), "title")
	}

	// New tenants, by both creation paths, get the same catalog.
	fast, slow := "evo_fast_"+shared, "evo_slow_"+shared
	require.NoError(t, m2.CreateTenant(ctx, fast))
	require.NoError(t, p2.Migrator(append(evolveV2, tenantplugin.WithAutoMigrateCreate())...).CreateTenant(ctx, slow))
	want := e.catalog(old[0])
	assert.Contains(t, want, "idx_evo_tasks_slug")
	for _, n := range []string{fast, slow} {
		assert.Equal(t, want, e.catalog(n), "tenant %s", n)
		var ids []string
		require.NoError(t, db2.WithContext(tenantplugin.WithTenant(ctx, n)).Table("tenantplugin_migrations").Order("id").Pluck("id", &ids).Error)
		assert.Equal(t, []string{"evo_001_rename_title", "evo_002_add_slug", "evo_003_backfill_slug"}, ids)
		require.NoError(t, db2.WithContext(tenantplugin.WithTenant(ctx, n)).Create(&EvoTaskV2{Name: "x", Slug: "x", Owner: n}).Error)
	}

	// Everyone is up to date for the next start-up.
	_, _, again := evoPlugin(t, shared, &EvoTaskV2{}, evolveV2...)
	rep, err = again.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 4, rep.UpToDate, rep.String())
}

// TestMigrationErrorsNameTheMigration: a failing or panicking migration, in
// a tenant or in the shared schema, is named in the error by its ID.
func TestMigrationErrorsNameTheMigration(t *testing.T) {
	ctx := context.Background()
	e := newIsolatedEnv(t, 2)
	name := e.tenant("mignamed")
	boom := errors.New("boom")
	m := e.p.Migrator(tenantplugin.WithMigrations(
		&gormigrate.Migration{ID: "m_ok", Migrate: func(*gorm.DB) error { return nil }},
		&gormigrate.Migration{ID: "m_fails", Migrate: func(*gorm.DB) error { return boom }},
	))
	_, err := m.MigrateTenant(ctx, name)
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), `tenant "`+name+`"`)
	assert.Contains(t, err.Error(), `migration "m_fails": boom`)

	m = e.p.Migrator(tenantplugin.WithPreMigrations(
		&gormigrate.Migration{ID: "pre_panics", Migrate: func(*gorm.DB) error { panic("nil map write (simulated)") }},
	))
	err = m.CreateTenant(ctx, "mignamed_new_"+e.shared)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `migration "pre_panics": panic: nil map write (simulated)`)

	m = e.p.Migrator(tenantplugin.WithSharedMigrations(
		&gormigrate.Migration{ID: "shared_fails", Migrate: func(*gorm.DB) error { return boom }},
	))
	err = m.MigrateShared(ctx)
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), `migration "shared_fails": boom`)
	var me *tenantplugin.MigrationError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, "shared_fails", me.ID)
}

// TestSharedMigrationsRunOnce: WithSharedMigrations run in the shared schema,
// are recorded there (tenantplugin_migrations of the shared schema) and run
// once.
func TestSharedMigrationsRunOnce(t *testing.T) {
	ctx := context.Background()
	e := newIsolatedEnv(t, 2)
	seedPlans := &gormigrate.Migration{ID: "shared_001_plans", Migrate: func(tx *gorm.DB) error {
		return tx.Create(&[]Plan{{Name: "free"}, {Name: "pro"}}).Error
	}}
	for i := 0; i < 2; i++ {
		require.NoError(t, e.p.Migrator(tenantplugin.WithSharedMigrations(seedPlans)).MigrateShared(ctx))
	}
	assert.EqualValues(t, 2, e.count(e.shared, "plans"))
	var ids []string
	require.NoError(t, e.db.Raw(`SELECT id FROM `+e.shared+`.tenantplugin_migrations`).Scan(&ids).Error)
	assert.Equal(t, []string{"shared_001_plans"}, ids)
}
