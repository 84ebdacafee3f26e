package integration_test

// Fleet-scale reads (issue 12): primary-key reads round-robin over N
// tenants, every configuration in one run, interleaved pass by pass, so that
// the ratios compare figures taken under the same load. The ratios are
// reported as metrics; nothing here fails on a wall-clock time.
//
//	go test -run '^$' -bench 'Fleet' -benchtime 1x ./integration_test    # small
//	BENCH=Fleet TENANTPLUGIN_BENCH_TENANTS=1,1000 ./scripts/bench.sh      # the README's table
//	BENCH=Fleet TENANTPLUGIN_BENCH_TENANTS=10000 ./scripts/bench.sh       # slow: creates 10,000 tenants

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// fleetConfig is one way of opening the database and reading tenant i's row.
type fleetConfig struct {
	name string // metric prefix
	db   *gorm.DB
	read func(db *gorm.DB, i int) error
}

// SharedItem is the shared-table alternative: every tenant's rows in one
// table, told apart by tenant_id (part of the primary key, so indexed).
type SharedItem struct {
	TenantID int `gorm:"primaryKey;autoIncrement:false"`
	ID       int `gorm:"primaryKey;autoIncrement:false"`
	Name     string
	Price    int
}

func withParams(dsn, params string) string {
	if params == "" {
		return dsn
	}
	if strings.Contains(dsn, "?") {
		return dsn + "&" + params
	}
	return dsn + "?" + params
}

// fleetConfigs opens every configuration on e's tenants, each on a pool of
// maxConns connections.
func fleetConfigs(b *testing.B, e *benchEnv, maxConns int, names ...string) []fleetConfig {
	b.Helper()
	open := func(d gorm.Dialector, plugin bool) *gorm.DB {
		db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
		require.NoError(b, err)
		sqlDB, err := db.DB()
		require.NoError(b, err)
		sqlDB.SetMaxOpenConns(maxConns)
		sqlDB.SetMaxIdleConns(maxConns)
		b.Cleanup(func() { sqlDB.Close() })
		if plugin {
			require.NoError(b, db.Use(tenantplugin.New(tenantplugin.WithSharedSchema(e.p.SharedSchema()), tenantplugin.WithTenantModels(&Item{}))))
		}
		return db
	}
	viaPlugin := func(db *gorm.DB, i int) error {
		var it Item
		return db.WithContext(e.ctxs[i%len(e.ctxs)]).Take(&it, 1).Error
	}
	tables := make([]string, len(e.names))
	for i, n := range e.names {
		tables[i] = n + ".items"
	}
	qualified := func(db *gorm.DB, i int) error {
		var it Item
		return db.Table(tables[i%len(tables)]).Take(&it, 1).Error
	}
	all := map[string]func() fleetConfig{
		// (a) the design card's path: gorm's postgres.Open, pgx's defaults.
		"card": func() fleetConfig { return fleetConfig{"card", open(postgres.Open(server.URL), true), viaPlugin} },
		// (b) tenantplugin.Open.
		"open": func() fleetConfig { return fleetConfig{"open", open(tenantplugin.Open(server.URL), true), viaPlugin} },
		// (c) the reference: plain GORM, hand-qualified, a statement cache
		// holding every tenant's statement.
		"ref": func() fleetConfig {
			return fleetConfig{"ref", open(postgres.Open(withParams(server.URL, "statement_cache_capacity=8192")), false), qualified}
		},
		// The design card's path and the reference with generic plans forced.
		"card-generic": func() fleetConfig {
			return fleetConfig{"card-generic", open(postgres.Open(withParams(server.URL, "plan_cache_mode=force_generic_plan")), true), viaPlugin}
		},
		"ref-generic": func() fleetConfig {
			return fleetConfig{"ref-generic", open(postgres.Open(withParams(server.URL, "statement_cache_capacity=8192&plan_cache_mode=force_generic_plan")), false), qualified}
		},
		// The alternative: one shared table with a tenant_id column.
		"shared": func() fleetConfig {
			db := open(postgres.Open(server.URL), false)
			table := fmt.Sprintf("fleet_shared_%d.items", benchN.Add(1))
			require.NoError(b, db.Exec(`CREATE SCHEMA `+strings.Split(table, ".")[0]).Error)
			require.NoError(b, db.Table(table).AutoMigrate(&SharedItem{}))
			require.NoError(b, db.Exec(`INSERT INTO `+table+` (tenant_id, id, name, price) SELECT t, 1, 'item 0', 0 FROM generate_series(0, ?) t`, len(e.names)-1).Error)
			require.NoError(b, db.Exec(`ANALYZE `+table).Error)
			n := len(e.names)
			return fleetConfig{"shared", db, func(db *gorm.DB, i int) error {
				var it SharedItem
				return db.Table(table).Where("tenant_id = ? AND id = ?", i%n, 1).Take(&it).Error
			}}
		},
	}
	var out []fleetConfig
	for _, n := range names {
		out = append(out, all[n]())
	}
	return out
}

// serialPass reads every tenant once, in order, on the calling goroutine;
// small fleets go round more than once, so that a pass makes at least 200
// reads (returned).
func serialPass(b *testing.B, c fleetConfig, n int) (time.Duration, int) {
	ops := max(n, 200)
	t0 := time.Now()
	for i := 0; i < ops; i++ {
		if err := c.read(c.db, i); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
	}
	return time.Since(t0), ops
}

