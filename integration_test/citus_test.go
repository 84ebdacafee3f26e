package integration_test

// Tests and benchmarks against a Citus coordinator with workers and
// schema-based sharding on. They run when TENANTPLUGIN_CITUS_URL names a
// database on the coordinator (with the citus extension and the workers
// added) and report themselves skipped otherwise. They work in the database
// they are given: every test makes a shared schema and tenants of its own,
// with a random suffix, and removes them at the end (and checks that none of
// its schemas is left on the coordinator or a worker).
//
//	TENANTPLUGIN_CITUS_URL='postgres://postgres@127.0.0.1:9700/citus_test?sslmode=disable' \
//	  go test -race -count=1 -run Citus -v ./integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/examples/polls/app"
	"github.com/gorm-tenancy/tenantplugin/tenantcmd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// citusURL returns TENANTPLUGIN_CITUS_URL or skips the test.
func citusURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TENANTPLUGIN_CITUS_URL")
	if u == "" {
		t.Skip("TENANTPLUGIN_CITUS_URL is not set: no Citus coordinator to test against")
	}
	return u
}

var citusN atomic.Int64

// CitusNote is a tenant model with indexes (which a Citus worker refuses in
// a multi-statement string) and a foreign key to the shared Plan.
type CitusNote struct {
	ID     uint   `gorm:"primaryKey"`
	Body   string `gorm:"index"`
	Code   string `gorm:"uniqueIndex"`
	PlanID *uint
	Plan   *Plan
	Owner  string
}

// citusPlugin declares the test models and CitusNote, with shared schema
// shared.
func citusPlugin(shared string) *tenantplugin.Plugin {
	return testPlugin(shared, tenantplugin.WithTenantModels(&CitusNote{}))
}

// citusTenantTables are the tables of a tenant of citusPlugin.
var citusTenantTables = append([]string{"citus_notes"}, tenantTables...)

// citusSuffix is this run's random suffix: names stay unique when several
// runs share one Citus database.
var citusSuffix = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// citusEnv is a plugin-enabled *gorm.DB on the Citus coordinator, with a
// shared schema of its own.
type citusEnv struct {
	*env
	url    string
	shared string
	raw    *sql.DB // plain connection pool, no plugin
}

// openCitus opens GORM on the coordinator the way the README recommends;
// params are added to the DSN (pgx passes unknown ones as settings).
func openCitus(t testing.TB, url string, maxConns int, params string) *gorm.DB {
	t.Helper()
	dsn := url
	if params != "" {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + params
	}
	db, err := gorm.Open(tenantplugin.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	sqlDB.SetMaxOpenConns(maxConns)
	t.Cleanup(func() { sqlDB.Close() })
	return db
}

// newCitusEnv migrates the test models' shared schema on the coordinator.
// Cleanup drops every schema whose name ends with the env's shared schema
// name (its tenants are named prefix_<shared>), then checks that none is
// left on any node.
func newCitusEnv(t *testing.T, opts ...tenantplugin.MigratorOption) *citusEnv {
	t.Helper()
	url := citusURL(t)
	shared := fmt.Sprintf("cs%d_%s", citusN.Add(1), citusSuffix)
	raw, err := sql.Open("pgx", url)
	require.NoError(t, err)
	db := openCitus(t, url, 8, "")
	p := citusPlugin(shared)
	require.NoError(t, db.Use(p))
	m := p.Migrator(opts...)
	ce := &citusEnv{env: &env{t: t, db: db, p: p, m: m}, url: url, shared: shared, raw: raw}
	t.Cleanup(func() { citusCleanup(t, raw, m, shared); raw.Close() })
	require.NoError(t, m.MigrateShared(context.Background()))
	return ce
}

// name returns a new tenant name ending with the env's suffix.
func (ce *citusEnv) name(prefix string) string {
	return fmt.Sprintf("%s%d_%s", prefix, citusN.Add(1), ce.shared)
}

// citusSchemasLeft lists the schemas whose name ends with suffix still
// present on the coordinator and on each worker.
func citusSchemasLeft(t testing.TB, raw *sql.DB, suffix string) []string {
	t.Helper()
	pattern := "%" + suffix
	var left []string
	rows, err := raw.Query(`SELECT 'coordinator:' || nspname FROM pg_namespace WHERE nspname LIKE $1`, pattern)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		left = append(left, s)
	}
	require.NoError(t, rows.Close())
	rows, err = raw.Query(`SELECT nodename || ':' || nodeport || ':' || result FROM run_command_on_workers(
  format($q$SELECT coalesce(string_agg(nspname, ','), '') FROM pg_namespace WHERE nspname LIKE %L$q$, $1::text))`, pattern)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		if !strings.HasSuffix(s, ":") {
			left = append(left, s)
		}
	}
	require.NoError(t, rows.Close())
	return left
}

// citusCleanup drops every tenant m knows, then every schema whose name
// ends with shared (tenants the test named that way, then the shared schema
// itself), and checks that none is left on any node.
func citusCleanup(t testing.TB, raw *sql.DB, m *tenantplugin.Migrator, shared string) {
	ctx := context.Background()
	names, _ := m.Tenants(ctx)
	for _, n := range names {
		if err := m.DropTenant(ctx, n); err != nil {
			t.Errorf("cleanup: drop tenant %s: %v", n, err)
		}
	}
	rows, err := raw.Query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 ORDER BY nspname = $2, nspname`, "%"+shared, shared)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	var schemas []string
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		schemas = append(schemas, s)
	}
	rows.Close()
	for _, s := range schemas { // tenants first, the shared schema last
		if _, err := raw.Exec("DROP SCHEMA " + tenantplugin.QuoteIdentifier(s) + " CASCADE"); err != nil {
			t.Errorf("cleanup: drop schema %s: %v", s, err)
		}
	}
	if left := citusSchemasLeft(t, raw, shared); len(left) > 0 {
		t.Errorf("cleanup left schemas behind: %v", left)
	}
}

// node returns the worker holding tenant's tables, checked against
// citus_shards: every shard of the tenant is on that one node.
func (ce *citusEnv) node(tenant string) string {
	ce.t.Helper()
	node, err := ce.m.TenantNode(context.Background(), tenant)
	require.NoError(ce.t, err)
	var nodes []string
	rows, err := ce.raw.Query(`SELECT DISTINCT s.nodename || ':' || s.nodeport FROM pg_catalog.citus_shards s
  JOIN pg_class c ON c.oid = s.table_name WHERE s.citus_table_type = 'schema' AND c.relnamespace = $1::regnamespace`, tenantplugin.QuoteIdentifier(tenant))
	require.NoError(ce.t, err)
	for rows.Next() {
		var s string
		require.NoError(ce.t, rows.Scan(&s))
		nodes = append(nodes, s)
	}
	require.NoError(ce.t, rows.Close())
	if node == "" {
		require.Empty(ce.t, nodes, "tenant %s: TenantNode says not distributed, citus_shards says %v", tenant, nodes)
	} else {
		require.Equal(ce.t, []string{node}, nodes, "tenant %s: all shards on one node", tenant)
	}
	return node
}

// distributed reports whether schema is a Citus distributed schema.
func (ce *citusEnv) distributed(schema string) bool {
	ce.t.Helper()
	var ok bool
	require.NoError(ce.t, ce.raw.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_dist_schema WHERE schemaid = $1::regnamespace)`,
		tenantplugin.QuoteIdentifier(schema)).Scan(&ok))
	return ok
}

