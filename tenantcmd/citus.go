package tenantcmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
)

// citus runs the Citus commands:
//
//	tenants distribute [NAME]...        make tenant schemas distributed schemas
//	                                    (every tenant when no name is given)
//	tenants move NAME --node HOST:PORT  move a tenant to another worker
//
// On plain PostgreSQL both return tenantplugin.ErrNotCitus.
func (c *Commands) citus(ctx context.Context, out io.Writer, cmd string, pos []string, flags map[string][]string) error {
	m := c.Migrator
	switch cmd {
	case "distribute":
		if len(flags) > 0 {
			return fmt.Errorf("%w: tenants distribute takes tenant names only\n%s", ErrUsage, Usage)
		}
		var names []string // nil: every registered tenant
		if len(pos) > 0 {
			names = pos
		}
		rep, err := m.DistributeTenants(ctx, names)
		if rep != nil {
			fmt.Fprintf(out, "%d tenants: distributed %d, already distributed %d, failed %d, skipped %d in %s\n",
				len(rep.Results), rep.Migrated, rep.UpToDate, rep.Failed, rep.Skipped, rep.Elapsed.Round(time.Millisecond))
		}
		return err
	case "move":
		nodes := flags["node"]
		if len(pos) != 1 || len(nodes) != 1 || len(flags) != 1 {
			return fmt.Errorf("%w: tenants move NAME --node HOST:PORT\n%s", ErrUsage, Usage)
		}
		st, err := m.MoveTenant(ctx, pos[0], nodes[0])
		if err != nil {
			return err
		}
		if st == tenantplugin.StateUpToDate {
			fmt.Fprintf(out, "tenant %s is already on %s\n", pos[0], nodes[0])
			return nil
		}
		fmt.Fprintf(out, "moved tenant %s to %s\n", pos[0], nodes[0])
		return nil
	}
	return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, cmd, Usage)
}
