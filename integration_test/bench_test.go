package integration_test

// Benchmarks against the same PostgreSQL as the tests. The default sizes are
// small so that `go test -bench . -benchtime 1x` (run by scripts/test.sh)
// keeps every benchmark alive in a few seconds; scripts/bench.sh runs the
// published sizes (TENANTPLUGIN_BENCH_TENANTS=1,100,1000 and, for the brave,
// 10000).

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// benchSizes reads TENANTPLUGIN_BENCH_TENANTS (comma-separated), default small.
func benchSizes(def ...int) []int {
	v := os.Getenv("TENANTPLUGIN_BENCH_TENANTS")
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// Item is the benchmark's tenant model.
type Item struct {
	ID    uint `gorm:"primaryKey"`
	Name  string
	Price int
}

// PlainItem is the same table for plain GORM, qualified by hand.
type PlainItem struct {
	ID    uint `gorm:"primaryKey"`
	Name  string
	Price int
}

func (PlainItem) TableName() string { return "bench_plain.items" }

var benchN atomic.Int64

type benchEnv struct {
	db    *gorm.DB // with the plugin
	plain *gorm.DB // without
	p     *tenantplugin.Plugin
	m     *tenantplugin.Migrator
	names []string
	ctxs  []context.Context
}

// newBenchEnv creates n tenants holding rows items each, on pools of maxConns.
func newBenchEnv(b *testing.B, n, rows, maxConns int, migs ...*gormigrate.Migration) *benchEnv {
	b.Helper()
	shared := fmt.Sprintf("bench_shared_%d", benchN.Add(1))
	db, err := openBench(maxConns)
	require.NoError(b, err)
	p := tenantplugin.New(tenantplugin.WithSharedSchema(shared), tenantplugin.WithTenantModels(&Item{}))
	require.NoError(b, db.Use(p))
	m := p.Migrator(tenantplugin.WithMigrations(migs...))
	require.NoError(b, m.MigrateShared(context.Background()))
	e := &benchEnv{db: db, p: p, m: m}
	for i := 0; i < n; i++ {
		e.names = append(e.names, fmt.Sprintf("b%d_%s", i, shared))
	}
	if n > 0 {
		_, err = m.CreateTenants(context.Background(), e.names)
		require.NoError(b, err)
	}
	for _, name := range e.names {
		ctx := tenantplugin.WithTenant(context.Background(), name)
		e.ctxs = append(e.ctxs, ctx)
		if rows > 0 {
			items := make([]Item, rows)
			for j := range items {
				items[j] = Item{Name: fmt.Sprintf("item %d", j), Price: j}
			}
			require.NoError(b, db.WithContext(ctx).Create(&items).Error)
		}
	}
	// Plain GORM as most apps open it (pgx defaults: every statement
	// prepared and cached); for one tenant that is what Open's hot set does.
	e.plain, err = gorm.Open(postgres.Open(server.URL), &gorm.Config{Logger: logger.Discard})
	require.NoError(b, err)
	if s, err := e.plain.DB(); err == nil {
		s.SetMaxOpenConns(maxConns)
		s.SetMaxIdleConns(maxConns)
	}
	require.NoError(b, err)
	b.Cleanup(func() {
		for _, g := range []*gorm.DB{e.db, e.plain} {
			if s, err := g.DB(); err == nil {
				s.Close()
			}
		}
	})
	return e
}

// openBench opens GORM on the run's database the way the README recommends,
// through tenantplugin.Open. TENANTPLUGIN_BENCH_DRIVER=pgx-default opens it
// with gorm's postgres.Open instead (pgx's defaults), and
// TENANTPLUGIN_BENCH_DSN_PARAMS adds pgx parameters (e.g.
// default_query_exec_mode=exec), so driver settings can be compared.
func openBench(maxConns int) (*gorm.DB, error) {
	dsn := server.URL
	if p := os.Getenv("TENANTPLUGIN_BENCH_DSN_PARAMS"); p != "" {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + p
	}
	d := tenantplugin.Open(dsn)
	if os.Getenv("TENANTPLUGIN_BENCH_DRIVER") == "pgx-default" {
		d = postgres.Open(dsn)
	}
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	return db, nil
}

// BenchmarkOverhead compares the plugin with plain GORM on a hand-qualified
// table, one connection each, for the four statement shapes of the README.
func BenchmarkOverhead(b *testing.B) {
	e := newBenchEnv(b, 1, 10, 1)
	ctx := e.ctxs[0]
	require.NoError(b, e.plain.Exec(`CREATE SCHEMA IF NOT EXISTS bench_plain`).Error)
	require.NoError(b, e.plain.Exec(`DROP TABLE IF EXISTS bench_plain.items`).Error)
	require.NoError(b, e.plain.Exec(`CREATE TABLE bench_plain.items (LIKE "`+e.names[0]+`".items INCLUDING ALL)`).Error)
	require.NoError(b, e.plain.Exec(`INSERT INTO bench_plain.items SELECT * FROM "`+e.names[0]+`".items`).Error)

	shapes := []struct {
		name         string
		plugin, gorm func(b *testing.B)
	}{
		{"First",
			func(b *testing.B) {
				var it Item
				must(b, e.db.WithContext(ctx).First(&it).Error)
			},
			func(b *testing.B) {
				var it PlainItem
				must(b, e.plain.WithContext(context.Background()).First(&it).Error)
			}},
		{"Find10",
			func(b *testing.B) {
				var its []Item
				must(b, e.db.WithContext(ctx).Limit(10).Find(&its).Error)
			},
			func(b *testing.B) {
				var its []PlainItem
				must(b, e.plain.WithContext(context.Background()).Limit(10).Find(&its).Error)
			}},
		{"Create",
			func(b *testing.B) {
				must(b, e.db.WithContext(ctx).Create(&Item{Name: "new", Price: 1}).Error)
			},
			func(b *testing.B) {
				must(b, e.plain.WithContext(context.Background()).Create(&PlainItem{Name: "new", Price: 1}).Error)
			}},
		{"Updates",
			func(b *testing.B) {
				must(b, e.db.WithContext(ctx).Model(&Item{ID: 1}).Updates(Item{Name: "upd", Price: 2}).Error)
			},
			func(b *testing.B) {
				must(b, e.plain.WithContext(context.Background()).Model(&PlainItem{ID: 1}).Updates(PlainItem{Name: "upd", Price: 2}).Error)
			}},
	}
	for _, s := range shapes {
		b.Run(s.name+"/gorm", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.gorm(b)
			}
		})
		b.Run(s.name+"/plugin", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.plugin(b)
			}
		})
	}
}

