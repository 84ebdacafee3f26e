package integration_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// TestSchemaDriftIsRetried: a table changes under a statement the driver has
// cached (as while a migration rolls out); the next read must not fail,
// with pgx's prepared-statement cache and with tenantplugin.Open's
// description cache alike. Inside a transaction the error must reach the
// caller.
func TestSchemaDriftIsRetried(t *testing.T) {
	for _, mode := range []string{"pgx-default", "tenantplugin.Open"} {
		t.Run(mode, func(t *testing.T) {
			d := tenantplugin.Open(server.URL)
			if mode == "pgx-default" {
				d = postgres.Open(server.URL)
			}
			db, _, m := pluginDB(t, d, 1, "drift")
			ctx := context.Background()
			name := fmt.Sprintf("drift%d", tenantN.Add(1))
			require.NoError(t, m.CreateTenant(ctx, name))
			tdb := db.WithContext(tenantplugin.WithTenant(ctx, name))
			require.NoError(t, tdb.Create(&Poll{Question: "q", Owner: name}).Error)
			for i := 0; i < 6; i++ { // past pgx's and PostgreSQL's plan caching thresholds
				var ps []Poll
				require.NoError(t, tdb.Find(&ps).Error)
			}
			alter := func(col string) {
				other, err := server.Open(1, nil)
				require.NoError(t, err)
				defer func() { s, _ := other.DB(); s.Close() }()
				require.NoError(t, other.Exec(fmt.Sprintf(`ALTER TABLE %s.polls ADD COLUMN %s text`, tenantplugin.QuoteIdentifier(name), col)).Error)
			}
			alter("extra")
			var ps []Poll
			require.NoError(t, tdb.Find(&ps).Error, "a read after the table changed")
			assert.Len(t, ps, 1)

			// In a transaction nothing can be retried: the error surfaces.
			for i := 0; i < 6; i++ {
				require.NoError(t, tdb.Find(&ps).Error)
			}
			alter("extra2")
			err := tdb.Transaction(func(tx *gorm.DB) error { return tx.Find(&ps).Error })
			if err != nil {
				assert.Contains(t, err.Error(), name)
			}
			require.NoError(t, tdb.Find(&ps).Error)
		})
	}
}

// TestRawSQLAcrossDifferentLayouts: raw SQL has one text for all tenants; when
// tenants' tables differ (mid-migration), the driver's cached plan or
// description of that text must not fail the next tenant's read.
func TestRawSQLAcrossDifferentLayouts(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.tenant("layouta"), e.tenant("layoutb")
	plan := e.plan()
	e.seed(a, plan)
	e.seed(b, plan)
	require.NoError(t, e.db.Exec(fmt.Sprintf(`ALTER TABLE %s.polls ADD COLUMN extra text`, tenantplugin.QuoteIdentifier(b))).Error)
	for i := 0; i < 8; i++ { // alternate, past the hot-statement and plan-cache thresholds
		for _, tn := range []string{a, b} {
			var rows []map[string]any
			require.NoError(t, e.as(tn).Raw("SELECT * FROM polls WHERE id > ?", 0).Scan(&rows).Error, "%s round %d", tn, i)
			require.Len(t, rows, 3)
			_, hasExtra := rows[0]["extra"]
			assert.Equal(t, tn == b, hasExtra)
		}
	}
}
