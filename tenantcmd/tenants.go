package tenantcmd

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
)

// runTenantCommand runs tenants rename, clone and stats.
func (c *Commands) runTenantCommand(ctx context.Context, out io.Writer, cmd string, pos []string, flags map[string][]string) error {
	m := c.Migrator
	need := func(n int) error {
		if len(pos) != n {
			return fmt.Errorf("%w: tenants %s takes %d argument(s)\n%s", ErrUsage, cmd, n, Usage)
		}
		return nil
	}
	switch cmd {
	case "rename":
		if err := need(2); err != nil {
			return err
		}
		if err := m.RenameTenant(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(out, "renamed tenant %s to %s\n", pos[0], pos[1])
		return nil
	case "clone":
		if err := need(2); err != nil {
			return err
		}
		if err := m.CloneTenant(ctx, pos[0], pos[1], flags["domain"]...); err != nil {
			return err
		}
		fmt.Fprintf(out, "cloned tenant %s to %s\n", pos[0], pos[1])
		return nil
	case "stats":
		if err := need(0); err != nil {
			return err
		}
		stats, err := m.TenantStats(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tTABLES\tROWS (EST.)\tTABLE\tINDEXES\tTOTAL")
		var total int64
		unanalyzed := false
		for _, s := range stats {
			rows := fmt.Sprint(s.Rows)
			if s.Unanalyzed > 0 {
				rows += "*"
				unanalyzed = true
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Tenant, s.Tables, rows,
				formatBytes(s.TableBytes), formatBytes(s.IndexBytes), formatBytes(s.TotalBytes()))
			total += s.TotalBytes()
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d tenants, %s in all, largest first\n", len(stats), formatBytes(total))
		if unanalyzed {
			fmt.Fprintln(out, "* some tables were never vacuumed or analyzed: their rows and pages are not in the estimates (ANALYZE, or wait for autovacuum)")
		}
		return nil
	}
	return fmt.Errorf("%w: unknown command tenants %s\n%s", ErrUsage, cmd, Usage)
}

// formatBytes writes n bytes the way pg_size_pretty does: bytes, kB, MB,
// GB, TB (powers of 1024).
func formatBytes(n int64) string {
	const unit = 1024
	if n < 10*unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v := float64(n)
	for _, u := range []string{"kB", "MB", "GB"} {
		v /= unit
		if v < 10*unit {
			return fmt.Sprintf("%.0f %s", v, u)
		}
	}
	return fmt.Sprintf("%.0f TB", v/unit)
}
