package tenantplugin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/internal/testdb"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The examples run against a database of their own on the test server,
// created on first use: the package's unit specs run with no server at all.
var (
	exampleOnce sync.Once
	exampleDB   *testdb.DB
	exampleErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if exampleDB != nil {
		if err := exampleDB.Drop(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, "drop example database:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type Poll struct {
	ID       uint
	Question string
}

type Plan struct {
	ID   uint
	Name string
}

// open connects the way an application does.
func open() *gorm.DB {
	exampleOnce.Do(func() { exampleDB, exampleErr = testdb.Create("tenantplugin_example") })
	if exampleErr != nil {
		panic(exampleErr)
	}
	db, err := gorm.Open(tenantplugin.Open(exampleDB.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	return db
}

func Example() {
	ctx := context.Background()
	db := open()
	plugin := tenantplugin.New(
		tenantplugin.WithSharedSchema("example_shared"),
		tenantplugin.WithSharedModels(&Plan{}),
		tenantplugin.WithTenantModels(&Poll{}),
	)
	if err := db.Use(plugin); err != nil {
		panic(err)
	}
	m := plugin.Migrator()
	if _, err := m.Migrate(ctx); err != nil { // at start-up: shared schema, then every tenant
		panic(err)
	}
	for _, t := range []string{"thor", "potter"} {
		if err := m.CreateTenant(ctx, t); err != nil {
			panic(err)
		}
	}

	thor := tenantplugin.WithTenant(ctx, "thor")
	db.WithContext(thor).Create(&Poll{Question: "Mjolnir or Stormbreaker?"})

	var thorPolls, potterPolls []Poll
	db.WithContext(thor).Find(&thorPolls)
	db.WithContext(tenantplugin.WithTenant(ctx, "potter")).Find(&potterPolls)
	fmt.Println("thor:", len(thorPolls), "potter:", len(potterPolls))

	err := db.WithContext(ctx).Find(&thorPolls).Error // no tenant: fails closed
	fmt.Println(errors.Is(err, tenantplugin.ErrNoTenant))
	// Output:
	// thor: 1 potter: 0
	// true
}

func ExampleValidateName() {
	fmt.Println(tenantplugin.ValidateName("thor"))
	fmt.Println(tenantplugin.ValidateName("my-team")) // a subdomain label is a tenant name as it is
	fmt.Println(tenantplugin.ValidateName("my-team-"))
	fmt.Println(tenantplugin.ValidateName(`""";DROP TABLE canary;--`))
	fmt.Println(tenantplugin.ValidateName("pg_toast"))
	// Output:
	// <nil>
	// <nil>
	// tenantplugin: invalid tenant name "my-team-": it ends with a hyphen (as a DNS label may not)
	// tenantplugin: invalid tenant name "\"\"\";DROP TABLE canary;--": it has the character '"' at byte 0 (allowed: a-z, 0-9, _, -)
	// tenantplugin: invalid tenant name "pg_toast": names starting with pg_ are reserved by PostgreSQL
}

func ExamplePlugin_RunInTenant() {
	ctx := context.Background()
	db := open()
	plugin := tenantplugin.New(tenantplugin.WithSharedSchema("example_jobs"), tenantplugin.WithTenantModels(&Poll{}))
	if err := db.Use(plugin); err != nil {
		panic(err)
	}
	m := plugin.Migrator()
	if err := m.MigrateShared(ctx); err != nil {
		panic(err)
	}
	_ = m.CreateTenant(ctx, "job_tenant")

	// A job that arrived with {"tenant": "job_tenant"} in its payload.
	err := plugin.RunInTenant(ctx, "job_tenant", func(tx *gorm.DB) error {
		if err := tx.Create(&Poll{Question: "from a job"}).Error; err != nil {
			return err
		}
		var n int64
		// Raw SQL in the transaction resolves to the tenant's schema.
		if err := tx.Raw("SELECT count(*) FROM polls").Scan(&n).Error; err != nil {
			return err
		}
		fmt.Println("polls:", n)
		return nil
	})
	fmt.Println(err)
	fmt.Println(errors.Is(plugin.RunInTenant(ctx, "nobody", func(*gorm.DB) error { return nil }), tenantplugin.ErrUnknownTenant))
	// Output:
	// polls: 1
	// <nil>
	// true
}

func ExampleMigrator_MigrateTenants() {
	ctx := context.Background()
	db := open()
	plugin := tenantplugin.New(tenantplugin.WithSharedSchema("example_migrate"), tenantplugin.WithTenantModels(&Poll{}))
	if err := db.Use(plugin); err != nil {
		panic(err)
	}
	m := plugin.Migrator()
	if err := m.MigrateShared(ctx); err != nil {
		panic(err)
	}
	if _, err := m.CreateTenants(ctx, []string{"m_one", "m_two", "m_three"}); err != nil {
		panic(err)
	}
	report, err := m.MigrateTenants(ctx)
	fmt.Println(err, report.UpToDate, "up to date,", report.Migrated, "migrated")
	// Output:
	// <nil> 3 up to date, 0 migrated
}
