package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// seedAdmin writes a tenant's default rows: one GORM-built, one raw, using
// the column the migration 001_note added (seeds run after the steps).
func seedAdmin(seen *sync.Map) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error {
		name, ok := tenantplugin.FromContext(tx.Statement.Context)
		if !ok {
			return errors.New("no tenant in the seed's context")
		}
		seen.Store(name, true)
		if err := tx.Create(&Tag{Name: "admin", Owner: name}).Error; err != nil {
			return err
		}
		if err := tx.Exec("INSERT INTO tags (name, owner) VALUES ('raw', current_schema())").Error; err != nil {
			return err
		}
		return tx.Exec("INSERT INTO polls (question, owner, note) VALUES ('Welcome', ?, 'seeded')", name).Error
	}
}

// TestSeedRunsInEveryNewTenant: WithSeed runs once in each new tenant, on
// both creation paths and through CreateTenant and CreateTenants, after
// the migrations, and never again for an existing tenant.
func TestSeedRunsInEveryNewTenant(t *testing.T) {
	ctx := context.Background()
	var seen sync.Map
	opts := []tenantplugin.MigratorOption{tenantplugin.WithMigrations(addNoteColumn("001_note")), tenantplugin.WithSeed(seedAdmin(&seen))}
	e := newIsolatedEnv(t, 4, opts...)
	slow := e.p.Migrator(append(opts, tenantplugin.WithAutoMigrateCreate())...)
	fast, auto := "seedfast_"+e.shared, "seedauto_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, fast))
	require.NoError(t, slow.CreateTenant(ctx, auto))
	bulk := e.createTenants("seedbulk", 3)
	rep, err := slow.CreateTenants(ctx, []string{"seedbulkauto_" + e.shared})
	require.NoError(t, err, rep.String())
	all := append([]string{fast, auto, "seedbulkauto_" + e.shared}, bulk...)
	for _, n := range all {
		_, ok := seen.Load(n)
		assert.True(t, ok, "seed not run for %s", n)
		assert.EqualValues(t, 2, e.count(n, "tags"), n)
		assert.Equal(t, []string{n}, e.owners(n, "tags"))
		var note string
		require.NoError(t, e.as(n).Raw("SELECT note FROM polls WHERE question = 'Welcome'").Scan(&note).Error)
		assert.Equal(t, "seeded", note)
	}

	// Existing tenants are migrated, not seeded again.
	rep, err = e.p.Migrator(append(opts, tenantplugin.WithForce())...).MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(all), rep.Migrated, rep.String())
	for _, n := range all {
		assert.EqualValues(t, 2, e.count(n, "tags"), n)
	}
}

// TestFailingSeedLeavesNothing: a seed that fails (after writing), panics or
// hits a database error fails the creation, on both paths, and leaves no
// registry row, no domain, no schema; the error names the tenant once.
func TestFailingSeedLeavesNothing(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("no admin e-mail configured")
	seeds := map[string]func(tx *gorm.DB) error{
		"error": func(tx *gorm.DB) error {
			if err := tx.Create(&Tag{Name: "half"}).Error; err != nil {
				return err
			}
			return boom
		},
		"panic": func(*gorm.DB) error { panic("nil map write (simulated)") },
		"sql":   func(tx *gorm.DB) error { return tx.Exec("INSERT INTO no_such_table VALUES (1)").Error },
	}
	wants := map[string]string{
		"error": "create: seed: no admin e-mail configured",
		"panic": "create: seed: panic: nil map write (simulated)",
		"sql":   `create: seed: ERROR: relation "no_such_table" does not exist (SQLSTATE 42P01)`,
	}
	for kind, seed := range seeds {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/automigrate=%v", kind, slow), func(t *testing.T) {
				opts := []tenantplugin.MigratorOption{tenantplugin.WithMigrations(addNoteColumn("001_note")), tenantplugin.WithSeed(seed)}
				if slow {
					opts = append(opts, tenantplugin.WithAutoMigrateCreate())
				}
				e := newIsolatedEnv(t, 2, opts...)
				name := "seedfail_" + e.shared
				host := name + ".example"
				err := e.m.CreateTenant(ctx, name, host)
				require.Error(t, err)
				assert.Equal(t, `tenantplugin: tenant "`+name+`": `+wants[kind], err.Error())
				if kind == "error" {
					assert.ErrorIs(t, err, boom)
				}
				assert.NotErrorIs(t, err, tenantplugin.ErrUnknownTenant)
				assert.False(t, e.schemaExists(name))
				names, err := e.m.Tenants(ctx)
				require.NoError(t, err)
				assert.Empty(t, names)
				_, err = e.p.Directory().TenantForHost(ctx, host)
				assert.ErrorIs(t, err, tenantplugin.ErrUnknownTenant, "the domain stayed")

				// Through CreateTenants: reported failed for its tenant.
				rep, err := e.m.CreateTenants(ctx, []string{name})
				require.Error(t, err)
				require.Len(t, rep.Failures(), 1)
				assert.Equal(t, `tenantplugin: tenant "`+name+`": `+wants[kind], rep.Failures()[0].Err.Error())
				assert.False(t, e.schemaExists(name))
			})
		}
	}

	// A seed that fails for one tenant only leaves the others created.
	var bad string
	e := newIsolatedEnv(t, 4, tenantplugin.WithSeed(func(tx *gorm.DB) error {
		if n, _ := tenantplugin.FromContext(tx.Statement.Context); n == bad {
			return boom
		}
		return nil
	}))
	bad = "seedbad_" + e.shared
	names := []string{"seedok1_" + e.shared, bad, "seedok2_" + e.shared}
	rep, err := e.m.CreateTenants(ctx, names)
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 2, rep.Migrated, rep.String())
	require.Len(t, rep.Failures(), 1)
	assert.Equal(t, bad, rep.Failures()[0].Tenant)
	got, err := e.m.Tenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{names[0], names[2]}, got)
	assert.False(t, e.schemaExists(bad))
}
