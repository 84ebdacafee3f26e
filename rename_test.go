package tenantplugin_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gorm-tenancy/tenantplugin"
)

func ExampleMigrator_RenameTenant() {
	ctx := context.Background()
	db := open()
	defer closeDB(db)
	plugin := tenantplugin.New(tenantplugin.WithSharedSchema("example_rename"), tenantplugin.WithTenantModels(&Poll{}))
	if err := db.Use(plugin); err != nil {
		panic(err)
	}
	m := plugin.Migrator()
	if err := m.MigrateShared(ctx); err != nil {
		panic(err)
	}
	if err := m.CreateTenant(ctx, "rn_thor", "polls.thor.example"); err != nil {
		panic(err)
	}
	db.WithContext(tenantplugin.WithTenant(ctx, "rn_thor")).Create(&Poll{Question: "Mjolnir?"})

	fmt.Println(m.RenameTenant(ctx, "rn_thor", "rn_asgard"))
	var polls []Poll
	db.WithContext(tenantplugin.WithTenant(ctx, "rn_asgard")).Find(&polls)
	fmt.Println(len(polls), polls[0].Question)
	fmt.Println(plugin.Directory().TenantForHost(ctx, "polls.thor.example"))

	err := m.RenameTenant(ctx, "rn_thor", "rn_loki") // gone
	fmt.Println(errors.Is(err, tenantplugin.ErrUnknownTenant))
	// Output:
	// <nil>
	// 1 Mjolnir?
	// rn_asgard <nil>
	// true
}
