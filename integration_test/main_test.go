// Package integration_test runs tenantplugin end to end against a real
// PostgreSQL server: DATABASE_URL, or the local server. Every run creates a
// database of its own and drops it at the end.
package integration_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/internal/testdb"
	"github.com/gorm-tenancy/tenantplugin/tenanttest"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Shared model.
type Plan struct {
	ID   uint `gorm:"primaryKey"`
	Name string
}

// Tenant models. Every row carries the name of the tenant it was written
// for (Owner), so every read can check it got only its own tenant's rows.
type Author struct {
	ID      uint `gorm:"primaryKey"`
	Name    string
	Owner   string
	Profile *Profile
}

type Profile struct {
	ID       uint `gorm:"primaryKey"`
	AuthorID uint
	Bio      string
	Owner    string
}

type Poll struct {
	ID        uint `gorm:"primaryKey"`
	Question  string
	Owner     string
	AuthorID  *uint
	Author    *Author
	PlanID    *uint
	Plan      *Plan
	Choices   []Choice
	Tags      []Tag `gorm:"many2many:poll_tags"`
	DeletedAt gorm.DeletedAt
}

type Choice struct {
	ID     uint `gorm:"primaryKey"`
	PollID uint
	Text   string
	Votes  int
	Owner  string
}

type Tag struct {
	ID    uint `gorm:"primaryKey"`
	Name  string
	Owner string
}

var (
	server  *testdb.DB
	tenantN atomic.Int64
)

func TestMain(m *testing.M) {
	var err error
	server, err = testdb.Create("tenantplugin_test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := server.Drop(); err != nil {
		fmt.Fprintln(os.Stderr, "drop test database:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func newPlugin() *tenantplugin.Plugin { return testPlugin("public") }

// testPlugin declares the test models with shared schema shared.
func testPlugin(shared string, extra ...tenantplugin.Option) *tenantplugin.Plugin {
	return tenantplugin.New(append([]tenantplugin.Option{
		tenantplugin.WithSharedSchema(shared),
		tenantplugin.WithSharedModels(&Plan{}),
		tenantplugin.WithTenantModels(&Author{}, &Profile{}, &Poll{}, &Choice{}, &Tag{}),
	}, extra...)...)
}

// env is one plugin-enabled *gorm.DB on the run's database.
type env struct {
	t  testing.TB
	db *gorm.DB
	p  *tenantplugin.Plugin
	m  *tenantplugin.Migrator
}

func newEnv(t testing.TB, maxConns int) *env {
	t.Helper()
	db, err := server.Open(maxConns, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	p := newPlugin()
	require.NoError(t, db.Use(p))
	m := p.Migrator()
	require.NoError(t, m.MigrateShared(context.Background()))
	return &env{t: t, db: db, p: p, m: m}
}

// pluginDB opens d with the test plugin on a shared schema of its own,
// migrated, on a pool of maxConns; the pool is closed at cleanup.
func pluginDB(t testing.TB, d gorm.Dialector, maxConns int, sharedPrefix string) (*gorm.DB, *tenantplugin.Plugin, *tenantplugin.Migrator) {
	t.Helper()
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { sqlDB.Close() })
	sqlDB.SetMaxOpenConns(maxConns)
	p := testPlugin(fmt.Sprintf("%s_%d", sharedPrefix, sharedN.Add(1)))
	require.NoError(t, db.Use(p))
	m := p.Migrator()
	require.NoError(t, m.MigrateShared(context.Background()))
	return db, p, m
}

// tenant creates a new tenant with a unique name starting with prefix,
// dropped when the test ends (tenanttest.New).
func (e *env) tenant(prefix string) string {
	e.t.Helper()
	return tenanttest.New(e.t, e.m, tenanttest.WithPrefix(prefix)).Name
}

func (e *env) ctx(tenant string) context.Context {
	return tenantplugin.WithTenant(context.Background(), tenant)
}

// as returns a *gorm.DB for tenant.
func (e *env) as(tenant string) *gorm.DB { return e.db.WithContext(e.ctx(tenant)) }

// count counts rows of table in schema directly, bypassing the plugin.
func (e *env) count(schema, table string) int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.db.WithContext(context.Background()).
		Raw(fmt.Sprintf(`SELECT count(*) FROM %s.%s`, tenantplugin.QuoteIdentifier(schema), tenantplugin.QuoteIdentifier(table))).
		Scan(&n).Error)
	return n
}

// owners returns the distinct Owner values of table in schema, read directly.
func (e *env) owners(schema, table string) []string {
	e.t.Helper()
	var out []string
	require.NoError(e.t, e.db.WithContext(context.Background()).
		Raw(fmt.Sprintf(`SELECT DISTINCT owner FROM %s.%s ORDER BY 1`, tenantplugin.QuoteIdentifier(schema), tenantplugin.QuoteIdentifier(table))).
		Scan(&out).Error)
	return out
}
