package integration_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/require"
)

// BenchmarkCloneTenant: CloneTenant of a template holding R rows against
// the reference measured in the same run, creating an empty tenant and
// inserting the same R rows through GORM (CreateInBatches of 1,000), as an
// app seeding a new tenant would. TENANTPLUGIN_BENCH_ROWS sets R (default 100).
func BenchmarkCloneTenant(b *testing.B) {
	for _, rows := range benchSizesFrom("TENANTPLUGIN_BENCH_ROWS", 100) {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			e := newBenchEnv(b, 1, rows, 4)
			ctx := context.Background()
			tmpl := e.names[0]
			var seed []Item
			require.NoError(b, e.db.WithContext(e.ctxs[0]).Order("id").Find(&seed).Error)
			require.Len(b, seed, rows)
			_, err := e.m.CreateTenants(ctx, nil) // capture the DDL outside the timing
			require.NoError(b, err)
			var clone, reference time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := benchN.Add(1)
				t0 := time.Now()
				must(b, e.m.CloneTenant(ctx, tmpl, fmt.Sprintf("cl%d_%s", n, tmpl)))
				clone += time.Since(t0)

				name := fmt.Sprintf("ci%d_%s", n, tmpl)
				items := make([]Item, len(seed))
				for j, it := range seed {
					items[j] = Item{Name: it.Name, Price: it.Price}
				}
				t0 = time.Now()
				must(b, e.m.CreateTenant(ctx, name))
				if len(items) > 0 {
					must(b, e.db.WithContext(tenantplugin.WithTenant(ctx, name)).CreateInBatches(&items, 1000).Error)
				}
				reference += time.Since(t0)
			}
			b.ReportMetric(float64(clone.Microseconds())/1000/float64(b.N), "clone-ms")
			b.ReportMetric(float64(reference.Microseconds())/1000/float64(b.N), "create+insert-ms")
			b.ReportMetric(float64(clone)/float64(reference), "clone/reference")
		})
	}
}

// BenchmarkTenantStats: TenantStats (one catalog query) over N tenants,
// against two references measured in the same run: the same estimates asked
// tenant by tenant (N queries), and exact sizes in one query
// (pg_table_size and pg_indexes_size, which open every relation).
func BenchmarkTenantStats(b *testing.B) {
	for _, n := range benchSizes(4) {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			e := newBenchEnv(b, n, 10, 4)
			ctx := context.Background()
			sqlDB, err := e.db.DB()
			require.NoError(b, err)
			var one, each, exact time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				stats, err := e.m.TenantStats(ctx)
				must(b, err)
				one += time.Since(t0)
				if len(stats) != n {
					b.Fatalf("%d stats for %d tenants", len(stats), n)
				}
				t0 = time.Now()
				for _, name := range e.names {
					var tables int
					var rowsEst, tableBytes, indexBytes int64
					must(b, sqlDB.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE c.relkind <> 'i'),
  coalesce(sum(greatest(c.reltuples, 0)) FILTER (WHERE c.relkind <> 'i'), 0)::bigint,
  coalesce(sum(c.relpages::bigint + coalesce(t.relpages, 0)) FILTER (WHERE c.relkind <> 'i'), 0) * 8192,
  coalesce(sum(c.relpages::bigint) FILTER (WHERE c.relkind = 'i'), 0) * 8192
  FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE ns.nspname = $1 AND c.relkind IN ('r', 'p', 'm', 'i')`, name).
						Scan(&tables, &rowsEst, &tableBytes, &indexBytes))
				}
				each += time.Since(t0)
				t0 = time.Now()
				rows, err := sqlDB.QueryContext(ctx, `SELECT ns.nspname, sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid))
  FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
 WHERE ns.nspname IN (SELECT name FROM `+tenantplugin.QuoteIdentifier(e.p.SharedSchema())+`.tenantplugin_tenants) AND c.relkind IN ('r', 'p', 'm')
 GROUP BY 1`)
				must(b, err)
				for rows.Next() {
				}
				must(b, rows.Err())
				rows.Close()
				exact += time.Since(t0)
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(ms(one), "stats-ms")
			b.ReportMetric(ms(each), "per-tenant-queries-ms")
			b.ReportMetric(ms(exact), "exact-sizes-ms")
			b.ReportMetric(float64(one)/float64(each), "stats/per-tenant")
		})
	}
}

// benchSizesFrom reads a comma-separated list of sizes from the variable
// env, default def.
func benchSizesFrom(env string, def ...int) []int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n >= 0 {
			out = append(out, n)
		}
	}
	return out
}