// tableKind returns Citus's kind of a table: reference, schema,
// distributed, local (a Citus local table) or "" (a plain table).
func (ce *citusEnv) tableKind(qualified string) string {
	ce.t.Helper()
	var kind sql.NullString
	require.NoError(ce.t, ce.raw.QueryRow(`SELECT (SELECT citus_table_type FROM public.citus_tables WHERE table_name = $1::regclass)`, qualified).Scan(&kind))
	return kind.String
}

func (ce *citusEnv) workers() []string {
	ce.t.Helper()
	rows, err := ce.raw.Query(`SELECT node_name || ':' || node_port FROM citus_get_active_worker_nodes() ORDER BY 1`)
	require.NoError(ce.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(ce.t, rows.Scan(&s))
		out = append(out, s)
	}
	require.GreaterOrEqual(ce.t, len(out), 2, "the Citus tests need a coordinator with at least two workers")
	return out
}

// rows returns every row of every tenant table of schema as text, read
// directly (not through the plugin).
func (ce *citusEnv) rows(schema string) string {
	ce.t.Helper()
	out := ""
	for _, table := range citusTenantTables {
		var s sql.NullString
		q := fmt.Sprintf(`SELECT json_agg(x ORDER BY x::text)::text FROM %s.%s x`,
			tenantplugin.QuoteIdentifier(schema), tenantplugin.QuoteIdentifier(table))
		require.NoError(ce.t, ce.raw.QueryRow(q).Scan(&s))
		out += table + ":" + s.String + "\n"
	}
	return out
}

func (ce *citusEnv) plan() *Plan {
	p := &Plan{Name: "plan of " + ce.shared}
	require.NoError(ce.t, ce.db.WithContext(tenantplugin.SharedOnly(context.Background())).Create(p).Error)
	return p
}

// TestCitusSharedSchemaAndReferenceTables: MigrateShared on Citus keeps the
// shared schema a plain schema, makes the registry and the shared table a
// tenant model references reference tables, and a tenant's foreign key to
// the shared table is created and enforced.
func TestCitusSharedSchemaAndReferenceTables(t *testing.T) {
	ce := newCitusEnv(t)
	var sharding string
	require.NoError(t, ce.raw.QueryRow("SHOW citus.enable_schema_based_sharding").Scan(&sharding))
	require.Equal(t, "on", sharding, "the Citus tests expect schema-based sharding on")
	assert.False(t, ce.distributed(ce.shared), "the shared schema must not be a distributed schema")
	for _, table := range []string{"tenantplugin_tenants", "tenantplugin_domains", "plans"} {
		assert.Equal(t, "reference", ce.tableKind(ce.shared+"."+table), table)
	}
	// Migrating again changes nothing and does not fail.
	require.NoError(t, ce.m.MigrateShared(context.Background()))

	plan := ce.plan()
	tenant := ce.name("ref")
	require.NoError(t, ce.m.CreateTenant(context.Background(), tenant))
	require.True(t, ce.distributed(tenant))
	var fk string
	require.NoError(t, ce.raw.QueryRow(`SELECT pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = $1::regclass AND contype = 'f' AND confrelid = $2::regclass`, tenant+".polls", ce.shared+".plans").Scan(&fk))
	assert.Contains(t, fk, "REFERENCES "+ce.shared+".plans(id)")
	tx := ce.as(tenant)
	require.NoError(t, tx.Create(&Poll{Question: "ok", Owner: tenant, PlanID: &plan.ID}).Error)
	missing := plan.ID + 1000
	err := tx.Create(&Poll{Question: "dangling", Owner: tenant, PlanID: &missing}).Error
	require.Error(t, err, "the foreign key to the shared reference table is enforced")
	assert.Contains(t, err.Error(), "23503")
	// The shared table is readable in a join with the tenant's table.
	var polls []Poll
	require.NoError(t, tx.Joins("Plan").Find(&polls).Error)
	require.Len(t, polls, 1)
	assert.Equal(t, plan.Name, polls[0].Plan.Name)
}

// TestCitusSharedSchemaUndistributed: a shared schema an earlier run let
// become a distributed schema is made a plain schema again.
func TestCitusSharedSchemaUndistributed(t *testing.T) {
	url := citusURL(t)
	shared := fmt.Sprintf("csu%d_%s", citusN.Add(1), citusSuffix)
	raw, err := sql.Open("pgx", url)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := raw.Exec("DROP SCHEMA IF EXISTS " + shared + " CASCADE")
		assert.NoError(t, err)
		raw.Close()
	})
	_, err = raw.Exec("SET citus.enable_schema_based_sharding = on; CREATE SCHEMA " + shared + "; CREATE TABLE " + shared + ".plans (id bigserial PRIMARY KEY, name text)")
	require.NoError(t, err)
	var distributed bool
	require.NoError(t, raw.QueryRow("SELECT EXISTS (SELECT 1 FROM pg_dist_schema WHERE schemaid = $1::regnamespace)", shared).Scan(&distributed))
	require.True(t, distributed, "setup: the schema is distributed")

	db := openCitus(t, url, 2, "")
	p := testPlugin(shared)
	require.NoError(t, db.Use(p))
	require.NoError(t, p.Migrator().MigrateShared(context.Background()))
	require.NoError(t, raw.QueryRow("SELECT EXISTS (SELECT 1 FROM pg_dist_schema WHERE schemaid = $1::regnamespace)", shared).Scan(&distributed))
	assert.False(t, distributed, "MigrateShared undistributes the shared schema")
	var kind string
	require.NoError(t, raw.QueryRow("SELECT citus_table_type FROM public.citus_tables WHERE table_name = $1::regclass", shared+".plans").Scan(&kind))
	assert.Equal(t, "reference", kind)
}

