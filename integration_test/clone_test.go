package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// rows returns every row of every tenant table of schema as text, read
// directly (not through the plugin), plus the migration bookkeeping.
func (e *env) rows(schema string) string {
	e.t.Helper()
	var b strings.Builder
	for _, t := range append(tenantTables, "tenantplugin_migrations") {
		var s *string
		name := tenantplugin.QuoteIdentifier(schema) + "." + tenantplugin.QuoteIdentifier(t)
		var exists bool
		require.NoError(e.t, e.db.Raw("SELECT to_regclass(?) IS NOT NULL", name).Scan(&exists).Error)
		if !exists {
			fmt.Fprintf(&b, "%s: absent\n", t)
			continue
		}
		q := `SELECT json_agg(x ORDER BY x::text)::text FROM ` + name + ` x`
		require.NoError(e.t, e.db.WithContext(context.Background()).Raw(q).Scan(&s).Error)
		fmt.Fprintf(&b, "%s: %v\n", t, derefOr(s, "[]"))
	}
	return b.String()
}

func derefOr(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

// seedTag is a migration that inserts a row in every tenant it runs in: a
// clone must end up with the template's rows, not with these plus them.
var seedTag = &gormigrate.Migration{ID: "seed_tag", Migrate: func(tx *gorm.DB) error {
	return tx.Exec("INSERT INTO tags (name, owner) VALUES ('from migration', current_schema())").Error
}}

func TestCloneTenant(t *testing.T) {
	e := newIsolatedEnv(t, 4, tenantplugin.WithMigrations(seedTag))
	ctx := context.Background()
	tmpl, clone := "tmpl_"+e.shared, "clone_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, tmpl))
	plan := Plan{Name: "gold"}
	require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).Create(&plan).Error)
	e.seed(tmpl, &plan)
	// Gaps in the ids and a deleted row: the sequence state is copied, not
	// recomputed.
	require.NoError(t, e.as(tmpl).Create(&Tag{Name: "deleted", Owner: tmpl}).Error)
	require.NoError(t, e.as(tmpl).Where("name = ?", "deleted").Delete(&Tag{}).Error)
	require.NoError(t, e.as(tmpl).Model(&Poll{}).Where("question = ?", "q2").Update("deleted_at", gorm.Expr("now()")).Error)
	before := e.rows(tmpl)
	var maxTag uint
	require.NoError(t, e.db.Raw(`SELECT max(id) + 1 FROM `+tenantplugin.QuoteIdentifier(tmpl)+`.tags`).Scan(&maxTag).Error)

	require.NoError(t, e.m.CloneTenant(ctx, tmpl, clone, "polls."+clone+".example"))

	assert.Equal(t, before, e.rows(tmpl), "the template is unchanged")
	assert.Equal(t, before, e.rows(clone), "the clone holds exactly the template's rows and bookkeeping")
	assert.Equal(t, e.catalog(tmpl), e.catalog(clone))
	// New rows continue after the copied ones, in every table.
	tag := Tag{Name: "new", Owner: clone}
	require.NoError(t, e.as(clone).Create(&tag).Error)
	assert.Equal(t, maxTag+1, tag.ID, "the deleted row's id is not reused")
	poll := Poll{Question: "new", Owner: clone, Choices: []Choice{{Text: "c", Owner: clone}}}
	require.NoError(t, e.as(clone).Create(&poll).Error)
	assert.EqualValues(t, 4, poll.ID)
	assert.EqualValues(t, 7, poll.Choices[0].ID)
	// Routed like any tenant; the domain resolves; up to date.
	var polls []Poll
	require.NoError(t, e.as(clone).Preload("Tags").Preload("Choices").Order("id").Find(&polls).Error)
	require.Len(t, polls, 3, "q2 stays soft-deleted")
	assert.Equal(t, "q1", polls[0].Question)
	assert.Len(t, polls[0].Tags, 1)
	got, err := e.p.Directory().TenantForHost(ctx, "polls."+clone+".example")
	require.NoError(t, err)
	assert.Equal(t, clone, got)
	rep, err := e.m.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.UpToDate, rep.String())
	var fps []string
	require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).Model(&tenantplugin.TenantRecord{}).Order("name").Pluck("fingerprint", &fps).Error)
	require.Len(t, fps, 2)
	assert.Equal(t, fps[0], fps[1])
	// A forced AutoMigrate finds nothing to change in the clone.
	cat := e.catalog(clone)
	_, err = e.p.Migrator(tenantplugin.WithMigrations(seedTag), tenantplugin.WithForce()).MigrateTenant(ctx, clone)
	require.NoError(t, err)
	assert.Equal(t, cat, e.catalog(clone))
	// The clone can be cloned in turn (to a hyphenated name), and dropped.
	hyphen := "clone-2_" + e.shared
	require.NoError(t, e.m.CloneTenant(ctx, clone, hyphen))
	assert.Equal(t, e.rows(clone), e.rows(hyphen))
	tag = Tag{Name: "newer", Owner: hyphen}
	require.NoError(t, e.as(hyphen).Create(&tag).Error)
	assert.Equal(t, maxTag+2, tag.ID)
	require.NoError(t, e.m.DropTenant(ctx, clone))
}