func must(b *testing.B, err error) {
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRoundRobin reads one row by primary key from tenant i mod N, on
// one connection, and with 8 goroutines on a pool of 8.
func BenchmarkRoundRobin(b *testing.B) {
	for _, n := range benchSizes(1, 10) {
		e := newBenchEnv(b, n, 1, 8)
		sqlDB, err := e.db.DB()
		require.NoError(b, err)
		b.Run(fmt.Sprintf("tenants=%d/serial", n), func(b *testing.B) {
			sqlDB.SetMaxOpenConns(1)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var it Item
				must(b, e.db.WithContext(e.ctxs[i%n]).Take(&it, 1).Error)
			}
		})
		b.Run(fmt.Sprintf("tenants=%d/parallel8", n), func(b *testing.B) {
			sqlDB.SetMaxOpenConns(8)
			b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // 8 goroutines
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1))
					var it Item
					if err := e.db.WithContext(e.ctxs[i%n]).Take(&it, 1).Error; err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCreateTenants: creating tenants by replaying captured DDL versus
// running AutoMigrate in each new schema.
func BenchmarkCreateTenants(b *testing.B) {
	for _, n := range benchSizes(4) {
		for _, mode := range []string{"replay", "automigrate", "replay-serial", "automigrate-serial"} {
			b.Run(fmt.Sprintf("tenants=%d/%s", n, mode), func(b *testing.B) {
				e := newBenchEnv(b, 0, 0, 8)
				var opts []tenantplugin.MigratorOption
				if strings.HasPrefix(mode, "automigrate") {
					opts = append(opts, tenantplugin.WithAutoMigrateCreate())
				}
				if strings.HasSuffix(mode, "-serial") { // one tenant at a time: latency, not throughput
					opts = append(opts, tenantplugin.WithConcurrency(1))
				}
				m := e.p.Migrator(opts...)
				_, err := m.CreateTenants(context.Background(), nil) // capture DDL outside the timing
				require.NoError(b, err)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					names := make([]string, n)
					for j := range names {
						names[j] = fmt.Sprintf("c%d_%d_%d", benchN.Add(1), i, j)
					}
					_, err := m.CreateTenants(context.Background(), names)
					must(b, err)
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N*n), "ms/tenant")
			})
		}
	}
}

