package integration_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Differences found by running GORM's own test suite (tests/ of
// go-gorm/gorm v1.31.2) with the plugin and every statement bound to one
// tenant, turned into tests.

type MirrorOwner struct {
	ID      uint
	Name    string
	Account MirrorAccount
}

type MirrorAccount struct {
	ID            uint
	MirrorOwnerID uint
	Number        string
}

// GORM's TestMigrateConstraint: HasConstraint accepts a relation's name or
// its constraint's name, and a has-one's constraint lives on the other table.
func TestGORMMigratorHasConstraintByRelationName(t *testing.T) {
	e := shapeEnv(t, nil, []any{&MirrorOwner{}, &MirrorAccount{}}, nil)
	tn := e.tenant("mirror")
	m := e.as(tn).Migrator()
	for _, name := range []string{"Account", "fk_mirror_owners_account"} {
		assert.True(t, m.HasConstraint(&MirrorOwner{}, name), name)
		require.NoError(t, m.DropConstraint(&MirrorOwner{}, name), name)
		assert.False(t, m.HasConstraint(&MirrorOwner{}, name), name)
		require.NoError(t, m.CreateConstraint(&MirrorOwner{}, name), name)
		assert.True(t, m.HasConstraint(&MirrorOwner{}, name), name)
	}
}

// The migrator on a database opened with GORM's PrepareStmt: an existing
// table's inspection must not send pgx's per-query options as arguments of
// a prepared statement.
func TestMigratorUnderPrepareStmt(t *testing.T) {
	db, err := gorm.Open(tenantplugin.Open(server.URL), &gorm.Config{PrepareStmt: true, Logger: logger.Discard})
	require.NoError(t, err)
	defer closeDB(db)
	p := testPlugin(fmt.Sprintf("prep_%d", sharedN.Add(1)))
	require.NoError(t, db.Use(p))
	ctx := context.Background()
	m := p.Migrator()
	require.NoError(t, m.MigrateShared(ctx))
	require.NoError(t, m.MigrateShared(ctx), "again, over existing tables")
	tn := fmt.Sprintf("prep_t_%d", tenantN.Add(1))
	require.NoError(t, m.CreateTenant(ctx, tn))
	_, err = p.Migrator(tenantplugin.WithForce()).MigrateTenants(ctx)
	require.NoError(t, err)
	tdb := db.WithContext(tenantplugin.WithTenant(ctx, tn))
	require.NoError(t, tdb.AutoMigrate(&Poll{}))
	cols, err := tdb.Migrator().ColumnTypes(&Poll{})
	require.NoError(t, err)
	assert.NotEmpty(t, cols)
}
