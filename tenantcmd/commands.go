// Package tenantcmd is a ready-made set of operator commands (migrate, create
// and drop tenants, run SQL or Go functions in tenants) that an application
// mounts into its own binary, where its models and migrations live.
package tenantcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/gorm-tenancy/tenantplugin"
	"gorm.io/gorm"
)

// Commands is a ready-made set of operator commands that an application
// mounts into its own binary (where its models live):
//
//	migrate                                   shared schema, then every tenant
//	migrate rollback --to ID [--tenant NAME]  undo the migrations after ID
//	tenants list                              one name per line
//	tenants create NAME [--domain HOST]...
//	tenants drop NAME
//	tenants domains NAME                      list a tenant's hosts
//	tenants add-domain NAME HOST
//	tenants sql FILE (--tenant NAME | --all)  run a SQL file in each tenant
//	tenants run FUNC (--tenant NAME | --all)  run one of Funcs in each tenant
//	tenants distribute [NAME]...              Citus: distribute tenant schemas
//	tenants move NAME --node HOST:PORT        Citus: move a tenant to a worker
//	tenants rename OLD NEW                    Migrator.RenameTenant
//	tenants clone FROM TO [--domain HOST]...  Migrator.CloneTenant
//	tenants stats                             sizes, largest first
//
// migrate shows its progress on ProgressOut: a line redrawn in place on a
// terminal, plain lines otherwise.
type Commands struct {
	Migrator *tenantplugin.Migrator
	// Funcs are the Go functions "tenants run" can call by name. Each runs
	// in one transaction routed to its tenant (see RunInTenant).
	Funcs map[string]func(ctx context.Context, tx *gorm.DB) error
	Out   io.Writer // default os.Stdout
	// ProgressOut receives migrate's progress (default os.Stderr): on a
	// terminal one line redrawn in place (done/total, failed, rate,
	// remaining time), otherwise a plain line every 5% and one per failure.
	ProgressOut io.Writer
	// NoProgress keeps the Migrator's own progress callback (WithProgress)
	// for migrate and draws nothing.
	NoProgress bool
}

// ErrUsage is returned for a command line Commands does not understand.
var ErrUsage = errors.New("tenantcmd: usage")

// Usage is the command summary.
const Usage = `commands:
  migrate
  migrate rollback --to ID [--tenant NAME]...
  tenants list
  tenants create NAME [--domain HOST]...
  tenants drop NAME
  tenants domains NAME
  tenants add-domain NAME HOST
  tenants sql FILE (--tenant NAME | --all)
  tenants run FUNC (--tenant NAME | --all)
  tenants distribute [NAME]...
  tenants move NAME --node HOST:PORT
  tenants rename OLD NEW
  tenants clone FROM TO [--domain HOST]...
  tenants stats`

