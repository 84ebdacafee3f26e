package integration_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestPrepareStmtMode: GORM's PrepareStmt pool works under the plugin, for
// GORM-built and raw statements, in and out of transactions.
func TestPrepareStmtMode(t *testing.T) {
	db, err := server.Open(2, &gorm.Config{PrepareStmt: true})
	require.NoError(t, err)
	defer func() { s, _ := db.DB(); s.Close() }()
	p := testPlugin(fmt.Sprintf("prep_%d", sharedN.Add(1)))
	require.NoError(t, db.Use(p))
	// GORM's prepared-statement manager stays db.ConnPool (GORM's own
	// PreparedStmt tests rely on it): the plugin wraps the pool inside it.
	ps, ok := db.ConnPool.(*gorm.PreparedStmtDB)
	require.True(t, ok, "db.ConnPool is %T", db.ConnPool)
	prepared := func() int { return len(ps.Stmts.Keys()) }
	m := p.Migrator()
	ctx := context.Background()
	require.NoError(t, m.MigrateShared(ctx))
	a, b := fmt.Sprintf("prepa%d", tenantN.Add(1)), fmt.Sprintf("prepb%d", tenantN.Add(1))
	require.NoError(t, m.CreateTenant(ctx, a))
	require.NoError(t, m.CreateTenant(ctx, b))
	for _, tn := range []string{a, b} {
		tdb := db.WithContext(tenantplugin.WithTenant(ctx, tn))
		require.NoError(t, tdb.Create(&Poll{Question: "q", Owner: tn}).Error)
		require.NoError(t, tdb.Exec("UPDATE polls SET question = 'raw'").Error)
		require.NoError(t, tdb.Transaction(func(tx *gorm.DB) error {
			return tx.Exec("INSERT INTO polls (question, owner) VALUES ('tx', ?)", tn).Error
		}))
	}
	assert.Positive(t, prepared(), "GORM prepared the GORM-built statements")
	for _, tn := range []string{a, b} {
		var owners []string
		require.NoError(t, db.WithContext(tenantplugin.WithTenant(ctx, tn)).Raw("SELECT owner FROM polls").Scan(&owners).Error)
		assert.Equal(t, []string{tn, tn}, owners)
		var ps []Poll
		require.NoError(t, db.WithContext(tenantplugin.WithTenant(ctx, tn)).Order("id").Find(&ps).Error)
		require.Len(t, ps, 2)
		assert.Equal(t, "raw", ps[0].Question)
	}
}