// TestCitusCreateTenantBothPaths creates tenants by replaying the captured
// DDL and by AutoMigrate: both are distributed schemas holding every tenant
// table on one worker, with the same catalog.
func TestCitusCreateTenantBothPaths(t *testing.T) {
	migs := []*gormigrate.Migration{addNoteColumn("001_note")}
	seed := tenantplugin.WithSeed(func(tx *gorm.DB) error {
		name, _ := tenantplugin.FromContext(tx.Statement.Context)
		return tx.Create(&Tag{Name: "seeded", Owner: name}).Error
	})
	ce := newCitusEnv(t, tenantplugin.WithMigrations(migs...), seed)
	slow := ce.p.Migrator(tenantplugin.WithMigrations(migs...), seed, tenantplugin.WithAutoMigrateCreate())
	ctx := context.Background()
	fast, auto := ce.name("fast"), ce.name("auto")
	require.NoError(t, ce.m.CreateTenant(ctx, fast, fast+".example"))
	require.NoError(t, slow.CreateTenant(ctx, auto))
	assert.Equal(t, ce.catalog(auto), ce.catalog(fast))
	for _, tenant := range []string{fast, auto} {
		require.True(t, ce.distributed(tenant), tenant)
		assert.NotEmpty(t, ce.node(tenant), tenant)
		var tables []string
		rows, err := ce.raw.Query(`SELECT c.relname::text FROM public.citus_tables t JOIN pg_class c ON c.oid = t.table_name
 WHERE t.citus_table_type = 'schema' AND c.relnamespace = $1::regnamespace ORDER BY 1`, tenantplugin.QuoteIdentifier(tenant))
		require.NoError(t, err)
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			tables = append(tables, s)
		}
		require.NoError(t, rows.Close())
		want := append(append([]string{}, citusTenantTables...), "tenantplugin_migrations")
		sort.Strings(want)
		assert.Equal(t, want, tables, "every tenant table is a table of the distributed schema")
		assert.Equal(t, []string{tenant}, ce.owners(tenant, "tags"), "seeded in its creation transaction")
		st, err := ce.m.MigrateTenant(ctx, tenant)
		require.NoError(t, err)
		assert.Equal(t, tenantplugin.StateUpToDate, st)
		require.NoError(t, ce.as(tenant).Exec("INSERT INTO polls (question, owner, note) VALUES ('q', ?, 'n')", tenant).Error)
	}
	// The domain given at creation resolves.
	got, err := ce.p.Directory().TenantForHost(ctx, fast+".example")
	require.NoError(t, err)
	assert.Equal(t, fast, got)
	// Bulk creation too.
	names := []string{ce.name("bulk"), ce.name("bulk"), ce.name("bulk")}
	rep, err := ce.m.CreateTenants(ctx, names)
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Migrated, rep.String())
}

// TestCitusPlacementOnWorkers: tenants created one after another land on
// more than one worker, each tenant whole on one, also when each is created
// by a Migrator of its own (as by one "tenants create" process each, where
// every Migrator captures the DDL anew).
func TestCitusPlacementOnWorkers(t *testing.T) {
	ce := newCitusEnv(t)
	workers := ce.workers()
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		tenant := ce.name("place")
		require.NoError(t, ce.p.Migrator().CreateTenant(context.Background(), tenant))
		node := ce.node(tenant)
		require.Contains(t, workers, node)
		seen[node]++
	}
	assert.GreaterOrEqual(t, len(seen), 2, "tenants on more than one worker: %v", seen)
	t.Logf("placement of 4 tenants: %v", seen)
}

// TestCitusRoutingEveryStatement runs every statement kind through the
// coordinator for a tenant whose tables are on a worker.
func TestCitusRoutingEveryStatement(t *testing.T) {
	ce := newCitusEnv(t)
	ctx := context.Background()
	tenant, other := ce.name("route"), ce.name("route")
	require.NoError(t, ce.m.CreateTenant(ctx, tenant))
	require.NoError(t, ce.m.CreateTenant(ctx, other))
	plan := ce.plan()
	ce.seed(tenant, plan)
	ce.seed(other, plan)
	tx := ce.as(tenant)

	// Find, First, Count, Pluck.
	var polls []Poll
	require.NoError(t, tx.Order("id").Find(&polls).Error)
	require.Len(t, polls, 3)
	allEqual(t, tenant, ownersOf(t, polls, func(p Poll) string { return p.Owner }))
	var first Poll
	require.NoError(t, tx.First(&first).Error)
	assert.Equal(t, "q1", first.Question)
	var n int64
	require.NoError(t, tx.Model(&Choice{}).Count(&n).Error)
	assert.EqualValues(t, 6, n)
	var questions []string
	require.NoError(t, tx.Model(&Poll{}).Order("question").Pluck("question", &questions).Error)
	assert.Equal(t, []string{"q1", "q2", "q3"}, questions)

	// Joins: tenant to tenant, tenant to the shared reference table.
	var joined []Poll
	require.NoError(t, tx.Joins("Author").Joins("Plan").Order("polls.id").Find(&joined).Error)
	require.Len(t, joined, 3)
	assert.Equal(t, "ann", joined[0].Author.Name)
	assert.Equal(t, tenant, joined[0].Author.Owner)
	assert.Equal(t, plan.Name, joined[0].Plan.Name)
	var rawJoin []struct {
		Question string
		Text     string
	}
	require.NoError(t, tx.Table("polls").Select("polls.question, choices.text").
		Joins("JOIN choices ON choices.poll_id = polls.id").Where("choices.owner = ?", tenant).Order("polls.id, choices.id").Scan(&rawJoin).Error)
	assert.Len(t, rawJoin, 6)

	// A model with indexes and a foreign key to the shared table.
	require.NoError(t, tx.Create(&CitusNote{Body: "b", Code: "c1", PlanID: &plan.ID, Owner: tenant}).Error)
	var note CitusNote
	require.NoError(t, tx.Joins("Plan").Where("code = ?", "c1").Take(&note).Error)
	assert.Equal(t, plan.Name, note.Plan.Name)
	err := tx.Create(&CitusNote{Body: "b", Code: "c1", Owner: tenant}).Error
	require.Error(t, err, "the unique index holds on the worker")
	assert.Contains(t, err.Error(), "23505")

	// Preload, nested, and many2many.
	var authors []Author
	require.NoError(t, tx.Preload("Profile").Find(&authors).Error)
	require.Len(t, authors, 1)
	assert.Equal(t, "bio of "+tenant, authors[0].Profile.Bio)
	var withAll []Poll
	require.NoError(t, tx.Preload("Choices").Preload("Tags").Preload("Author.Profile").Preload("Plan").Order("id").Find(&withAll).Error)
	require.Len(t, withAll, 3)
	for _, p := range withAll {
		require.Len(t, p.Choices, 2)
		require.Len(t, p.Tags, 1)
		assert.Equal(t, tenant, p.Tags[0].Owner)
		assert.Equal(t, tenant, p.Author.Profile.Owner)
		assert.Equal(t, plan.ID, p.Plan.ID)
	}
	var tags []Tag
	require.NoError(t, tx.Model(&withAll[0]).Association("Tags").Find(&tags))
	require.Len(t, tags, 1)

	// Update, Updates, upsert, Delete (soft and hard).
	require.NoError(t, tx.Model(&Choice{}).Where("text = ?", "yes").Update("votes", gorm.Expr("votes + 1")).Error)
	require.NoError(t, tx.Model(&first).Updates(Poll{Question: "q1 edited"}).Error)
	require.NoError(t, tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoUpdates: clause.AssignmentColumns([]string{"name"})}).
		Create(&Tag{ID: tags[0].ID, Name: "upserted", Owner: tenant}).Error)
	require.NoError(t, tx.Delete(&Poll{}, withAll[2].ID).Error)
	require.NoError(t, tx.Unscoped().Where("poll_id = ?", withAll[2].ID).Delete(&Choice{}).Error)
	var votes int64
	require.NoError(t, tx.Model(&Choice{}).Select("coalesce(sum(votes), 0)").Scan(&votes).Error)
	assert.EqualValues(t, 2, votes, "3 yes choices got a vote, one of them deleted")
	var q string
	require.NoError(t, tx.Model(&Poll{}).Where("id = ?", first.ID).Pluck("question", &[]string{}).Error)
	require.NoError(t, tx.Raw("SELECT question FROM polls WHERE id = ?", first.ID).Scan(&q).Error)
	assert.Equal(t, "q1 edited", q)
	require.NoError(t, tx.Model(&Poll{}).Count(&n).Error)
	assert.EqualValues(t, 2, n, "soft-deleted poll hidden")
	require.NoError(t, tx.Unscoped().Model(&Poll{}).Count(&n).Error)
	assert.EqualValues(t, 3, n)

	// Raw: Exec, Raw, Row, Rows, in and out of a transaction, RunInTenant.
	require.NoError(t, tx.Exec("INSERT INTO tags (name, owner) VALUES (?, current_schema())", "raw").Error)
	var owner string
	require.NoError(t, tx.Raw("SELECT owner FROM tags WHERE name = ?", "raw").Scan(&owner).Error)
	assert.Equal(t, tenant, owner)
	var schema string
	require.NoError(t, tx.Raw("SELECT current_schema()").Row().Scan(&schema))
	var rows *sql.Rows
	assert.Equal(t, tenant, schema)
	rows, err = tx.Raw("SELECT DISTINCT owner FROM choices").Rows()
	require.NoError(t, err)
	var owners []string
	for rows.Next() {
		var o string
		require.NoError(t, rows.Scan(&o))
		owners = append(owners, o)
	}
	require.NoError(t, rows.Close())
	assert.Equal(t, []string{tenant}, owners)
	require.NoError(t, tx.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("UPDATE tags SET name = 'in tx' WHERE name = 'raw'").Error; err != nil {
			return err
		}
		return tx.Raw("SELECT count(*) FROM tags WHERE name = 'in tx'").Scan(&n).Error
	}))
	assert.EqualValues(t, 1, n)
	require.NoError(t, ce.p.RunInTenant(ctx, tenant, func(tx *gorm.DB) error {
		if err := tx.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
			return err
		}
		return tx.Create(&Tag{Name: "job", Owner: tenant}).Error
	}))
	assert.Equal(t, tenant, schema)

	// The other tenant was not touched.
	assert.Equal(t, []string{other}, ce.owners(other, "tags"))
	assert.EqualValues(t, 3, ce.count(other, "polls"))
	assert.EqualValues(t, 3, ce.count(other, "tags"))
	var otherVotes int64
	require.NoError(t, ce.as(other).Model(&Choice{}).Select("coalesce(sum(votes), 0)").Scan(&otherVotes).Error)
	assert.EqualValues(t, 0, otherVotes)
	// Without a tenant, nothing is sent.
	require.ErrorIs(t, ce.db.WithContext(ctx).Find(&[]Poll{}).Error, tenantplugin.ErrNoTenant)
}

