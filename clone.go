package tenantplugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// CloneTenant creates tenant to with the tables and rows of tenant from:
// the template-tenant pattern, where a sign-up gets a copy of a template
// tenant that holds the seed data. All or nothing, in one transaction under
// the advisory locks of both names (taken in name order):
//
//  1. to is created as CreateTenant creates a tenant: registry row, domains
//     (if given), schema, the pre-migrations, the tables replayed from the
//     captured DDL, the migrations (so its tenantplugin_migrations
//     bookkeeping is its own) and, with WithTenantRoles, its role;
//  2. its tables are emptied of anything the migrations inserted, and every
//     row of from's tables is copied in one INSERT ... SELECT statement per
//     table, all in one statement (foreign keys are checked at its end, so
//     table order and cycles do not matter; identity columns keep their
//     values);
//  3. every sequence of to is set to the state of from's sequence of the
//     same name (setval), so new rows continue after the copied ones; the
//     WithSeed functions do not run: the template's rows, its own seeded
//     rows included, are the clone's;
//  4. to is recorded with the current fingerprint: MigrateTenants finds it
//     up to date.
//
// from must be up to date with this Migrator's model set and migrations
// (its fingerprint is the current one), so that both schemas have the same
// shape: otherwise ErrNotUpToDate, and MigrateTenant(ctx, from) first. from
// is read in one statement (one snapshot); writes to it during the clone
// are not blocked.
//
// Errors: an invalid name (or to named after the login role, as with
// CreateTenant) gives ErrInvalidTenantName, from not registered or
// without schema ErrUnknownTenant, to already registered (or its schema
// existing) ErrTenantExists, a malformed domain ErrMalformedHost; other
// failures come as a *TenantError naming to. Nothing of to remains after an
// error, and from is never changed.
func (m *Migrator) CloneTenant(ctx context.Context, from, to string, domains ...string) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	if err := m.p.checkTenantName(from); err != nil {
		return err
	}
	if err := m.p.checkTenantName(to); err != nil {
		return err
	}
	if from == to {
		return fmt.Errorf("%w: %q (a tenant cannot be cloned onto itself)", ErrTenantExists, to)
	}
	hosts, err := normalizeHosts(domains)
	if err != nil {
		return err
	}
	plan, err := m.ddl(ctx)
	if err != nil {
		return err
	}
	err = m.cloneTenant(ctx, from, to, plan, hosts)
	m.p.Directory().Invalidate()
	if err != nil && !errors.Is(err, ErrTenantExists) && !errors.Is(err, ErrUnknownTenant) &&
		!errors.Is(err, ErrNotUpToDate) && !errors.Is(err, ErrInvalidTenantName) {
		var te *TenantError
		if !errors.As(err, &te) {
			err = &TenantError{Tenant: to, Op: "clone from " + from, Err: err}
		}
	}
	return err
}

func (m *Migrator) cloneTenant(ctx context.Context, from, to string, plan *ddlPlan, hosts []string) error {
	p := m.p
	before := func(tx *gorm.DB) error {
		if err := lockTenants(tx, from, to); err != nil {
			return err
		}
		return p.checkTemplate(tx, from, plan)
	}
	fill := func(ttx *gorm.DB) error {
		if err := copyTenantData(ttx, from, to); err != nil {
			return fmt.Errorf("copy rows: %w", err)
		}
		return nil
	}
	// As CreateTenant creates a tenant, with the copy in place of the seeds.
	return m.createTenantWith(ctx, to, plan, hosts, before, fill)
}

// checkTemplate makes sure from is registered, has its schema and is up to
// date with plan, so that its tables have the shape of a new tenant's.
func (p *Plugin) checkTemplate(tx *gorm.DB, from string, plan *ddlPlan) error {
	q := `SELECT t.fingerprint, EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = t.name)
  FROM ` + p.sharedQuoted + "." + QuoteIdentifier(TenantRecord{}.TableName()) + ` t WHERE t.name = $1 FOR SHARE`
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, q, from)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return notRegistered(from)
	}
	var fingerprint string
	var schema bool
	if err := rows.Scan(&fingerprint, &schema); err != nil {
		return err
	}
	if !schema {
		return &UnknownTenantError{Tenant: from}
	}
	if fingerprint != plan.fingerprint {
		return &TenantError{Tenant: from, Op: "clone", Err: fmt.Errorf(
			"%w: its fingerprint is %q, the current one %q (migrate it first)", ErrNotUpToDate, fingerprint, plan.fingerprint)}
	}
	return rows.Err()
}

// copyTenantData replaces the rows of to's tables with from's and sets to's
// sequences to from's state, in two round trips whatever the number of
// tables: one catalog query listing to's tables and sequences, then one
// script that empties to's tables, copies from's rows and sets the
// sequences. Names come from the catalog and are quoted.
func copyTenantData(tx *gorm.DB, from, to string) error {
	conn := tx.Statement.ConnPool
	c := tx.Statement.Context
	// Tables of to (partitions are reached through their parent) with
	// their stored columns in order, then its sequences; the bookkeeping
	// table stays to's own.
	const listQ = `
SELECT c.relkind::text, c.relname,
       coalesce((SELECT string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname <> $2
   AND (c.relkind IN ('r', 'p') AND NOT c.relispartition OR c.relkind = 'S')
 ORDER BY 1, 2`
	rows, err := conn.QueryContext(c, listQ, to, migrationsTable)
	if err != nil {
		return err
	}
	src, dst := QuoteIdentifier(from), QuoteIdentifier(to)
	var deletes, inserts, setvals []string
	for rows.Next() {
		var kind, name, cols string
		if err := rows.Scan(&kind, &name, &cols); err != nil {
			rows.Close()
			return err
		}
		q := QuoteIdentifier(name)
		if kind == "S" {
			setvals = append(setvals, fmt.Sprintf("SELECT pg_catalog.setval(%s::pg_catalog.regclass, s.last_value, s.is_called) FROM %s.%s s",
				quoteLiteral(dst+"."+q), src, q))
			continue
		}
		n := len(deletes)
		deletes = append(deletes, fmt.Sprintf("d%d AS (DELETE FROM %s.%s)", n, dst, q))
		inserts = append(inserts, fmt.Sprintf("c%d AS (INSERT INTO %s.%s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s.%s)",
			n, dst, q, cols, cols, src, q))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// Each WITH statement checks foreign keys at its end: table order and
	// cycles do not matter. The delete removes what a migration inserted.
	var script strings.Builder
	if len(deletes) > 0 {
		script.WriteString("WITH " + strings.Join(deletes, ", ") + " SELECT 1;\n")
		script.WriteString("WITH " + strings.Join(inserts, ",\n") + " SELECT 1;\n")
	}
	if len(setvals) > 0 {
		script.WriteString(strings.Join(setvals, "\nUNION ALL ") + ";\n")
	}
	if script.Len() == 0 {
		return nil
	}
	_, err = unprepared(conn).ExecContext(c, script.String())
	return err
}
