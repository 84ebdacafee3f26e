package integration_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/tenantcmd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTenantCommandsRenameCloneStats drives tenants rename, clone and stats
// and migrate's progress through the command set, as an app's binary would.
func TestTenantCommandsRenameCloneStats(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	var out, progress bytes.Buffer
	cmds := &tenantcmd.Commands{Migrator: e.m, Out: &out, ProgressOut: &progress}
	ctx := context.Background()
	run := func(args ...string) string {
		t.Helper()
		out.Reset()
		require.NoError(t, cmds.Run(ctx, args), strings.Join(args, " "))
		return out.String()
	}
	thor, asgard, tmpl := "cthor_"+e.shared, "casgard_"+e.shared, "ctmpl_"+e.shared
	run("tenants", "create", thor)
	run("tenants", "create", tmpl)
	require.NoError(t, e.as(tmpl).Create(&Poll{Question: "seed", Owner: tmpl}).Error)

	assert.Equal(t, "renamed tenant "+thor+" to "+asgard+"\n", run("tenants", "rename", thor, asgard))
	clone := "cclone_" + e.shared
	assert.Equal(t, "cloned tenant "+tmpl+" to "+clone+"\n", run("tenants", "clone", tmpl, clone, "--domain", "c."+e.shared+".example"))
	assert.Equal(t, asgard+"\n"+clone+"\n"+tmpl+"\n", run("tenants", "list"))
	assert.Equal(t, "c."+e.shared+".example\n", run("tenants", "domains", clone))
	assert.EqualValues(t, 1, e.count(clone, "polls"))

	require.NoError(t, e.as(clone).Exec(`INSERT INTO polls (question, owner) SELECT repeat('x', 300), 'x' FROM generate_series(1, 2000)`).Error)
	require.NoError(t, e.db.Exec(`VACUUM ANALYZE `+tenantplugin.QuoteIdentifier(clone)+`.polls`).Error) // what autovacuum does
	stats := run("tenants", "stats")
	lines := strings.Split(strings.TrimSpace(stats), "\n")
	require.Len(t, lines, 6, stats)
	assert.Regexp(t, `^TENANT\s+TABLES\s+ROWS \(EST\.\)\s+TABLE\s+INDEXES\s+TOTAL`, lines[0])
	assert.True(t, strings.HasPrefix(lines[1], clone+" "), "largest first:\n%s", stats)
	assert.Regexp(t, `^`+clone+`\s+6\s+2001\*\s+\d+ kB\s+\d+ kB\s+\d+ kB`, lines[1])
	assert.Regexp(t, `^3 tenants, \d+ kB in all, largest first$`, lines[4])
	assert.Contains(t, lines[5], "never vacuumed or analyzed")

	// migrate: nothing to do prints no progress, only the summary.
	assert.Contains(t, run("migrate"), "3 tenants: 0 migrated, 3 up to date")
	assert.Empty(t, progress.String())
	// A new migration: plain progress lines (the buffer is no terminal).
	cmds.Migrator = e.p.Migrator(tenantplugin.WithMigrations(addNoteColumn("003_note")))
	assert.Contains(t, run("migrate"), "3 tenants: 3 migrated, 0 up to date")
	assert.Regexp(t, `^migrate: 1/3 tenants, 0 failed, \d+ tenants/s, about .+ left
migrate: 2/3 tenants, 0 failed, \d+ tenants/s, about .+ left
migrate: 3/3 tenants, 0 failed, \d+ tenants/s in .+
$`, progress.String())
	assert.NotContains(t, progress.String(), "\r")

	for _, bad := range [][]string{{"tenants", "rename", asgard}, {"tenants", "clone", tmpl}, {"tenants", "stats", "x"}} {
		err := cmds.Run(ctx, bad)
		assert.True(t, errors.Is(err, tenantcmd.ErrUsage), "%v: %v", bad, err)
	}
	require.ErrorIs(t, cmds.Run(ctx, []string{"tenants", "rename", "nobody", "x"}), tenantplugin.ErrUnknownTenant)
	require.ErrorIs(t, cmds.Run(ctx, []string{"tenants", "rename", asgard, clone}), tenantplugin.ErrTenantExists)
	require.ErrorIs(t, cmds.Run(ctx, []string{"tenants", "clone", tmpl, "Bad"}), tenantplugin.ErrInvalidTenantName)
}