// TestCitusMigrateAllNewColumn: a new migration adding a column reaches
// every tenant on every worker; the next run finds all up to date.
func TestCitusMigrateAllNewColumn(t *testing.T) {
	ce := newCitusEnv(t)
	ctx := context.Background()
	names := []string{ce.name("mig"), ce.name("mig"), ce.name("mig"), ce.name("mig")}
	_, err := ce.m.CreateTenants(ctx, names)
	require.NoError(t, err)
	nodes := map[string]bool{}
	for _, n := range names {
		nodes[ce.node(n)] = true
	}
	assert.GreaterOrEqual(t, len(nodes), 2, "tenants on several workers")
	m := ce.p.Migrator(tenantplugin.WithMigrations(addNoteColumn("001_note")))
	rep, err := m.Migrate(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(names), rep.Migrated, rep.String())
	for _, n := range names {
		require.NoError(t, ce.as(n).Exec("INSERT INTO polls (question, owner, note) VALUES ('with note', ?, ?)", n, "note of "+n).Error)
		var note string
		require.NoError(t, ce.as(n).Raw("SELECT note FROM polls WHERE question = 'with note'").Scan(&note).Error)
		assert.Equal(t, "note of "+n, note)
	}
	rep, err = m.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(names), rep.UpToDate, rep.String())

	// A changed model (a new field with an index): AutoMigrate in every
	// tenant, through the coordinator, one statement at a time.
	db2 := openCitus(t, ce.url, 4, "")
	p2 := testPlugin(ce.shared, tenantplugin.WithTenantModels(&CitusNoteV2{}))
	require.NoError(t, db2.Use(p2))
	m2 := p2.Migrator(tenantplugin.WithMigrations(addNoteColumn("001_note")))
	rep, err = m2.Migrate(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(names), rep.Migrated, rep.String())
	for _, n := range names {
		require.NoError(t, db2.WithContext(tenantplugin.WithTenant(ctx, n)).Create(&CitusNoteV2{Body: "v2", Code: "v2", Color: "red", Owner: n}).Error)
		var colors []string
		require.NoError(t, db2.WithContext(tenantplugin.WithTenant(ctx, n)).Model(&CitusNoteV2{}).Where("color = ?", "red").Pluck("color", &colors).Error)
		assert.Equal(t, []string{"red"}, colors)
		var idx int
		require.NoError(t, ce.raw.QueryRow(`SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'idx_citus_notes_color'`, n).Scan(&idx))
		assert.Equal(t, 1, idx, n)
	}
	rep, err = m2.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(names), rep.UpToDate, rep.String())
}

// CitusNoteV2 is CitusNote with a new indexed field.
type CitusNoteV2 struct {
	ID     uint   `gorm:"primaryKey"`
	Body   string `gorm:"index"`
	Code   string `gorm:"uniqueIndex"`
	Color  string `gorm:"index"`
	PlanID *uint
	Plan   *Plan
	Owner  string
}

func (CitusNoteV2) TableName() string { return "citus_notes" }

// TestCitusDropTenant: the schema and its shards are gone from every node.
func TestCitusDropTenant(t *testing.T) {
	ce := newCitusEnv(t)
	ctx := context.Background()
	tenant := ce.name("drop")
	require.NoError(t, ce.m.CreateTenant(ctx, tenant))
	require.NotEmpty(t, ce.node(tenant))
	ce.seed(tenant, ce.plan())
	require.NoError(t, ce.m.DropTenant(ctx, tenant))
	assert.False(t, ce.schemaExists(tenant))
	var shards int
	require.NoError(t, ce.raw.QueryRow(`SELECT count(*) FROM pg_catalog.citus_shards WHERE table_name::text LIKE $1 OR table_name::text LIKE $2`,
		tenant+".%", `"`+tenant+`".%`).Scan(&shards))
	assert.Zero(t, shards)
	var onWorkers string
	require.NoError(t, ce.raw.QueryRow(`SELECT string_agg(result, ',') FROM run_command_on_workers(
  format('SELECT count(*) FROM pg_namespace WHERE nspname = %L', $1::text))`, tenant).Scan(&onWorkers))
	assert.Equal(t, "0,0", onWorkers)
	names, err := ce.m.Tenants(ctx)
	require.NoError(t, err)
	assert.NotContains(t, names, tenant)
	require.ErrorIs(t, ce.m.DropTenant(ctx, tenant), tenantplugin.ErrUnknownTenant)
}

