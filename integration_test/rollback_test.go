package integration_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/tenantcmd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// rollbackMigrations: 001 adds a column, 002 an index, 003 a table; each
// can be undone.
func rollbackMigrations() []*gormigrate.Migration {
	return []*gormigrate.Migration{
		{
			ID:       "rb_001_note",
			Migrate:  func(tx *gorm.DB) error { return tx.Exec("ALTER TABLE polls ADD COLUMN note text").Error },
			Rollback: func(tx *gorm.DB) error { return tx.Exec("ALTER TABLE polls DROP COLUMN note").Error },
		},
		{
			ID:       "rb_002_votes_index",
			Migrate:  func(tx *gorm.DB) error { return tx.Exec("CREATE INDEX idx_rb_votes ON choices (votes)").Error },
			Rollback: func(tx *gorm.DB) error { return tx.Exec("DROP INDEX idx_rb_votes").Error },
		},
		{
			ID: "rb_003_audit",
			Migrate: func(tx *gorm.DB) error {
				return tx.Exec("CREATE TABLE rb_audit (id serial PRIMARY KEY, what text)").Error
			},
			Rollback: func(tx *gorm.DB) error { return tx.Exec("DROP TABLE rb_audit").Error },
		},
	}
}

// applied returns the migration IDs recorded in tenant's schema.
func (e *env) applied(tenant string) []string {
	e.t.Helper()
	var ids []string
	require.NoError(e.t, e.as(tenant).Table("tenantplugin_migrations").Order("id").Pluck("id", &ids).Error)
	return ids
}

func (e *env) fingerprint(tenant string) string {
	e.t.Helper()
	var rec tenantplugin.TenantRecord
	require.NoError(e.t, e.db.WithContext(tenantplugin.SharedOnly(context.Background())).Where("name = ?", tenant).Take(&rec).Error)
	return rec.Fingerprint
}

// TestRollbackTenantsToAndMigrateAgain: rolling every tenant back to 001
// undoes 002 and 003 where they ran, clears the fingerprint, and the next
// MigrateTenants re-applies them.
func TestRollbackTenantsToAndMigrateAgain(t *testing.T) {
	ctx := context.Background()
	e := newIsolatedEnv(t, 4, tenantplugin.WithMigrations(rollbackMigrations()...), tenantplugin.WithConcurrency(2))
	names := e.createTenants("rb", 5)
	before := e.catalog(names[0])
	require.Contains(t, before, "idx_rb_votes")
	require.Contains(t, before, "col rb_audit.what")
	current := e.fingerprint(names[0])
	require.NotEmpty(t, current)
	// One tenant never got 003 (as if it had failed it).
	behind := names[3]
	require.NoError(t, e.db.Exec(`DROP TABLE "`+behind+`".rb_audit`).Error)
	require.NoError(t, e.db.Exec(`DELETE FROM "`+behind+`".tenantplugin_migrations WHERE id = 'rb_003_audit'`).Error)

	var events []tenantplugin.Progress
	m := e.p.Migrator(tenantplugin.WithMigrations(rollbackMigrations()...), tenantplugin.WithConcurrency(2),
		tenantplugin.WithProgress(func(p tenantplugin.Progress) { events = append(events, p) }))
	rep, err := m.RollbackTenantsTo(ctx, "rb_001_note")
	require.NoError(t, err)
	assert.Equal(t, 5, rep.Migrated, rep.String())
	assert.Contains(t, rep.String(), "5 tenants: 5 rolled back, 0 with nothing to roll back, 0 failed")
	assert.Len(t, events, 5)
	for _, n := range names {
		assert.Equal(t, []string{"rb_001_note"}, e.applied(n), n)
		c := e.catalog(n)
		assert.NotContains(t, c, "idx_rb_votes", n)
		assert.NotContains(t, c, "rb_audit", n)
		assert.Contains(t, c, "col polls.note", n)
		assert.Empty(t, e.fingerprint(n), "tenant %s still claims the undone migrations", n)
	}

	// Again: nothing after 001 is left anywhere.
	rep, err = m.RollbackTenantsTo(ctx, "rb_001_note")
	require.NoError(t, err)
	assert.Equal(t, 5, rep.UpToDate, rep.String())

	// The next start-up re-applies what was undone, in every tenant.
	rep, err = e.p.Migrator(tenantplugin.WithMigrations(rollbackMigrations()...)).MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 5, rep.Migrated, rep.String())
	for _, n := range names {
		assert.Equal(t, before, e.catalog(n), n)
		assert.Equal(t, []string{"rb_001_note", "rb_002_votes_index", "rb_003_audit"}, e.applied(n))
		assert.Equal(t, current, e.fingerprint(n))
	}
}