// BenchmarkMigrateUpToDate: MigrateTenants over N up-to-date tenants, by the
// fingerprint fast path versus running AutoMigrate in each (WithForce).
func BenchmarkMigrateUpToDate(b *testing.B) {
	for _, n := range benchSizes(4) {
		e := newBenchEnv(b, n, 0, 8)
		for _, mode := range []string{"fingerprint", "automigrate"} {
			b.Run(fmt.Sprintf("tenants=%d/%s", n, mode), func(b *testing.B) {
				var opts []tenantplugin.MigratorOption
				if mode == "automigrate" {
					opts = append(opts, tenantplugin.WithForce())
				}
				for i := 0; i < b.N; i++ {
					rep, err := e.p.Migrator(opts...).MigrateTenants(context.Background())
					must(b, err)
					if rep.Failed > 0 {
						b.Fatal(rep)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/run")
			})
		}
	}
}

// BenchmarkMigrateNewColumn: one new migration adding a column, applied to N
// tenants.
func BenchmarkMigrateNewColumn(b *testing.B) {
	for _, n := range benchSizes(4) {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e := newBenchEnv(b, n, 0, 8)
				col := &gormigrate.Migration{ID: "add_sku", Migrate: func(tx *gorm.DB) error {
					return tx.Exec("ALTER TABLE items ADD COLUMN sku text").Error
				}}
				m := e.p.Migrator(tenantplugin.WithMigrations(col))
				b.StartTimer()
				rep, err := m.MigrateTenants(context.Background())
				must(b, err)
				if rep.Migrated != n {
					b.Fatal(rep)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N*n), "ms/tenant")
		})
	}
}

// BenchmarkBuild measures the CPU cost of building each statement without
// sending it (DryRun): the plugin's own per-statement overhead, free of the
// network and server noise that BenchmarkOverhead carries.
func BenchmarkBuild(b *testing.B) {
	e := newBenchEnv(b, 1, 0, 1)
	ctx := e.ctxs[0]
	pdb := e.db.Session(&gorm.Session{DryRun: true, SkipDefaultTransaction: true})
	gdb := e.plain.Session(&gorm.Session{DryRun: true, SkipDefaultTransaction: true})
	shapes := []struct {
		name         string
		plugin, gorm func() error
	}{
		{"First", func() error { var it Item; return pdb.WithContext(ctx).First(&it).Error },
			func() error { var it PlainItem; return gdb.WithContext(context.Background()).First(&it).Error }},
		{"Find10", func() error { var its []Item; return pdb.WithContext(ctx).Limit(10).Find(&its).Error },
			func() error {
				var its []PlainItem
				return gdb.WithContext(context.Background()).Limit(10).Find(&its).Error
			}},
		{"Create", func() error { return pdb.WithContext(ctx).Create(&Item{Name: "n", Price: 1}).Error },
			func() error {
				return gdb.WithContext(context.Background()).Create(&PlainItem{Name: "n", Price: 1}).Error
			}},
		{"Updates", func() error { return pdb.WithContext(ctx).Model(&Item{ID: 1}).Updates(Item{Name: "u", Price: 2}).Error },
			func() error {
				return gdb.WithContext(context.Background()).Model(&PlainItem{ID: 1}).Updates(PlainItem{Name: "u", Price: 2}).Error
			}},
	}
	for _, s := range shapes {
		b.Run(s.name+"/gorm", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				must(b, s.gorm())
			}
		})
		b.Run(s.name+"/plugin", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				must(b, s.plugin())
			}
		})
	}
}

// BenchmarkBackendMemory reports a backend's memory (pg_backend_memory_contexts)
// before and after one connection reads from each of N tenants: the catalog
// cache a backend keeps per schema it touched, which only closing the
// connection releases (tenantplugin.Open recycles connections after
// DefaultConnMaxLifetime).
func BenchmarkBackendMemory(b *testing.B) {
	for _, n := range benchSizes(4) {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			e := newBenchEnv(b, n, 1, 1)
			var before, after float64
			for i := 0; i < b.N; i++ {
				sqlDB, err := e.db.DB()
				require.NoError(b, err)
				sqlDB.SetMaxOpenConns(1)
				sqlDB.SetMaxIdleConns(0) // a fresh backend per iteration
				sqlDB.SetMaxIdleConns(1)
				memory := func() float64 {
					var total int64
					must(b, e.db.Raw("SELECT sum(total_bytes) FROM pg_backend_memory_contexts").Scan(&total).Error)
					return float64(total) / (1 << 20)
				}
				before = memory()
				for _, ctx := range e.ctxs {
					var it Item
					must(b, e.db.WithContext(ctx).Take(&it, 1).Error)
				}
				after = memory()
			}
			b.ReportMetric(before, "MB-before")
			b.ReportMetric(after, "MB-after")
			b.ReportMetric((after-before)*1024/float64(n), "kB/tenant")
		})
	}
}

