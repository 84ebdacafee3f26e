package integration_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// assertCleanPool checks, on a pool of one connection, that the connection
// carries the server's default search_path and no role change, and that
// tenant b then reads exactly its own rows.
func (e *env) assertCleanPool(t *testing.T, b string) {
	t.Helper()
	var path, def, role, sessionRole string
	require.NoError(t, e.db.Raw("SELECT reset_val FROM pg_settings WHERE name = 'search_path'").Scan(&def).Error)
	require.NoError(t, e.db.Raw("SHOW search_path").Scan(&path).Error)
	assert.Equal(t, def, path, "a connection kept a tenant search_path")
	require.NoError(t, e.db.Raw("SELECT current_user, session_user").Row().Scan(&role, &sessionRole))
	assert.Equal(t, sessionRole, role, "a connection kept a role")
	assert.Equal(t, []string{b}, e.ownersVia(b))
}

// ownersVia reads polls' owners through the plugin (GORM-built and raw).
func (e *env) ownersVia(tenant string) []string {
	var ps []Poll
	require.NoError(e.t, e.as(tenant).Find(&ps).Error)
	var raw []string
	require.NoError(e.t, e.as(tenant).Raw("SELECT DISTINCT owner FROM polls").Scan(&raw).Error)
	seen := map[string]bool{}
	var out []string
	for _, o := range raw {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	for _, p := range ps {
		if !seen[p.Owner] {
			seen[p.Owner] = true
			out = append(out, p.Owner)
		}
	}
	return out
}

func TestFaults(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.tenant("fa"), e.tenant("fb")
	plan := e.plan()
	e.seed(a, plan)
	e.seed(b, plan)
	ctx := context.Background()

	t.Run("backend killed mid-transaction", func(t *testing.T) {
		before := e.snapshot(a)
		err := e.as(a).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec("UPDATE polls SET question = 'half done'").Error; err != nil {
				return err
			}
			killer, err := server.Open(1, nil)
			require.NoError(t, err)
			defer func() { s, _ := killer.DB(); s.Close() }()
			var pid int
			if err := tx.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil {
				return err
			}
			require.NoError(t, killer.Exec("SELECT pg_terminate_backend(?)", pid).Error)
			return tx.Exec("UPDATE polls SET question = 'never'").Error
		})
		require.Error(t, err)
		var te *tenantplugin.TenantError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, a, te.Tenant)
		assert.Equal(t, before, e.snapshot(a), "a partial write remained")
		e.assertCleanPool(t, b)
	})

	t.Run("statement timeout", func(t *testing.T) {
		err := e.as(a).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec("SET LOCAL statement_timeout = '50ms'").Error; err != nil {
				return err
			}
			if err := tx.Exec("UPDATE polls SET question = 'timed out'").Error; err != nil {
				return err
			}
			return tx.Exec("SELECT pg_sleep(1) FROM polls").Error
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), a)
		assert.Contains(t, err.Error(), "statement timeout")
		var n int64
		require.NoError(t, e.as(a).Model(&Poll{}).Where("question = ?", "timed out").Count(&n).Error)
		assert.Zero(t, n)
		e.assertCleanPool(t, b)
	})

	t.Run("context cancelled mid-query", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		var x []int
		err := e.db.WithContext(tenantplugin.WithTenant(cctx, a)).Raw("SELECT pg_sleep(2)::text::int FROM polls").Scan(&x).Error
		require.Error(t, err)
		err = e.db.WithContext(tenantplugin.WithTenant(cctx, a)).Find(&[]Poll{}).Error
		require.Error(t, err)
		e.assertCleanPool(t, b)
	})

	t.Run("pool exhausted", func(t *testing.T) {
		err := e.as(a).Transaction(func(tx *gorm.DB) error {
			// The only connection is held by this transaction.
			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			err := e.db.WithContext(tenantplugin.WithTenant(wctx, b)).Raw("SELECT owner FROM polls").Scan(&[]string{}).Error
			require.Error(t, err)
			assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
			assert.Contains(t, err.Error(), b)
			return nil
		})
		require.NoError(t, err)
		e.assertCleanPool(t, b)
	})
}

// TestGuardDefaultSearchPath: with the guard, SQL that bypasses the plugin
// finds no table, while everything routed keeps working.
func TestGuardDefaultSearchPath(t *testing.T) {
	own, err := testdb.Create("tenantplugin_guard")
	require.NoError(t, err)
	defer func() { require.NoError(t, own.Drop()) }()
	db, err := own.Open(2, nil)
	require.NoError(t, err)
	p := newPlugin()
	require.NoError(t, db.Use(p))
	m := p.Migrator()
	ctx := context.Background()
	require.NoError(t, m.MigrateShared(ctx))
	require.NoError(t, p.GuardDefaultSearchPath(ctx))
	require.NoError(t, m.CreateTenant(ctx, "guarded"))
	sqlDB, _ := db.DB()
	sqlDB.Close()

	// New connections get the empty path.
	db, err = own.Open(2, nil)
	require.NoError(t, err)
	defer func() { s, _ := db.DB(); s.Close() }()
	p = newPlugin()
	require.NoError(t, db.Use(p))
	var path string
	require.NoError(t, db.Raw("SHOW search_path").Scan(&path).Error)
	assert.Equal(t, `""`, path)

	// Unrouted SQL fails instead of reading the shared schema.
	var n int64
	err = db.Raw("SELECT count(*) FROM plans").Scan(&n).Error
	require.Error(t, err)
	assert.Contains(t, err.Error(), `relation "plans" does not exist`)

	// Routed SQL works: GORM-built, raw, shared, migrations.
	tctx := tenantplugin.WithTenant(ctx, "guarded")
	require.NoError(t, db.WithContext(tctx).Create(&Poll{Question: "ok", Owner: "guarded"}).Error)
	require.NoError(t, db.WithContext(tctx).Raw("SELECT count(*) FROM polls").Scan(&n).Error)
	assert.EqualValues(t, 1, n)
	require.NoError(t, db.WithContext(tctx).Raw("SELECT count(*) FROM plans").Scan(&n).Error)
	require.NoError(t, db.WithContext(tenantplugin.SharedOnly(ctx)).Create(&Plan{Name: "p"}).Error)
	rep, err := p.Migrator(tenantplugin.WithForce()).Migrate(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Migrated)
	require.NoError(t, p.Migrator().CreateTenant(ctx, "guarded_two"))

	require.NoError(t, p.UnguardDefaultSearchPath(ctx))
	fresh, err := own.Open(1, nil)
	require.NoError(t, err)
	defer func() { s, _ := fresh.DB(); s.Close() }()
	require.NoError(t, fresh.Raw("SHOW search_path").Scan(&path).Error)
	assert.True(t, strings.Contains(path, "public"), path)
}