// TestRollbackOneTenant: RollbackTenantLast and RollbackTenantTo work on one
// tenant only; the newest-migration form for all tenants leaves alone a
// tenant where the newest never ran.
func TestRollbackOneTenant(t *testing.T) {
	ctx := context.Background()
	e := newIsolatedEnv(t, 4, tenantplugin.WithMigrations(rollbackMigrations()...))
	a, b := e.tenant("rba"), e.tenant("rbb")
	all := []string{"rb_001_note", "rb_002_votes_index", "rb_003_audit"}

	st, err := e.m.RollbackTenantLast(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateMigrated, st)
	assert.Equal(t, all[:2], e.applied(a))
	assert.Equal(t, all, e.applied(b), "another tenant changed")
	assert.NotEmpty(t, e.fingerprint(b))

	// RollbackTenantsLast undoes 003 where it ran (b) and leaves a, where
	// it did not, at 002: never an older migration.
	rep, err := e.m.RollbackTenantsLast(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Migrated, rep.String())
	assert.Equal(t, 1, rep.UpToDate, rep.String())
	assert.Equal(t, all[:2], e.applied(a))
	assert.Equal(t, all[:2], e.applied(b))

	st, err = e.m.RollbackTenantTo(ctx, b, "rb_001_note")
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateMigrated, st)
	assert.Equal(t, all[:1], e.applied(b))
	st, err = e.m.RollbackTenantTo(ctx, b, "rb_001_note")
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateUpToDate, st)

	// Rolling back the first migration leaves none, and again nothing.
	st, err = e.m.RollbackTenantLast(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateMigrated, st)
	assert.Empty(t, e.applied(b))
	st, err = e.m.RollbackTenantLast(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateUpToDate, st)
	assert.NotContains(t, e.catalog(b), "col polls.note")

	// Bad input: nothing sent, nothing changed.
	sent := server.Counter.Count()
	_, err = e.m.RollbackTenantTo(ctx, a, "rb_999_nope")
	require.ErrorIs(t, err, gormigrate.ErrMigrationIDDoesNotExist)
	assert.Contains(t, err.Error(), "rb_999_nope")
	_, err = e.m.RollbackTenantsTo(ctx, "rb_999_nope")
	require.ErrorIs(t, err, gormigrate.ErrMigrationIDDoesNotExist)
	_, err = e.m.RollbackTenantTo(ctx, "Bad Name", "rb_001_note")
	require.ErrorIs(t, err, tenantplugin.ErrInvalidTenantName)
	_, err = e.p.Migrator().RollbackTenantLast(ctx, a)
	require.ErrorIs(t, err, gormigrate.ErrNoMigrationDefined)
	assert.Equal(t, sent, server.Counter.Count())
	_, err = e.m.RollbackTenantTo(ctx, "nobody_"+e.shared, "rb_001_note")
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	assert.Equal(t, all[:2], e.applied(a))
}

// TestRollbackIsAtomicAndNamesTheMigration: when one Rollback function of
// several fails (or there is none), the tenant keeps everything, and the
// error names the migration and the tenant.
func TestRollbackIsAtomicAndNamesTheMigration(t *testing.T) {
	ctx := context.Background()
	migs := rollbackMigrations()
	migs[1].Rollback = nil // 002 cannot be undone
	e := newIsolatedEnv(t, 2, tenantplugin.WithMigrations(migs...))
	a := e.tenant("rbatomic")
	before := e.catalog(a)
	fp := e.fingerprint(a)

	_, err := e.m.RollbackTenantTo(ctx, a, "rb_001_note")
	require.ErrorIs(t, err, gormigrate.ErrRollbackImpossible)
	assert.Equal(t, `tenantplugin: tenant "`+a+`": rollback: rollback of migration "rb_002_votes_index": `+gormigrate.ErrRollbackImpossible.Error(), err.Error())
	assert.Equal(t, before, e.catalog(a), "003 was undone although 002 could not be")
	assert.Len(t, e.applied(a), 3)
	assert.Equal(t, fp, e.fingerprint(a))

	boom := errors.New("disk full (simulated)")
	migs[2].Rollback = func(*gorm.DB) error { return boom }
	rep, err := e.p.Migrator(tenantplugin.WithMigrations(migs...)).RollbackTenantsTo(ctx, "rb_002_votes_index")
	require.ErrorIs(t, err, boom)
	var me *tenantplugin.MigrationError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, "rb_003_audit", me.ID)
	assert.True(t, me.Rollback)
	require.Len(t, rep.Failures(), 1)
	assert.Equal(t, a, rep.Failures()[0].Tenant)
	assert.Equal(t, before, e.catalog(a))
}

