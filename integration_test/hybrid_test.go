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

// TestOpenPreparesHotStatements: on a pool from tenantplugin.Open, a
// statement text seen twice runs as a server-side prepared statement from
// then on; a text seen once does not.
func TestOpenPreparesHotStatements(t *testing.T) {
	db, _, m := pluginDB(t, tenantplugin.Open(server.URL), 1, "hot")
	ctx := context.Background()
	a := fmt.Sprintf("hot%d", tenantN.Add(1))
	require.NoError(t, m.CreateTenant(ctx, a))
	tdb := db.WithContext(tenantplugin.WithTenant(ctx, a))
	require.NoError(t, tdb.Create(&Poll{Question: "q", Owner: a}).Error)

	prepared := func() []string {
		var stmts []string
		require.NoError(t, db.Session(&gorm.Session{}).Raw("SELECT statement FROM pg_prepared_statements").Scan(&stmts).Error)
		return stmts
	}
	var p1 Poll
	require.NoError(t, tdb.Where("question = ?", "q").Take(&p1).Error)
	for _, s := range prepared() {
		assert.NotContains(t, s, `"`+a+`"."polls"`, "prepared after one run")
	}
	for i := 0; i < 3; i++ {
		require.NoError(t, tdb.Where("question = ?", "q").Take(&p1).Error)
	}
	found := false
	for _, s := range prepared() {
		if strings.Contains(s, `"`+a+`"."polls"`) {
			found = true
		}
	}
	assert.True(t, found, "a hot statement was not prepared: %v", prepared())
}
