package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// TestOpenPreparesHotStatements: on a pool from tenantplugin.Open, and on
// one from gorm's postgres.Open (the design card's path, pgx's defaults),
// while the hot set has room a statement text with arguments runs as a
// server-side prepared statement. A DSN naming pgx's mode leaves the driver
// alone: with cache_describe nothing is prepared.
func TestOpenPreparesHotStatements(t *testing.T) {
	for _, c := range []struct {
		name     string
		d        gorm.Dialector
		prepared bool
	}{
		{"tenantplugin.Open", tenantplugin.Open(server.URL), true},
		{"postgres.Open", postgres.Open(server.URL), true},
		{"postgres.Open+cache_describe", postgres.Open(server.URL + "&default_query_exec_mode=cache_describe"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, _, m := pluginDB(t, c.d, 1, "hot")
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
			for i := 0; i < 3; i++ {
				require.NoError(t, tdb.Where("question = ?", "q").Take(&p1).Error)
			}
			found := false
			for _, s := range prepared() {
				if strings.Contains(s, `"`+a+`"."polls"`) {
					found = true
				}
			}
			assert.Equal(t, c.prepared, found, "hot statement prepared: %v", prepared())
		})
	}
}