// TestRollbackWaitsForARunningMigration: a rollback takes the tenant's
// advisory lock, so it waits for a migration of that tenant in progress and
// then sees (and undoes) what it applied.
func TestRollbackWaitsForARunningMigration(t *testing.T) {
	ctx := context.Background()
	migs := rollbackMigrations()
	e := newIsolatedEnv(t, 4, tenantplugin.WithMigrations(migs[0]))
	a := e.tenant("rblock")

	entered, release := make(chan struct{}), make(chan struct{})
	slow := *migs[1]
	slow.Migrate = func(tx *gorm.DB) error {
		close(entered)
		<-release
		return migs[1].Migrate(tx)
	}
	m := e.p.Migrator(tenantplugin.WithMigrations(migs[0], &slow))
	migrated := make(chan error, 1)
	go func() { _, err := m.MigrateTenant(ctx, a); migrated <- err }()
	<-entered
	var done atomic.Bool
	rolled := make(chan error, 1)
	go func() {
		_, err := m.RollbackTenantTo(ctx, a, "rb_001_note")
		done.Store(true)
		rolled <- err
	}()
	// Wait (bounded) until the rollback waits for the tenant's lock.
	waiting := func() bool {
		var n int64
		require.NoError(t, e.db.Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n).Error)
		return n > 0
	}
	deadline := time.Now().Add(30 * time.Second)
	for !waiting() && time.Now().Before(deadline) && !done.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	require.False(t, done.Load(), "the rollback ran while the migration held the tenant")
	require.True(t, waiting(), "the rollback never waited for the tenant's lock")
	close(release)
	require.NoError(t, <-migrated)
	require.NoError(t, <-rolled)
	assert.Equal(t, []string{"rb_001_note"}, e.applied(a), "the rollback did not see the migration it waited for")
	assert.Empty(t, e.fingerprint(a))
}

// TestRollbackCommand: "migrate rollback --to ID [--tenant NAME]".
func TestRollbackCommand(t *testing.T) {
	ctx := context.Background()
	e := newIsolatedEnv(t, 2, tenantplugin.WithMigrations(rollbackMigrations()...))
	a, b := e.tenant("rbcmda"), e.tenant("rbcmdb")
	var out bytes.Buffer
	cmds := &tenantcmd.Commands{Migrator: e.m, Out: &out}
	run := func(args ...string) string {
		t.Helper()
		out.Reset()
		require.NoError(t, cmds.Run(ctx, args), strings.Join(args, " "))
		return out.String()
	}
	assert.Equal(t, "rolled back tenant "+a+" to rb_002_votes_index\n", run("migrate", "rollback", "--to", "rb_002_votes_index", "--tenant", a))
	assert.Equal(t, "tenant "+a+": nothing after rb_002_votes_index to roll back\n", run("migrate", "rollback", "--to=rb_002_votes_index", "--tenant", a))
	assert.Len(t, e.applied(a), 2)
	assert.Len(t, e.applied(b), 3)
	assert.Contains(t, run("migrate", "rollback", "--to", "rb_001_note"), "2 tenants: 2 rolled back, 0 with nothing to roll back, 0 failed")
	assert.Len(t, e.applied(a), 1)
	assert.Len(t, e.applied(b), 1)
	assert.Contains(t, run("migrate"), "2 tenants: 2 migrated")
	assert.Len(t, e.applied(b), 3)

	for _, bad := range [][]string{{"migrate", "rollback"}, {"migrate", "rollback", "--tenant", a}, {"migrate", "rollback", "--to", "x", "--to", "y"},
		{"migrate", "rollback", "extra", "--to", "rb_001_note"}, {"migrate", "sideways"}} {
		assert.ErrorIs(t, cmds.Run(ctx, bad), tenantcmd.ErrUsage, "%v", bad)
	}
	require.ErrorIs(t, cmds.Run(ctx, []string{"migrate", "rollback", "--to", "nope"}), gormigrate.ErrMigrationIDDoesNotExist)
	require.ErrorIs(t, cmds.Run(ctx, []string{"migrate", "rollback", "--to", "rb_001_note", "--tenant", "nobody"}), tenantplugin.ErrUnknownTenant)
	assert.Len(t, e.applied(a), 3)
}
