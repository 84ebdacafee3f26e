package tenantplugin_test

import (
	"context"
	"fmt"

	"github.com/gorm-tenancy/tenantplugin"
)

func ExampleMigrator_TenantStats() {
	ctx := context.Background()
	db := open()
	defer closeDB(db)
	plugin := tenantplugin.New(tenantplugin.WithSharedSchema("example_stats"), tenantplugin.WithTenantModels(&Poll{}))
	if err := db.Use(plugin); err != nil {
		panic(err)
	}
	m := plugin.Migrator()
	if err := m.MigrateShared(ctx); err != nil {
		panic(err)
	}
	for _, t := range []string{"st_small", "st_big"} {
		if err := m.CreateTenant(ctx, t); err != nil {
			panic(err)
		}
	}
	big := db.WithContext(tenantplugin.WithTenant(ctx, "st_big"))
	big.Exec("INSERT INTO polls (question) SELECT repeat('?', 100) FROM generate_series(1, 1000)")
	big.Exec("ANALYZE polls") // row estimates come from ANALYZE or autovacuum

	stats, err := m.TenantStats(ctx) // one query, largest first
	if err != nil {
		panic(err)
	}
	for _, s := range stats {
		fmt.Println(s.Tenant, s.Tables, "table(s),", s.Rows, "rows, more than 100 kB:", s.TotalBytes() > 100<<10)
	}
	// Output:
	// st_big 1 table(s), 1000 rows, more than 100 kB: true
	// st_small 1 table(s), 0 rows, more than 100 kB: false
}