// TestCloneTenantIsAllOrNothing: every refused or failed clone returns its
// typed error and leaves no registry row, domain or schema behind, and the
// template as it was.
func TestCloneTenantIsAllOrNothing(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	tmpl, taken, to := "ctmpl_"+e.shared, "ctaken_"+e.shared, "cto_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, tmpl))
	require.NoError(t, e.m.CreateTenant(ctx, taken))
	e.seed(tmpl, e.plan())
	before := e.rows(tmpl)
	gone := func(msg string) {
		t.Helper()
		assert.False(t, e.schemaExists(to), msg)
		names, err := e.m.Tenants(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{taken, tmpl}, names, msg)
		hosts, err := e.m.Domains(ctx, to)
		require.NoError(t, err)
		assert.Empty(t, hosts, msg)
		assert.Equal(t, before, e.rows(tmpl), msg)
	}
	for _, c := range []struct {
		from, to string
		err      error
	}{
		{"nobody_" + e.shared, to, tenantplugin.ErrUnknownTenant},
		{tmpl, taken, tenantplugin.ErrTenantExists},
		{tmpl, tmpl, tenantplugin.ErrTenantExists},
		{tmpl, "Bad", tenantplugin.ErrInvalidTenantName},
		{tmpl, e.shared, tenantplugin.ErrInvalidTenantName},
		{"pg_catalog", to, tenantplugin.ErrInvalidTenantName},
	} {
		require.ErrorIs(t, e.m.CloneTenant(ctx, c.from, c.to), c.err, "%s -> %s", c.from, c.to)
		gone(c.from + " -> " + c.to)
	}
	require.ErrorIs(t, e.m.CloneTenant(ctx, tmpl, to, "bad host!"), tenantplugin.ErrMalformedHost)
	gone("bad host")

	// A template that is not up to date with this migrator's migrations.
	newer := e.p.Migrator(tenantplugin.WithMigrations(addNoteColumn("002_note")))
	err := newer.CloneTenant(ctx, tmpl, to)
	require.ErrorIs(t, err, tenantplugin.ErrNotUpToDate)
	assert.Contains(t, err.Error(), tmpl)
	gone("outdated template")

	// A failure in the middle of the copy (the template lost a table by
	// hand, its fingerprint still current) rolls everything back.
	require.NoError(t, e.db.Exec(`DROP TABLE `+tenantplugin.QuoteIdentifier(tmpl)+`.poll_tags`).Error)
	err = e.m.CloneTenant(ctx, tmpl, to, "cto.example")
	require.Error(t, err)
	var te *tenantplugin.TenantError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, to, te.Tenant)
	assert.Contains(t, err.Error(), "poll_tags")
	assert.False(t, e.schemaExists(to))
	names, err := e.m.Tenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{taken, tmpl}, names)
	host, err := e.p.Directory().TenantForHost(ctx, "cto.example")
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant, host)
}

func TestCloneTenantWithRoles(t *testing.T) {
	e := newRolesEnv(t)
	ctx := context.Background()
	tmpl, clone := "rct_"+e.shared, "rcc_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, tmpl))
	require.NoError(t, e.as(tmpl).Create(&Poll{Question: "seed", Owner: tmpl}).Error)
	require.NoError(t, e.m.CloneTenant(ctx, tmpl, clone))
	var who string
	require.NoError(t, e.as(clone).Raw("SELECT current_user").Scan(&who).Error)
	assert.Equal(t, tenantplugin.RoleName(server.Name, clone), who)
	require.NoError(t, e.as(clone).Exec("INSERT INTO polls (question, owner) VALUES ('raw', ?)", clone).Error)
	var qs []string
	require.NoError(t, e.as(clone).Model(&Poll{}).Order("id").Pluck("question", &qs).Error)
	assert.Equal(t, []string{"seed", "raw"}, qs)
	err := e.as(clone).Raw(fmt.Sprintf(`SELECT count(*) FROM %s.polls`, tenantplugin.QuoteIdentifier(tmpl))).Scan(new(int64)).Error
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
}

// TestCloneTenantRunsNoSeed: the WithSeed functions run when a tenant is
// created, not when it is cloned: the template's rows, its own seeded rows
// included, are the clone's.
func TestCloneTenantRunsNoSeed(t *testing.T) {
	seeds := 0
	e := newIsolatedEnv(t, 2, tenantplugin.WithSeed(func(tx *gorm.DB) error {
		seeds++
		name, _ := tenantplugin.FromContext(tx.Statement.Context)
		return tx.Create(&Tag{Name: "seeded", Owner: name}).Error
	}))
	ctx := context.Background()
	tmpl, clone := "stmpl_"+e.shared, "sclone_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, tmpl))
	require.NoError(t, e.m.CloneTenant(ctx, tmpl, clone))
	assert.Equal(t, 1, seeds)
	assert.Equal(t, e.rows(tmpl), e.rows(clone))
	assert.Equal(t, []string{tmpl}, e.owners(clone, "tags"))
}
