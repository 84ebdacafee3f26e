package tenantplugin_test

import (
	"context"
	"fmt"

	"github.com/gorm-tenancy/tenantplugin"
)

func ExampleMigrator_CloneTenant() {
	ctx := context.Background()
	db := open()
	defer closeDB(db)
	plugin := tenantplugin.New(tenantplugin.WithSharedSchema("example_clone"), tenantplugin.WithTenantModels(&Poll{}))
	if err := db.Use(plugin); err != nil {
		panic(err)
	}
	m := plugin.Migrator()
	if err := m.MigrateShared(ctx); err != nil {
		panic(err)
	}
	// A template tenant holds what every new tenant starts with.
	if err := m.CreateTenant(ctx, "cl_template"); err != nil {
		panic(err)
	}
	db.WithContext(tenantplugin.WithTenant(ctx, "cl_template")).Create(&[]Poll{{Question: "Welcome!"}, {Question: "Try a poll"}})

	// Sign-up: a new tenant with the template's rows.
	if err := m.CloneTenant(ctx, "cl_template", "cl_acme", "polls.acme.example"); err != nil {
		panic(err)
	}
	acme := db.WithContext(tenantplugin.WithTenant(ctx, "cl_acme"))
	p := Poll{Question: "Acme's own"}
	acme.Create(&p)
	var n int64
	acme.Model(&Poll{}).Count(&n)
	fmt.Println(n, "polls; the new one has id", p.ID)
	report, err := m.MigrateTenants(ctx)
	fmt.Println(err, report.UpToDate, "up to date")
	// Output:
	// 3 polls; the new one has id 3
	// <nil> 2 up to date
}