// parallelPass makes ops reads round-robin from 8 goroutines.
func parallelPass(b *testing.B, c fleetConfig, n, ops int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	t0 := time.Now()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= ops {
					return
				}
				if err := c.read(c.db, i%n); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	return time.Since(t0)
}

// reportFleet reports µs/op per configuration and its ratio to ref; ns/op
// is the first configuration's.
func reportFleet(b *testing.B, cs []fleetConfig, total []time.Duration, ops int) {
	ref := -1
	for j, c := range cs {
		if c.name == "ref" {
			ref = j
		}
	}
	for j, c := range cs {
		us := float64(total[j].Microseconds()) / float64(ops)
		b.ReportMetric(us, c.name+"-µs/op")
		if ref >= 0 && j != ref {
			b.ReportMetric(float64(total[j])/float64(total[ref]), c.name+"/ref")
		}
	}
	b.ReportMetric(float64(total[0].Nanoseconds())/float64(ops), "ns/op")
}

// BenchmarkFleet: after every tenant was read once, 5 x N primary-key reads
// round-robin over N tenants, for each configuration, interleaved pass by
// pass. serial: one connection; parallel8: 8 goroutines on 8 connections
// (every connection warmed with every tenant first; µs/op is wall time over
// reads, so it measures throughput).
func BenchmarkFleet(b *testing.B) {
	for _, n := range benchSizes(1, 10) {
		e := newBenchEnv(b, n, 1, 8)
		b.Run(fmt.Sprintf("tenants=%d/serial", n), func(b *testing.B) {
			cs := fleetConfigs(b, e, 1, "card", "open", "ref", "shared", "card-generic", "ref-generic")
			for _, c := range cs {
				serialPass(b, c, n) // warm: every tenant once
			}
			total := make([]time.Duration, len(cs))
			ops := 0
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				for pass := 0; pass < 5; pass++ {
					for j, c := range cs {
						d, k := serialPass(b, c, n)
						total[j] += d
						if j == 0 {
							ops += k
						}
					}
				}
			}
			reportFleet(b, cs, total, ops)
		})
		b.Run(fmt.Sprintf("tenants=%d/parallel8", n), func(b *testing.B) {
			cs := fleetConfigs(b, e, 8, "card", "open", "ref", "shared")
			for _, c := range cs {
				parallelPass(b, c, n, 8*n) // warm every connection
			}
			total := make([]time.Duration, len(cs))
			ops := 5 * max(n, 200) // at least 1,000 reads, so small sizes measure something
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				for pass := 0; pass < 5; pass++ {
					for j, c := range cs {
						total[j] += parallelPass(b, c, n, ops/5)
					}
				}
			}
			reportFleet(b, cs, total, b.N*ops)
		})
	}
}

// BenchmarkFleetShift: the workload moves from one set of N tenants (A) to a
// disjoint one (B), one connection. Phase 1: A warmed by 6 passes, then 5
// passes measured. Phase 2: B's first pass (the shift itself), 11 more
// passes of warm-up, then 5 passes measured. PostgreSQL plans a prepared
// statement's first 5 executions for their arguments and may then switch to
// a generic plan, so phase 2 measures once the texts the hot set admitted
// during its first passes have run more than 5 times as prepared statements,
// like phase 1's. Reported per configuration: phase-1 and phase-2
// µs/op, phase2/phase1 (1.00: the hot set recovered), and the first pass
// after the shift.
func BenchmarkFleetShift(b *testing.B) {
	for _, n := range benchSizes(10) {
		b.Run(fmt.Sprintf("tenants=2x%d", n), func(b *testing.B) {
			e := newBenchEnv(b, 2*n, 1, 1)
			cs := fleetConfigs(b, e, 1, "card", "open", "ref")
			k := len(cs)
			run := func(offset int, passes int, total []time.Duration) {
				for pass := 0; pass < passes; pass++ {
					for j, c := range cs {
						t0 := time.Now()
						for i := 0; i < n; i++ {
							if err := c.read(c.db, offset+i); err != nil {
								b.Fatalf("%s: %v", c.name, err)
							}
						}
						total[j] += time.Since(t0)
					}
				}
			}
			discard := make([]time.Duration, k)
			p1, first, p2 := make([]time.Duration, k), make([]time.Duration, k), make([]time.Duration, k)
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				run(0, 6, discard) // warm A
				run(0, 5, p1)
				run(n, 1, first) // the shift
				run(n, 11, discard)
				run(n, 5, p2)
			}
			ops := float64(b.N * 5 * n)
			for j, c := range cs {
				b.ReportMetric(float64(p1[j].Microseconds())/ops, c.name+"-phase1-µs/op")
				b.ReportMetric(float64(p2[j].Microseconds())/ops, c.name+"-phase2-µs/op")
				b.ReportMetric(float64(p2[j])/float64(p1[j]), c.name+"-phase2/phase1")
				b.ReportMetric(float64(first[j].Microseconds())/float64(b.N*n), c.name+"-shift-µs/op")
			}
			b.ReportMetric(float64(p2[0].Nanoseconds())/ops, "ns/op")
		})
	}
}