// Run executes one command line (without the program name).
func (c *Commands) Run(ctx context.Context, args []string) error {
	out := c.Out
	if out == nil {
		out = os.Stdout
	}
	m := c.Migrator
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", ErrUsage, Usage)
	}
	if args[0] == "migrate" {
		if len(args) > 1 {
			if args[1] != "rollback" {
				return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, strings.Join(args, " "), Usage)
			}
			return c.rollback(ctx, out, args[2:])
		}
		rep, err := c.migrate(ctx)
		if rep != nil {
			fmt.Fprintln(out, rep.String())
		}
		return err
	}
	if args[0] == "tenants" && len(args) == 1 {
		return fmt.Errorf("%w: tenants needs a subcommand\n%s", ErrUsage, Usage)
	}
	if args[0] != "tenants" {
		return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, strings.Join(args, " "), Usage)
	}
	pos, flags, err := parseFlags(args[2:], map[string]bool{"domain": true, "tenant": true, "all": false, "node": true})
	if err != nil {
		return err
	}
	need := func(n int) error {
		if len(pos) != n {
			return fmt.Errorf("%w: tenants %s takes %d argument(s)\n%s", ErrUsage, args[1], n, Usage)
		}
		return nil
	}
	switch args[1] {
	case "list":
		names, err := m.Tenants(ctx)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(out, n)
		}
		return nil
	case "create":
		if err := need(1); err != nil {
			return err
		}
		if err := m.CreateTenant(ctx, pos[0], flags["domain"]...); err != nil {
			return err
		}
		fmt.Fprintf(out, "created tenant %s\n", pos[0])
		return nil
	case "drop":
		if err := need(1); err != nil {
			return err
		}
		if err := m.DropTenant(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(out, "dropped tenant %s\n", pos[0])
		return nil
	case "domains":
		if err := need(1); err != nil {
			return err
		}
		hosts, err := m.Domains(ctx, pos[0])
		for _, h := range hosts {
			fmt.Fprintln(out, h)
		}
		return err
	case "add-domain":
		if err := need(2); err != nil {
			return err
		}
		return m.AddDomain(ctx, pos[0], pos[1])
	case "rename", "clone", "stats":
		return c.runTenantCommand(ctx, out, args[1], pos, flags)
	case "sql", "run":
		if err := need(1); err != nil {
			return err
		}
		var fn func(ctx context.Context, tx *gorm.DB) error
		if args[1] == "sql" {
			script, err := os.ReadFile(pos[0])
			if err != nil {
				return err
			}
			fn = func(ctx context.Context, tx *gorm.DB) error {
				// No arguments: pgx sends it over the simple protocol,
				// so a file may hold several statements.
				return tenantplugin.ExecScript(tx, string(script))
			}
		} else {
			fn = c.Funcs[pos[0]]
			if fn == nil {
				names := make([]string, 0, len(c.Funcs))
				for n := range c.Funcs {
					names = append(names, n)
				}
				sort.Strings(names)
				return fmt.Errorf("%w: no func %q (have: %s)", ErrUsage, pos[0], strings.Join(names, ", "))
			}
		}
		return c.eachTarget(ctx, out, flags, fn)
	case "distribute", "move":
		return c.citus(ctx, out, args[1], pos, flags) // citus.go
	}
	return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, strings.Join(args, " "), Usage)
}

// rollback runs "migrate rollback --to ID [--tenant NAME]...": the
// migrations after ID are undone in the tenants named, or in every tenant.
func (c *Commands) rollback(ctx context.Context, out io.Writer, args []string) error {
	pos, flags, err := parseFlags(args, map[string]bool{"to": true, "tenant": true})
	if err != nil {
		return err
	}
	if len(pos) != 0 || len(flags["to"]) != 1 || flags["to"][0] == "" {
		return fmt.Errorf("%w: migrate rollback takes --to ID once, and --tenant NAME\n%s", ErrUsage, Usage)
	}
	to := flags["to"][0]
	if len(flags["tenant"]) == 0 {
		rep, err := c.Migrator.RollbackTenantsTo(ctx, to)
		if rep != nil {
			fmt.Fprintln(out, rep.String())
		}
		return err
	}
	for _, name := range flags["tenant"] {
		st, err := c.Migrator.RollbackTenantTo(ctx, name, to)
		if err != nil {
			return err
		}
		if st == tenantplugin.StateMigrated {
			fmt.Fprintf(out, "rolled back tenant %s to %s\n", name, to)
		} else {
			fmt.Fprintf(out, "tenant %s: nothing after %s to roll back\n", name, to)
		}
	}
	return nil
}

func (c *Commands) eachTarget(ctx context.Context, out io.Writer, flags map[string][]string, fn func(context.Context, *gorm.DB) error) error {
	m := c.Migrator
	_, all := flags["all"]
	tenants := flags["tenant"]
	if all == (len(tenants) > 0) {
		return fmt.Errorf("%w: give either --tenant NAME or --all", ErrUsage)
	}
	names := tenants
	if all {
		var err error
		if names, err = m.Tenants(ctx); err != nil {
			return err
		}
	}
	rep, err := m.Plugin().RunInTenants(ctx, names, 0, func(tx *gorm.DB) error { return fn(tx.Statement.Context, tx) })
	if rep != nil {
		fmt.Fprintln(out, rep.String())
	}
	return err
}

// parseFlags splits args into positional arguments and --name value /
// --name=value flags; spec says which flags take a value.
func parseFlags(args []string, spec map[string]bool) ([]string, map[string][]string, error) {
	var pos []string
	flags := map[string][]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, ok := spec[name]
		if !ok {
			return nil, nil, fmt.Errorf("%w: unknown flag %q", ErrUsage, a)
		}
		if !takes {
			flags[name] = append(flags[name], "")
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("%w: flag %q needs a value", ErrUsage, a)
			}
			i++
			val = args[i]
		}
		flags[name] = append(flags[name], val)
	}
	return pos, flags, nil
}