// TestCitusDistributeAndMove: a tenant created while schema-based sharding
// was off stays on the coordinator until distributed; then it moves between
// workers, with its rows; the commands do the same.
func TestCitusDistributeAndMove(t *testing.T) {
	ce := newCitusEnv(t)
	ctx := context.Background()
	workers := ce.workers()

	// A pool whose sessions have schema-based sharding off.
	off := openCitus(t, ce.url, 2, "citus.enable_schema_based_sharding=off")
	p := citusPlugin(ce.shared)
	require.NoError(t, off.Use(p))
	offM := p.Migrator()
	local := ce.name("local")
	require.NoError(t, offM.CreateTenant(ctx, local))
	require.False(t, ce.distributed(local), "created with sharding off: a plain schema on the coordinator")
	assert.Equal(t, "", ce.node(local))
	ce.seed(local, ce.plan())
	before := ce.rows(local)

	_, err := ce.m.MoveTenant(ctx, local, workers[0])
	require.Error(t, err, "an undistributed tenant cannot move")
	assert.Contains(t, err.Error(), "not a distributed schema")

	rep, err := ce.m.DistributeTenants(ctx, []string{local})
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Migrated, rep.String())
	require.True(t, ce.distributed(local))
	from := ce.node(local)
	require.Contains(t, workers, from)
	assert.Equal(t, before, ce.rows(local), "rows kept")
	rep, err = ce.m.DistributeTenants(ctx, []string{local})
	require.NoError(t, err)
	assert.Equal(t, 1, rep.UpToDate, "already distributed: %s", rep)

	to := workers[0]
	if to == from {
		to = workers[1]
	}
	st, err := ce.m.MoveTenant(ctx, local, to)
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateDone, st)
	assert.Equal(t, to, ce.node(local))
	assert.Equal(t, before, ce.rows(local), "rows moved with the tenant")
	st, err = ce.m.MoveTenant(ctx, local, to)
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateUpToDate, st, "already there")
	require.NoError(t, ce.as(local).Create(&Tag{Name: "after move", Owner: local}).Error)

	// Bad input is refused with clear errors.
	_, err = ce.m.MoveTenant(ctx, local, "nowhere")
	assert.ErrorContains(t, err, "HOST:PORT")
	_, err = ce.m.MoveTenant(ctx, ce.name("ghost"), to)
	assert.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	_, err = ce.m.MoveTenant(ctx, local, "127.0.0.1:1")
	assert.Error(t, err)
	assert.Equal(t, to, ce.node(local), "a failed move leaves the tenant where it was")

	// The commands.
	var out bytes.Buffer
	cmds := &tenantcmd.Commands{Migrator: ce.m, Out: &out}
	local2 := ce.name("local-two")
	require.NoError(t, offM.CreateTenant(ctx, local2))
	require.False(t, ce.distributed(local2))
	require.NoError(t, cmds.Run(ctx, []string{"tenants", "distribute"}))
	assert.Contains(t, out.String(), "distributed 1")
	require.True(t, ce.distributed(local2))
	from2 := ce.node(local2)
	to2 := workers[0]
	if to2 == from2 {
		to2 = workers[1]
	}
	out.Reset()
	require.NoError(t, cmds.Run(ctx, []string{"tenants", "move", local2, "--node", to2}))
	assert.Contains(t, out.String(), "moved tenant "+local2+" to "+to2)
	assert.Equal(t, to2, ce.node(local2))
	err = cmds.Run(ctx, []string{"tenants", "move", local2})
	assert.ErrorIs(t, err, tenantcmd.ErrUsage)
}

