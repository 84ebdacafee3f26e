package integration_test

import (
	"context"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTenantStats(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	small, big, empty, ghost := "st_small_"+e.shared, "st_big_"+e.shared, "st_empty_"+e.shared, "st_ghost_"+e.shared
	for _, n := range []string{small, big, empty, ghost} {
		require.NoError(t, e.m.CreateTenant(ctx, n))
	}
	require.NoError(t, e.db.Exec(`DROP SCHEMA `+tenantplugin.QuoteIdentifier(ghost)+` CASCADE`).Error)
	require.NoError(t, e.as(small).Exec(`INSERT INTO polls (question, owner) SELECT 'q' || i, 'x' FROM generate_series(1, 50) i`).Error)
	require.NoError(t, e.as(big).Exec(`INSERT INTO polls (question, owner) SELECT repeat('q', 200) || i, 'x' FROM generate_series(1, 3000) i`).Error)
	require.NoError(t, e.as(big).Exec(`INSERT INTO tags (name, owner) SELECT 't' || i, 'x' FROM generate_series(1, 500) i`).Error)
	for _, n := range []string{small, big} { // the estimates come from VACUUM and ANALYZE (or autovacuum)
		require.NoError(t, e.db.Exec(`VACUUM ANALYZE `+tenantplugin.QuoteIdentifier(n)+`.polls, `+tenantplugin.QuoteIdentifier(n)+`.tags`).Error)
	}

	before := server.Counter.Count()
	stats, err := e.m.TenantStats(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, server.Counter.Count()-before, "one query for every tenant")

	require.Len(t, stats, 4)
	byName := map[string]tenantplugin.TenantStats{}
	for i, s := range stats {
		byName[s.Tenant] = s
		if i > 0 {
			assert.GreaterOrEqual(t, stats[i-1].TotalBytes(), s.TotalBytes(), "largest first")
		}
	}
	assert.Equal(t, big, stats[0].Tenant)
	assert.Equal(t, ghost, stats[3].Tenant, "a tenant without schema comes last, with zeros")
	assert.Equal(t, tenantplugin.TenantStats{Tenant: ghost}, stats[3])

	// After VACUUM the page counts are exact: compare with the sizes of the
	// main forks (tables, their TOAST tables, indexes), asked the slow way.
	for _, n := range []string{small, big, empty} {
		var tables int
		var tableBytes, indexBytes int64
		require.NoError(t, e.db.Raw(`SELECT count(*),
  coalesce(sum(pg_relation_size(c.oid) + CASE WHEN c.reltoastrelid <> 0 THEN pg_relation_size(c.reltoastrelid) ELSE 0 END), 0),
  coalesce(sum((SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid)), 0)
  FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = ? AND c.relkind = 'r'`, n).
			Row().Scan(&tables, &tableBytes, &indexBytes))
		s := byName[n]
		assert.Equal(t, tables, s.Tables, n)
		assert.Equal(t, tableBytes, s.TableBytes, n)
		assert.Equal(t, indexBytes, s.IndexBytes, n)
		assert.Positive(t, s.IndexBytes, n)
	}
	// Row estimates: exact for small tables after ANALYZE.
	assert.EqualValues(t, 3500, byName[big].Rows)
	assert.EqualValues(t, 50, byName[small].Rows)
	assert.EqualValues(t, 0, byName[empty].Rows)
	assert.Equal(t, byName[empty].Tables, byName[empty].Unanalyzed, "nothing analyzed yet")
	assert.Equal(t, byName[big].Tables-2, byName[big].Unanalyzed)
	assert.Greater(t, byName[big].TableBytes, int64(3000*200))

	_, err = testPlugin("unused").Migrator().TenantStats(ctx)
	require.ErrorIs(t, err, tenantplugin.ErrNotRegistered)
}
