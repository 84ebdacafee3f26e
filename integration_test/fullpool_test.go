package integration_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestMissingSchemaInsideTransactionOnAFullPool: a GORM-built statement for a
// tenant whose schema does not exist fails inside a transaction; telling an
// unknown tenant from a missing table takes a catalog question on another
// connection. On a pool whose connections are all held (here: one, held by
// the transaction) it used to wait for one forever (a breaker's finding);
// now the error comes back at once, naming the tenant, and with a
// connection to spare it is ErrUnknownTenant.
func TestMissingSchemaInsideTransactionOnAFullPool(t *testing.T) {
	var writes atomic.Int64
	db := openCounting(t, false, "", false, &writes) // one connection
	pluginTenants(t, db, "fullpool", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	find := func(tx *gorm.DB) error {
		var polls []Poll
		return tx.WithContext(tenantplugin.WithTenant(ctx, "fullpool_ghost")).Find(&polls).Error
	}
	err := within(t, 15*time.Second, "the failed statement's transaction", func() error { return db.WithContext(ctx).Transaction(find) })
	require.Error(t, err)
	var te *tenantplugin.TenantError
	assert.True(t, errors.As(err, &te) || errors.Is(err, tenantplugin.ErrUnknownTenant), "%v", err)
	assert.Contains(t, err.Error(), "fullpool_ghost")
	require.NoError(t, ctx.Err(), "returned before the deadline")

	sqlDB, err := db.DB()
	require.NoError(t, err)
	sqlDB.SetMaxOpenConns(2)
	err = db.WithContext(ctx).Transaction(find)
	assert.ErrorIs(t, err, tenantplugin.ErrUnknownTenant, "a connection to spare: the unknown tenant is named as such")
}

// TestMissingSchemaInsideConnection: the same inside db.Connection, which
// holds a connection too: on a pool of one it used to wait forever, and
// with GORM's PrepareStmt the catalog question panicked on the empty
// *sql.Row GORM returns on failure (a breaker's findings). Outside a
// transaction the held connection answers the question itself.
func TestMissingSchemaInsideConnection(t *testing.T) {
	for _, c := range pipelineConfigs {
		t.Run(c.name, func(t *testing.T) {
			var writes atomic.Int64
			db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes) // one connection
			pluginTenants(t, db, "conn", 1)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := within(t, 15*time.Second, "db.Connection", func() error {
				return db.WithContext(ctx).Connection(func(c *gorm.DB) error {
					var polls []Poll
					return c.WithContext(tenantplugin.WithTenant(ctx, "conn_ghost")).Find(&polls).Error
				})
			})
			assert.ErrorIs(t, err, tenantplugin.ErrUnknownTenant, "the held connection, in no transaction, answers itself")
			assert.Contains(t, err.Error(), "conn_ghost")
			require.NoError(t, ctx.Err(), "returned before the deadline")
			var polls []Poll
			err = db.WithContext(tenantplugin.WithTenant(ctx, "conn_ghost")).Find(&polls).Error
			assert.ErrorIs(t, err, tenantplugin.ErrUnknownTenant, "outside db.Connection the catalog is asked")
		})
	}
}

// within runs fn and returns its error, failing the test when fn has not
// returned after d (what names it).
func within(t *testing.T, d time.Duration, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s never returned", what)
		return nil
	}
}