// BenchmarkTenantRoles measures per-tenant roles (WithTenantRoles): a raw
// read (a transaction of its own) and a GORM write (GORM's transaction)
// with and without roles, round-robin over N tenants, and the first
// statement under a role on a fresh connection with N roles in the cluster.
func BenchmarkTenantRoles(b *testing.B) {
	for _, n := range benchSizes(4) {
		shared := fmt.Sprintf("bench_roles_%d", benchN.Add(1))
		withRoles, err := openBench(1)
		require.NoError(b, err)
		p := tenantplugin.New(tenantplugin.WithTenantRoles(), tenantplugin.WithSharedSchema(shared), tenantplugin.WithTenantModels(&Item{}))
		require.NoError(b, withRoles.Use(p))
		m := p.Migrator()
		ctx := context.Background()
		require.NoError(b, m.MigrateShared(ctx))
		names := make([]string, n)
		ctxs := make([]context.Context, n)
		for i := range names {
			names[i] = fmt.Sprintf("r%d_%s", i, shared)
			ctxs[i] = tenantplugin.WithTenant(ctx, names[i])
		}
		_, err = m.CreateTenants(ctx, names)
		require.NoError(b, err)
		b.Cleanup(func() {
			for _, name := range names {
				_ = m.DropTenant(ctx, name)
			}
			withRoles.Exec(`DROP OWNED BY ` + tenantplugin.QuoteIdentifier(tenantplugin.SharedAccessRoleName(server.Name)))
			withRoles.Exec(`DROP ROLE IF EXISTS ` + tenantplugin.QuoteIdentifier(tenantplugin.SharedAccessRoleName(server.Name)))
			s, _ := withRoles.DB()
			s.Close()
		})
		noRoles, err := openBench(1)
		require.NoError(b, err)
		require.NoError(b, noRoles.Use(tenantplugin.New(tenantplugin.WithSharedSchema(shared), tenantplugin.WithTenantModels(&Item{}))))
		b.Cleanup(func() { s, _ := noRoles.DB(); s.Close() })

		for _, c := range []struct {
			name string
			db   *gorm.DB
		}{{"roles", withRoles}, {"no-roles", noRoles}} {
			b.Run(fmt.Sprintf("tenants=%d/raw-read/%s", n, c.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					var s []string
					must(b, c.db.WithContext(ctxs[i%n]).Raw("SELECT name FROM items").Scan(&s).Error)
				}
			})
			b.Run(fmt.Sprintf("tenants=%d/write/%s", n, c.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					must(b, c.db.WithContext(ctxs[i%n]).Create(&Item{Name: "w"}).Error)
				}
			})
		}
		b.Run(fmt.Sprintf("tenants=%d/first-statement-on-new-connection", n), func(b *testing.B) {
			var first, second time.Duration
			for i := 0; i < b.N; i++ {
				fresh, err := openBench(1)
				require.NoError(b, err)
				require.NoError(b, fresh.Use(tenantplugin.New(tenantplugin.WithTenantRoles(), tenantplugin.WithSharedSchema(shared), tenantplugin.WithTenantModels(&Item{}))))
				must(b, fresh.Exec("SELECT 1").Error) // connect outside the timing
				var s []string
				t0 := time.Now()
				must(b, fresh.WithContext(ctxs[i%n]).Raw("SELECT name FROM items").Scan(&s).Error)
				first += time.Since(t0)
				t0 = time.Now()
				must(b, fresh.WithContext(ctxs[(i+1)%n]).Raw("SELECT name FROM items").Scan(&s).Error)
				second += time.Since(t0)
				sdb, _ := fresh.DB()
				sdb.Close()
			}
			b.ReportMetric(float64(first.Microseconds())/float64(b.N), "µs-first")
			b.ReportMetric(float64(second.Microseconds())/float64(b.N), "µs-second")
		})
	}
}
