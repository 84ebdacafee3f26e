package integration_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/tenantcmd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestCommands drives the operator command set as an app's binary would.
func TestCommands(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	var out bytes.Buffer
	cmds := &tenantcmd.Commands{
		Migrator: e.m,
		Out:      &out,
		Funcs: map[string]func(context.Context, *gorm.DB) error{
			"tag": func(ctx context.Context, tx *gorm.DB) error {
				name, _ := tenantplugin.FromContext(ctx)
				return tx.Create(&Tag{Name: "from func", Owner: name}).Error
			},
		},
	}
	ctx := context.Background()
	run := func(args ...string) string {
		t.Helper()
		out.Reset()
		require.NoError(t, cmds.Run(ctx, args), strings.Join(args, " "))
		return out.String()
	}
	one, two := "cmd1_"+e.shared, "cmd2_"+e.shared
	assert.Contains(t, run("tenants", "create", one, "--domain", "one."+e.shared+".example", "--domain=www.one.example"), "created tenant "+one)
	run("tenants", "create", two)
	assert.Equal(t, one+"\n"+two+"\n", run("tenants", "list"))
	assert.Equal(t, "one."+e.shared+".example\nwww.one.example\n", run("tenants", "domains", one))
	assert.Contains(t, run("migrate"), "2 tenants: 0 migrated, 2 up to date")

	sqlFile := filepath.Join(t.TempDir(), "seed.sql")
	require.NoError(t, os.WriteFile(sqlFile, []byte(
		"INSERT INTO tags (name, owner) VALUES ('from sql', current_schema());\nINSERT INTO tags (name, owner) VALUES ('again', current_schema());\n"), 0o644))
	assert.Contains(t, run("tenants", "sql", sqlFile, "--all"), "2 tenants: 2 done, 0 failed")
	run("tenants", "run", "tag", "--tenant", two)
	assert.EqualValues(t, 2, e.count(one, "tags"))
	assert.EqualValues(t, 3, e.count(two, "tags"))
	assert.Equal(t, []string{one}, e.owners(one, "tags"))
	assert.Equal(t, []string{two}, e.owners(two, "tags"))

	run("tenants", "drop", one)
	assert.Equal(t, two+"\n", run("tenants", "list"))

	for _, bad := range [][]string{{}, {"nope"}, {"tenants", "create"}, {"tenants", "sql", sqlFile}, {"tenants", "run", "missing", "--all"}, {"tenants", "create", "x", "--bogus"}} {
		err := cmds.Run(ctx, bad)
		assert.True(t, errors.Is(err, tenantcmd.ErrUsage), "%v: %v", bad, err)
	}
	require.ErrorIs(t, cmds.Run(ctx, []string{"tenants", "create", "Bad Name"}), tenantplugin.ErrInvalidTenantName)
	require.ErrorIs(t, cmds.Run(ctx, []string{"tenants", "drop", one}), tenantplugin.ErrUnknownTenant)
}
