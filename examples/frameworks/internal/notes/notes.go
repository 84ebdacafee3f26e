// Package notes is the tiny tenant model and test setup the adapters'
// tests share.
package notes

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/internal/testdb"
	"gorm.io/gorm"
)

// Note is a tenant model: every tenant schema has its own notes table.
type Note struct {
	ID   uint   `gorm:"primaryKey" json:"id"`
	Text string `gorm:"not null" json:"text"`
}

// Base is the domain tenants are subdomains of in the tests:
// NAME.notes.test.
const Base = "notes.test"

// Env is a test package's database, plugin and migrator.
type Env struct {
	DB       *gorm.DB
	Plugin   *tenantplugin.Plugin
	Migrator *tenantplugin.Migrator
}

// Main runs a test package's tests (call it from TestMain) against a
// scratch database of their own on the test server (DATABASE_URL, or the
// local one), dropped at the end; env is set before the tests run.
func Main(m *testing.M, env *Env) {
	server, err := testdb.Create("tenantplugin_frameworks")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		db, err := server.Open(8, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			if s, err := db.DB(); err == nil {
				s.Close()
			}
		}()
		plugin := tenantplugin.New(tenantplugin.WithTenantModels(&Note{}))
		if err := db.Use(plugin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mig := plugin.Migrator()
		if err := mig.MigrateShared(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*env = Env{DB: db, Plugin: plugin, Migrator: mig}
		return m.Run()
	}()
	if err := server.Drop(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "drop test database:", err)
		code = 1
	}
	os.Exit(code)
}