// TestCitusIsolationAcrossWorkers: two tenants on different workers see
// only their own rows, whichever way they read.
func TestCitusIsolationAcrossWorkers(t *testing.T) {
	ce := newCitusEnv(t)
	ctx := context.Background()
	workers := ce.workers()
	a, b := ce.name("iso"), ce.name("iso-hyphen") // names may hold hyphens
	require.NoError(t, ce.m.CreateTenant(ctx, a))
	require.NoError(t, ce.m.CreateTenant(ctx, b))
	if ce.node(a) == ce.node(b) { // make sure they are apart
		to := workers[0]
		if to == ce.node(a) {
			to = workers[1]
		}
		_, err := ce.m.MoveTenant(ctx, b, to)
		require.NoError(t, err)
	}
	require.NotEqual(t, ce.node(a), ce.node(b))
	plan := ce.plan()
	ce.seed(a, plan)
	ce.seed(b, plan)
	require.NoError(t, ce.as(b).Create(&Tag{Name: "only b", Owner: b}).Error)
	for _, tenant := range []string{a, b} {
		tx := ce.as(tenant)
		var polls []Poll
		require.NoError(t, tx.Preload("Choices").Preload("Tags").Find(&polls).Error)
		require.Len(t, polls, 3)
		for _, p := range polls {
			assert.Equal(t, tenant, p.Owner)
			for _, c := range p.Choices {
				assert.Equal(t, tenant, c.Owner)
			}
		}
		var owners []string
		require.NoError(t, tx.Raw("SELECT DISTINCT owner FROM tags").Scan(&owners).Error)
		assert.Equal(t, []string{tenant}, owners)
		var schema string
		require.NoError(t, tx.Raw("SELECT current_schema()").Scan(&schema).Error)
		assert.Equal(t, tenant, schema)
	}
	var n int64
	require.NoError(t, ce.as(a).Model(&Tag{}).Where("name = ?", "only b").Count(&n).Error)
	assert.Zero(t, n)
	assert.EqualValues(t, 4, ce.count(b, "tags"))
	assert.EqualValues(t, 3, ce.count(a, "tags"))
	// Concurrent traffic for both, on one pool.
	errs := make(chan error, 2)
	for _, tenant := range []string{a, b} {
		go func() {
			for i := 0; i < 30; i++ {
				var ps []Poll
				if err := ce.as(tenant).Find(&ps).Error; err != nil {
					errs <- err
					return
				}
				for _, p := range ps {
					if p.Owner != tenant {
						errs <- fmt.Errorf("tenant %s read a row of %s", tenant, p.Owner)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		require.NoError(t, <-errs)
	}
}

// TestCitusScript: scripts holding CREATE INDEX and ALTER TABLE, which a
// worker refuses in one multi-statement string, run through ExecScript and
// the sql command in every tenant.
func TestCitusScript(t *testing.T) {
	ce := newCitusEnv(t)
	ctx := context.Background()
	a, b := ce.name("sql"), ce.name("sql")
	require.NoError(t, ce.m.CreateTenant(ctx, a))
	require.NoError(t, ce.m.CreateTenant(ctx, b))
	script := `-- a migration file
CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL, tag_id bigint);
CREATE INDEX notes_body ON notes (body);
ALTER TABLE notes ADD CONSTRAINT notes_tag FOREIGN KEY (tag_id) REFERENCES tags (id);
INSERT INTO notes (body) VALUES ('semi;colon'), ($$dollar; quoted$$), (current_schema());
`
	file := filepath.Join(t.TempDir(), "notes.sql")
	require.NoError(t, os.WriteFile(file, []byte(script), 0o644))
	var out bytes.Buffer
	cmds := &tenantcmd.Commands{Migrator: ce.m, Out: &out}
	require.NoError(t, cmds.Run(ctx, []string{"tenants", "sql", file, "--all"}))
	assert.Contains(t, out.String(), "2 tenants: 2 done, 0 failed")
	for _, tenant := range []string{a, b} {
		var bodies []string
		require.NoError(t, ce.as(tenant).Raw("SELECT body FROM notes ORDER BY id").Scan(&bodies).Error)
		assert.Equal(t, []string{"semi;colon", "dollar; quoted", tenant}, bodies)
		assert.Equal(t, "schema", ce.tableKind(tenantplugin.QuoteIdentifier(tenant)+".notes"))
	}
	// A failing statement is named, and the tenant's transaction rolls back.
	err := ce.p.RunInTenant(ctx, a, func(tx *gorm.DB) error {
		return tenantplugin.ExecScript(tx, "INSERT INTO notes (body) VALUES ('x');\nINSERT INTO nowhere VALUES (1);")
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "statement 2 (line 2)")
	assert.EqualValues(t, 3, ce.count(a, "notes"))
}

// CitusHashed is a shared model made a hash-distributed table by the test:
// it cannot be a reference table, so a tenant model may not reference it.
type CitusHashed struct {
	ID   uint `gorm:"primaryKey"`
	Name string
}

// CitusUsesHashed is a tenant model with a foreign key to CitusHashed.
type CitusUsesHashed struct {
	ID            uint `gorm:"primaryKey"`
	CitusHashedID uint
	CitusHashed   *CitusHashed
}

// citusAccountTable is the table of CitusAccount, in a schema of the test.
var citusAccountTable string

// CitusAccount is a shared model in a schema other than the shared one.
type CitusAccount struct {
	ID   uint `gorm:"primaryKey"`
	Name string
}

func (CitusAccount) TableName() string { return citusAccountTable }

// CitusUsesAccount is a tenant model with a foreign key to CitusAccount.
type CitusUsesAccount struct {
	ID             uint `gorm:"primaryKey"`
	CitusAccountID uint
	CitusAccount   *CitusAccount
}

// TestCitusRefusals: what Citus cannot support is refused at start-up with
// an error that names the model and says why.
func TestCitusRefusals(t *testing.T) {
	url := citusURL(t)
	ctx := context.Background()
	raw, err := sql.Open("pgx", url)
	require.NoError(t, err)
	defer raw.Close()

	t.Run("TenantRoles", func(t *testing.T) {
		shared := fmt.Sprintf("csr%d_%s", citusN.Add(1), citusSuffix)
		t.Cleanup(func() { _, _ = raw.Exec("DROP SCHEMA IF EXISTS " + shared + " CASCADE") })
		db := openCitus(t, url, 2, "")
		p := testPlugin(shared, tenantplugin.WithTenantRoles())
		require.NoError(t, db.Use(p))
		err := p.Migrator().MigrateShared(ctx)
		require.ErrorIs(t, err, tenantplugin.ErrCitusUnsupported)
		assert.Contains(t, err.Error(), "WithTenantRoles")
		assert.Contains(t, err.Error(), "NOLOGIN")
		err = p.Migrator().CreateTenant(ctx, "x_"+shared)
		require.ErrorIs(t, err, tenantplugin.ErrCitusUnsupported)
		var exists bool
		require.NoError(t, raw.QueryRow("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", shared).Scan(&exists))
		assert.False(t, exists, "nothing was created")
	})

	t.Run("DistributedSharedTable", func(t *testing.T) {
		shared := fmt.Sprintf("csr%d_%s", citusN.Add(1), citusSuffix)
		t.Cleanup(func() { _, _ = raw.Exec("DROP SCHEMA IF EXISTS " + shared + " CASCADE") })
		_, err := raw.Exec("SET citus.enable_schema_based_sharding = off; CREATE SCHEMA " + shared +
			"; CREATE TABLE " + shared + ".citus_hasheds (id bigserial PRIMARY KEY, name text); SELECT create_distributed_table('" + shared + ".citus_hasheds', 'id')")
		require.NoError(t, err)
		db := openCitus(t, url, 2, "")
		p := tenantplugin.New(tenantplugin.WithSharedSchema(shared), tenantplugin.WithSharedModels(&CitusHashed{}), tenantplugin.WithTenantModels(&CitusUsesHashed{}))
		require.NoError(t, db.Use(p))
		err = p.Migrator().MigrateShared(ctx)
		require.ErrorIs(t, err, tenantplugin.ErrCitusUnsupported)
		var ce *tenantplugin.CitusError
		require.True(t, errors.As(err, &ce), "%v", err)
		assert.Equal(t, "CitusHashed", ce.Model)
		assert.Contains(t, err.Error(), "distributed table")
		assert.Contains(t, err.Error(), "citus_uses_hasheds", "says which tenant table needs it")
		// Creating a tenant is refused too, before anything is created.
		err = p.Migrator().CreateTenant(ctx, "x_"+shared)
		require.ErrorIs(t, err, tenantplugin.ErrCitusUnsupported)
		assert.Contains(t, err.Error(), "CitusHashed")
	})

	t.Run("SharedTableInDistributedSchema", func(t *testing.T) {
		shared := fmt.Sprintf("csr%d_%s", citusN.Add(1), citusSuffix)
		billing := "billing_" + shared
		t.Cleanup(func() {
			_, _ = raw.Exec("DROP SCHEMA IF EXISTS " + shared + " CASCADE")
			_, _ = raw.Exec("DROP SCHEMA IF EXISTS " + billing + " CASCADE")
		})
		_, err := raw.Exec("SET citus.enable_schema_based_sharding = on; CREATE SCHEMA " + billing)
		require.NoError(t, err)
		citusAccountTable = billing + ".accounts"
		db := openCitus(t, url, 2, "")
		p := tenantplugin.New(tenantplugin.WithSharedSchema(shared), tenantplugin.WithSharedModels(&CitusAccount{}), tenantplugin.WithTenantModels(&CitusUsesAccount{}))
		require.NoError(t, db.Use(p))
		err = p.Migrator().MigrateShared(ctx)
		var ce *tenantplugin.CitusError
		require.True(t, errors.As(err, &ce), "%v", err)
		assert.Equal(t, "CitusAccount", ce.Model)
		assert.Contains(t, err.Error(), "distributed schema")
	})

	t.Run("LayoutRefusalsStillApply", func(t *testing.T) {
		// A foreign key between tenants (a tenant table naming a schema) or
		// from a shared table to a tenant table is refused at db.Use, on
		// Citus as everywhere.
		db := openCitus(t, url, 1, "")
		err := db.Use(tenantplugin.New(tenantplugin.WithSharedModels(&BadShared{}), tenantplugin.WithTenantModels(&Poll{})))
		var le *tenantplugin.LayoutError
		require.True(t, errors.As(err, &le), "%v", err)
		assert.Equal(t, "BadShared", le.Model)
	})
}

// BadShared is a shared model with a foreign key to a tenant table.
type BadShared struct {
	ID     uint `gorm:"primaryKey"`
	PollID uint
	Poll   *Poll
}

// TestCitusMethodsOnPlainPostgreSQL: on the plain server (no Citus needed),
// the Citus methods say it is not Citus.
func TestCitusMethodsOnPlainPostgreSQL(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	name := e.tenant("notcitus")
	_, err := e.m.DistributeTenants(ctx, nil)
	require.ErrorIs(t, err, tenantplugin.ErrNotCitus)
	_, err = e.m.MoveTenant(ctx, name, "127.0.0.1:9701")
	require.ErrorIs(t, err, tenantplugin.ErrNotCitus)
	_, err = e.m.TenantNode(ctx, name)
	require.ErrorIs(t, err, tenantplugin.ErrNotCitus)
}

// TestCitusExampleApp runs the polls example through the coordinator: two
// tenants on different workers, isolated over HTTP, and rows written
// through a worker (IDs above 2^48) served by 64-bit IDs in JSON and URLs.
func TestCitusExampleApp(t *testing.T) {
	url := citusURL(t)
	ctx := context.Background()
	shared := fmt.Sprintf("cpolls%d_%s", citusN.Add(1), citusSuffix)
	raw, err := sql.Open("pgx", url)
	require.NoError(t, err)
	db := openCitus(t, url, 8, "")
	plugin := app.NewPlugin(tenantplugin.WithSharedSchema(shared))
	require.NoError(t, db.Use(plugin))
	m := plugin.Migrator()
	t.Cleanup(func() { citusCleanup(t, raw, m, shared); raw.Close() })
	_, err = m.Migrate(ctx)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q := app.NewQueue(db, plugin, log, 2)
	a := &app.App{DB: db, Plugin: plugin, Jobs: q, Log: log}
	s := &pollsServer{t: t, srv: httptest.NewServer(a.Handler()), app: a, p: plugin, m: m}
	t.Cleanup(func() { s.srv.Close(); q.Close() })

	n := citusN.Add(1)
	thor, potter := fmt.Sprintf("thor%d_%s", n, shared), fmt.Sprintf("potter%d_%s", n, shared)
	thorHost, potterHost := fmt.Sprintf("thor-%d-%s.example", n, citusSuffix), fmt.Sprintf("potter-%d-%s.example", n, citusSuffix)
	require.NoError(t, m.CreateTenant(ctx, thor, thorHost))
	require.NoError(t, m.CreateTenant(ctx, potter, potterHost))
	thorNode, err := m.TenantNode(ctx, thor)
	require.NoError(t, err)
	potterNode, err := m.TenantNode(ctx, potter)
	require.NoError(t, err)
	if thorNode == potterNode {
		var other string
		require.NoError(t, raw.QueryRow(`SELECT node_name || ':' || node_port FROM citus_get_active_worker_nodes()
 WHERE node_name || ':' || node_port <> $1 LIMIT 1`, thorNode).Scan(&other))
		_, err := m.MoveTenant(ctx, potter, other)
		require.NoError(t, err)
		potterNode = other
	}
	require.NotEqual(t, thorNode, potterNode)

	code, body := s.do("POST", thorHost, "/api/polls", `{"question":"Hammer?","choices":["Mjolnir","Stormbreaker"]}`)
	require.Equal(t, http.StatusCreated, code, string(body))
	var created apiPoll
	require.NoError(t, json.Unmarshal(body, &created))
	code, body = s.do("POST", thorHost, fmt.Sprintf("/api/polls/%d/votes", created.ID), fmt.Sprintf(`{"choice_id": %d}`, created.Choices[0].ID))
	require.Equal(t, http.StatusCreated, code, string(body))
	code, body = s.do("GET", potterHost, "/api/polls", "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `[]`, string(body), "potter sees none of thor's polls")
	code, _ = s.do("GET", potterHost, fmt.Sprintf("/api/polls/%d", created.ID), "")
	assert.Equal(t, http.StatusNotFound, code)

	// A poll written through thor's worker, as an app connected there would.
	wurl, err := neturl.Parse(url)
	require.NoError(t, err)
	wurl.Host = thorNode
	worker, err := sql.Open("pgx", wurl.String())
	require.NoError(t, err)
	defer worker.Close()
	var pollID, choiceID int64
	require.NoError(t, worker.QueryRow(`INSERT INTO `+tenantplugin.QuoteIdentifier(thor)+`.polls (question, created_at) VALUES ('From the worker?', now()) RETURNING id`).Scan(&pollID))
	require.NoError(t, worker.QueryRow(`INSERT INTO `+tenantplugin.QuoteIdentifier(thor)+`.choices (poll_id, text) VALUES ($1, 'yes') RETURNING id`, pollID).Scan(&choiceID))
	require.Greater(t, pollID, int64(1)<<48, "IDs of rows written through a worker start above 2^48")
	code, body = s.do("GET", thorHost, fmt.Sprintf("/api/polls/%d", pollID), "")
	require.Equal(t, http.StatusOK, code, string(body))
	var got struct {
		ID      int64 `json:"id"`
		Choices []struct {
			ID int64 `json:"id"`
		} `json:"choices"`
	}
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, pollID, got.ID)
	require.Len(t, got.Choices, 1)
	assert.Equal(t, choiceID, got.Choices[0].ID)
	code, body = s.do("POST", thorHost, fmt.Sprintf("/api/polls/%d/votes", pollID), fmt.Sprintf(`{"choice_id": %d}`, choiceID))
	require.Equal(t, http.StatusCreated, code, string(body))
	assert.Contains(t, string(body), `"votes":1`)
	code, _ = s.do("GET", potterHost, fmt.Sprintf("/api/polls/%d", pollID), "")
	assert.Equal(t, http.StatusNotFound, code)

	// The background job ran, through the coordinator, for thor.
	q.Close()
	var events []app.Event
	require.NoError(t, db.WithContext(tenantplugin.WithTenant(ctx, thor)).Find(&events).Error)
	require.Len(t, events, 1)
	assert.Equal(t, "Hammer?", events[0].Detail)
}

// citusBench is a plugin-enabled pool with the polls example's models and n
// tenants, on one server or on the Citus coordinator.
type citusBench struct {
	db    *gorm.DB
	p     *tenantplugin.Plugin
	names []string
	ctxs  []context.Context
}

// newCitusBench migrates a shared schema of its own on url and creates n
// tenants, each holding one poll. On Citus (citus) it removes them at
// cleanup; the one-server side lives in the run's scratch database, dropped
// at the end of the run.
func newCitusBench(b *testing.B, url string, citus bool, n int) *citusBench {
	b.Helper()
	ctx := context.Background()
	shared := fmt.Sprintf("cb%d_%s", citusN.Add(1), citusSuffix)
	db := openCitus(b, url, 8, "")
	p := app.NewPlugin(tenantplugin.WithSharedSchema(shared))
	require.NoError(b, db.Use(p))
	m := p.Migrator()
	if citus {
		raw, err := sql.Open("pgx", url)
		require.NoError(b, err)
		b.Cleanup(func() { citusCleanup(b, raw, m, shared); raw.Close() })
	}
	require.NoError(b, m.MigrateShared(ctx))
	e := &citusBench{db: db, p: p}
	for i := 0; i < n; i++ {
		e.names = append(e.names, fmt.Sprintf("b%d_%s", i, shared))
	}
	if n > 0 {
		rep, err := m.CreateTenants(ctx, e.names)
		require.NoError(b, err)
		require.Equal(b, n, rep.Migrated, rep.String())
	}
	for _, name := range e.names {
		tctx := tenantplugin.WithTenant(ctx, name)
		e.ctxs = append(e.ctxs, tctx)
		require.NoError(b, db.WithContext(tctx).Create(&app.Poll{Question: "q of " + name}).Error)
	}
	return e
}

// BenchmarkCitus measures, in one run, the same work on one server
// (DATABASE_URL, default 127.0.0.1:5432) and on the Citus coordinator
// (TENANTPLUGIN_CITUS_URL; skipped without it), with the polls example's
// models, and prints a table:
//
//   - create: tenants created one at a time (WithConcurrency(1)), ms/tenant;
//   - migrate-up-to-date: MigrateTenants over N up-to-date tenants, ms/run;
//   - migrate-new-column: one new migration adding a column to N tenants
//     (default concurrency), ms/tenant;
//   - read: one poll by primary key from tenant i mod N on one connection,
//     after one warm-up pass over every tenant, µs/read (an op is 20 passes
//     over every tenant).
//
// N is TENANTPLUGIN_BENCH_TENANTS (default 4). The README's figures:
//
//	TENANTPLUGIN_CITUS_URL='postgres://postgres@127.0.0.1:9700/citus_test?sslmode=disable' \
//	TENANTPLUGIN_BENCH_TENANTS=100 go test -run '^$' -bench Citus -benchtime 1x ./integration_test
func BenchmarkCitus(b *testing.B) {
	curl := citusURL(b)
	targets := []struct {
		name  string
		url   string
		citus bool
	}{{"server", server.URL, false}, {"citus", curl, true}}
	ctx := context.Background()
	figures := map[string]float64{}
	record := func(b *testing.B, key string, v float64, unit string) {
		b.ReportMetric(v, unit)
		figures[key] = v
	}
	for _, n := range benchSizes(4) {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("create/tenants=%d/%s", n, tg.name), func(b *testing.B) {
				e := newCitusBench(b, tg.url, tg.citus, 0)
				m := e.p.Migrator(tenantplugin.WithConcurrency(1))
				_, err := m.CreateTenants(ctx, nil) // capture the DDL outside the timing
				require.NoError(b, err)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					names := make([]string, n)
					for j := range names {
						names[j] = fmt.Sprintf("c%d_%d_%s", i, j, e.p.SharedSchema())
					}
					rep, err := m.CreateTenants(ctx, names)
					must(b, err)
					if rep.Migrated != n {
						b.Fatal(rep)
					}
				}
				record(b, fmt.Sprintf("create %d %s", n, tg.name), float64(b.Elapsed().Microseconds())/1000/float64(b.N*n), "ms/tenant")
			})
		}
		for _, tg := range targets {
			b.Run(fmt.Sprintf("migrate-up-to-date/tenants=%d/%s", n, tg.name), func(b *testing.B) {
				e := newCitusBench(b, tg.url, tg.citus, n)
				m := e.p.Migrator()
				_, err := m.CreateTenants(ctx, nil) // capture the DDL (once per process) outside the timing
				require.NoError(b, err)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					rep, err := m.MigrateTenants(ctx)
					must(b, err)
					if rep.UpToDate != n {
						b.Fatal(rep)
					}
				}
				record(b, fmt.Sprintf("uptodate %d %s", n, tg.name), float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/run")
			})
		}
		for _, tg := range targets {
			b.Run(fmt.Sprintf("migrate-new-column/tenants=%d/%s", n, tg.name), func(b *testing.B) {
				col := &gormigrate.Migration{ID: "001_note", Migrate: func(tx *gorm.DB) error {
					return tx.Exec("ALTER TABLE polls ADD COLUMN note text").Error
				}}
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					e := newCitusBench(b, tg.url, tg.citus, n)
					m := e.p.Migrator(tenantplugin.WithMigrations(col))
					_, err := m.CreateTenants(ctx, nil) // capture outside the timing
					require.NoError(b, err)
					b.StartTimer()
					rep, err := m.MigrateTenants(ctx)
					must(b, err)
					if rep.Migrated != n {
						b.Fatal(rep)
					}
				}
				record(b, fmt.Sprintf("newcol %d %s", n, tg.name), float64(b.Elapsed().Microseconds())/1000/float64(b.N*n), "ms/tenant")
			})
		}
		for _, tg := range targets {
			b.Run(fmt.Sprintf("read/tenants=%d/%s", n, tg.name), func(b *testing.B) {
				e := newCitusBench(b, tg.url, tg.citus, n)
				sqlDB, err := e.db.DB()
				require.NoError(b, err)
				sqlDB.SetMaxOpenConns(1)
				for _, c := range e.ctxs { // warm-up: every tenant once
					var p app.Poll
					must(b, e.db.WithContext(c).Take(&p, 1).Error)
				}
				// One op is citusReadPasses passes over every tenant.
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for j := 0; j < citusReadPasses*n; j++ {
						var p app.Poll
						must(b, e.db.WithContext(e.ctxs[j%n]).Take(&p, 1).Error)
					}
				}
				record(b, fmt.Sprintf("read %d %s", n, tg.name), float64(b.Elapsed().Nanoseconds())/1000/float64(b.N*citusReadPasses*n), "µs/read")
			})
		}
		row := func(label, key string) string {
			s, c := figures[key+" server"], figures[key+" citus"]
			ratio := "-"
			if s > 0 {
				ratio = fmt.Sprintf("%.1fx", c/s)
			}
			return fmt.Sprintf("| %s | %.1f | %.1f | %s |", label, s, c, ratio)
		}
		fmt.Printf("\n| %d tenants | one server | Citus (coordinator + workers) | Citus / server |\n|---|---:|---:|---:|\n%s\n%s\n%s\n%s",
			n,
			row("create a tenant, one at a time (ms/tenant)", fmt.Sprintf("create %d", n)),
			row(fmt.Sprintf("migrate-all, %d up to date (ms/run)", n), fmt.Sprintf("uptodate %d", n)),
			row(fmt.Sprintf("migrate-all, new column, %d tenants (ms/tenant)", n), fmt.Sprintf("newcol %d", n)),
			row("round-robin read by primary key, one connection (µs/read)", fmt.Sprintf("read %d", n)))
		fmt.Printf("\n\n")
	}
}

// citusReadPasses is how many round-robin passes over every tenant one op
// of BenchmarkCitus's read makes (20 x 100 tenants: 2,000 reads at 1x).
const citusReadPasses = 20
