package integration_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// BenchmarkRawSQL (issue 15): a routed raw statement against the same
// statement hand-qualified and unrouted, interleaved on one connection, on
// the design card's path (postgres.Open) and on tenantplugin.Open; outside a
// transaction, and three statements inside one; it reports both in µs and
// their ratio. Streamed reports the heap growth while reading a large routed
// result through Rows() (TENANTPLUGIN_BENCH_ROWS rows, default 20,000;
// scripts/bench.sh reads 200,000).
func BenchmarkRawSQL(b *testing.B) {
	for _, opener := range []struct {
		name string
		open func() gorm.Dialector
	}{
		{"postgres.Open", func() gorm.Dialector { return postgres.Open(server.URL) }},
		{"tenantplugin.Open", func() gorm.Dialector { return tenantplugin.Open(server.URL) }},
	} {
		db, err := gorm.Open(opener.open(), &gorm.Config{Logger: logger.Discard})
		require.NoError(b, err)
		sqlDB, err := db.DB()
		require.NoError(b, err)
		sqlDB.SetMaxOpenConns(1)
		p := tenantplugin.New(tenantplugin.WithSharedSchema(fmt.Sprintf("bench_raw_%d", benchN.Add(1))), tenantplugin.WithTenantModels(&Item{}))
		require.NoError(b, db.Use(p))
		m := p.Migrator()
		ctx := context.Background()
		require.NoError(b, m.MigrateShared(ctx))
		tn := fmt.Sprintf("bench_raw_t%d", benchN.Add(1))
		require.NoError(b, m.CreateTenant(ctx, tn))
		tdb := db.WithContext(tenantplugin.WithTenant(ctx, tn))
		require.NoError(b, tdb.Exec("INSERT INTO items (name, price) SELECT 'item ' || g, g FROM generate_series(1, 10) g").Error)
		routedSQL := "SELECT * FROM items WHERE id = ?"
		qualifiedSQL := "SELECT * FROM " + tenantplugin.QuoteIdentifier(tn) + ".items WHERE id = ?"

		outside := func(g *gorm.DB, q string) func() error {
			return func() error { var it Item; return g.Raw(q, 1).Scan(&it).Error }
		}
		inside := func(g *gorm.DB, q string) func() error {
			return func() error {
				return g.Transaction(func(tx *gorm.DB) error {
					for i := 1; i <= 3; i++ {
						var it Item
						if err := tx.Raw(q, i).Scan(&it).Error; err != nil {
							return err
						}
					}
					return nil
				})
			}
		}
		for _, c := range []struct {
			name             string
			routed, unrouted func() error
		}{
			{"outside-tx", outside(tdb, routedSQL), outside(db.WithContext(ctx), qualifiedSQL)},
			{"3-in-tx", inside(tdb, routedSQL), inside(db.WithContext(ctx), qualifiedSQL)},
		} {
			b.Run(opener.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < 20; i++ { // warm caches and prepared statements
					must(b, c.routed())
					must(b, c.unrouted())
				}
				var tr, tu time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					must(b, c.routed())
					t1 := time.Now()
					must(b, c.unrouted())
					tu += time.Since(t1)
					tr += t1.Sub(t0)
				}
				b.ReportMetric(float64(tr.Microseconds())/float64(b.N), "routed-µs")
				b.ReportMetric(float64(tu.Microseconds())/float64(b.N), "unrouted-µs")
				b.ReportMetric(float64(tr)/float64(tu), "ratio")
			})
		}
		b.Run(opener.name+"/streamed", func(b *testing.B) {
			n := 20000
			if v, err := strconv.Atoi(os.Getenv("TENANTPLUGIN_BENCH_ROWS")); err == nil && v > 0 {
				n = v
			}
			must(b, tdb.Exec("DELETE FROM items WHERE id > 10").Error)
			must(b, tdb.Exec("INSERT INTO items (name, price) SELECT 'item number ' || g, g FROM generate_series(1, ?) g", n).Error)
			var growth float64
			// A memory figure, not a time: at most three reads, whatever
			// -benchtime asks (bench.sh runs the timed cases 3000x).
			for i := 0; i < min(b.N, 3); i++ {
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				start := ms.HeapAlloc
				var peak uint64
				rows, err := tdb.Raw("SELECT id, name FROM items").Rows()
				must(b, err)
				read := 0
				for rows.Next() {
					var id int
					var name string
					must(b, rows.Scan(&id, &name))
					if read++; read%(n/4) == 0 {
						runtime.GC()
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapAlloc)
					}
				}
				must(b, rows.Err())
				must(b, rows.Close())
				growth = max(growth, float64(int64(peak)-int64(start))/1e6)
			}
			b.ReportMetric(float64(n), "rows")
			b.ReportMetric(growth, "heap-growth-MB")
		})
		_ = m.DropTenant(ctx, tn)
		sqlDB.Close()
	}
}
