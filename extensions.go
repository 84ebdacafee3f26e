package tenantplugin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"
)

// Database-wide objects: extensions, the types, functions and operators they
// bring, and everything a DROP SCHEMA ... CASCADE could reach outside a
// tenant's schema.
//
// Name resolution. GORM-built statements name their tables qualified, but
// resolve operators, types and functions through the connection's default
// search_path; raw statements resolve everything through the path the
// library sets (tenant, shared schema, extension schemas, pg_temp). For the
// two to agree on an extension's objects (citext's case-insensitive "=",
// say), every extension must live where both see it: in the shared schema
// or an extension schema (WithExtensionSchemas), and on the connections'
// default search_path. MigrateShared checks both at start-up.

// checkExtensionSchemaNames validates WithExtensionSchemas: valid names (or
// public), not the shared schema.
func (p *Plugin) checkExtensionSchemaNames() error {
	for _, s := range p.extSchemas {
		if s != "public" {
			if err := ValidateName(s); err != nil {
				return fmt.Errorf("tenantplugin: extension schema: %w", err)
			}
		}
		if s == p.sharedSchema {
			return fmt.Errorf("tenantplugin: extension schema %q is the shared schema, which every search path holds already", s)
		}
	}
	return nil
}

// checkDatabaseObjects runs at start-up (MigrateShared), in tx, before the
// transaction's search_path is set: it compares where the extensions live
// with the paths statements resolve through.
func (p *Plugin) checkDatabaseObjects(tx *gorm.DB) error {
	ctx, pool := tx.Statement.Context, tx.Statement.ConnPool
	var defaultPath string
	var visible []string
	rows, err := pool.QueryContext(ctx, "SELECT pg_catalog.current_setting('search_path'), s FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) AS s")
	if err != nil {
		return err
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&defaultPath, &s); err != nil {
			rows.Close()
			return err
		}
		visible = append(visible, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if defaultPath == "" {
		row := pool.QueryRowContext(ctx, "SELECT pg_catalog.current_setting('search_path')")
		if err := row.Scan(&defaultPath); err != nil {
			return err
		}
	}
	for _, s := range p.extSchemas {
		var exists bool
		if err := pool.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", s).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("extension schema %q does not exist: create it, and its extensions, in a shared migration (WithSharedMigrations) or before start-up", s)
		}
		if !slices.Contains(visible, s) {
			return fmt.Errorf("extension schema %q is not on the connections' default search_path (%s), so GORM-built statements would not see its types, functions and operators while raw SQL does: "+
				"add it to the default path (search_path in the DSN, or ALTER ROLE ... IN DATABASE ... SET search_path; GuardDefaultSearchPath sets it)", s, defaultPath)
		}
		if err := extensionSchemaTables(ctx, pool, s); err != nil {
			return err
		}
	}
	rows, err = pool.QueryContext(ctx, `SELECT e.extname, n.nspname FROM pg_catalog.pg_extension e
		JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname <> 'pg_catalog' ORDER BY 1`)
	if err != nil {
		return err
	}
	type ext struct{ name, schema string }
	var exts []ext
	for rows.Next() {
		var e ext
		if err := rows.Scan(&e.name, &e.schema); err != nil {
			rows.Close()
			return err
		}
		exts = append(exts, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, e := range exts {
		if e.schema != p.sharedSchema && !slices.Contains(p.extSchemas, e.schema) {
			if p.isRegisteredTenant(ctx, pool, e.schema) {
				return fmt.Errorf("extension %s lives in tenant %q's schema (a raw CREATE EXTENSION run for that tenant puts it there, and every tenant's raw SQL and DropTenant then depend on it): "+
					"move it to the shared schema or an extension schema (ALTER EXTENSION %s SET SCHEMA %s), and create extensions in a shared migration (WithSharedMigrations) or with CREATE EXTENSION name SCHEMA schema", e.name, e.schema, e.name, p.sharedQuoted)
			}
			return fmt.Errorf("extension %s lives in schema %q, which raw SQL for tenants does not see (its path is the tenant, %s): "+
				"name the schema in WithExtensionSchemas, or move the extension (ALTER EXTENSION %s SET SCHEMA ...)", e.name, e.schema, p.sharedPath, e.name)
		}
		if !slices.Contains(visible, e.schema) {
			return fmt.Errorf("extension %s lives in schema %q, which is not on the connections' default search_path (%s), so GORM-built statements would not see its types, functions and operators while raw SQL does: "+
				"add %q to the default path (search_path in the DSN, or ALTER ROLE ... IN DATABASE ... SET search_path), or move the extension to an extension schema that is on it", e.name, e.schema, defaultPath, e.schema)
		}
	}
	return nil
}

// isRegisteredTenant reports whether name is in the registry (false when
// the registry does not exist yet). It sends nothing that can fail, so it is
// safe inside a transaction.
func (p *Plugin) isRegisteredTenant(ctx context.Context, pool gorm.ConnPool, name string) bool {
	registry := p.qualifiedShared(TenantRecord{}.TableName())
	var exists bool
	if err := pool.QueryRowContext(ctx, "SELECT pg_catalog.to_regclass($1) IS NOT NULL", registry).Scan(&exists); err != nil || !exists {
		return false
	}
	err := pool.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM "+registry+" WHERE name = $1)", name).Scan(&exists)
	return err == nil && exists
}

// checkSharedSchemaIsNoTenant refuses a shared schema that is registered as
// a tenant in any registry of the database (the registry would live inside
// the tenant, and dropping the tenant would delete it), and a registered
// tenant named after the login role (see CreateTenant).
func (p *Plugin) checkSharedSchemaIsNoTenant(ctx context.Context, pool gorm.ConnPool) error {
	registries, err := listStrings(ctx, pool, `SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1`, TenantRecord{}.TableName())
	if err != nil {
		return err
	}
	for _, r := range registries {
		table := QuoteIdentifier(r) + "." + QuoteIdentifier(TenantRecord{}.TableName())
		found, err := listStrings(ctx, pool, "SELECT name FROM "+table+" WHERE name IN ($1, session_user, current_user) ORDER BY 1", p.sharedSchema)
		if err != nil {
			return err
		}
		for _, name := range found {
			if name == p.sharedSchema {
				return fmt.Errorf("the shared schema %q is a tenant registered in %s: the shared schema can never be a tenant", p.sharedSchema, table)
			}
			if r == p.sharedSchema {
				return fmt.Errorf("tenant %q has the name of the role the application connects as: the default search_path (\"$user\", public) resolves unrouted SQL to its tables; rename the tenant or connect as another role", name)
			}
		}
	}
	return nil
}

// extensionSchemaTables refuses an extension schema that holds tables of
// its own (extension members excepted): raw SQL for every tenant would reach
// them.
func extensionSchemaTables(ctx context.Context, pool gorm.ConnPool, schema string) error {
	tables, err := listStrings(ctx, pool, `SELECT c.relname FROM pg_catalog.pg_class c
		WHERE c.relnamespace = $1::pg_catalog.regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
		                  AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1`, QuoteIdentifier(schema))
	if err != nil {
		return err
	}
	if len(tables) > 0 {
		return fmt.Errorf("extension schema %q holds tables (%s): raw SQL for every tenant would reach them; move them to the shared schema or drop them", schema, strings.Join(tables, ", "))
	}
	return nil
}

func listStrings(ctx context.Context, pool gorm.ConnPool, q string, args ...any) ([]string, error) {
	rows, err := pool.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// outsideDependents lists, as PostgreSQL describes them, the objects that
// tie schema to the rest of the database: objects outside it that depend on
// objects inside it (DROP SCHEMA ... CASCADE would drop them too, a column
// of a shared table of an extension's type, say), and database-wide objects
// inside it (an extension, a cast). Objects that belong to the schema's own
// relations (defaults, triggers, rules, policies, operator family members)
// and internal dependencies (toast tables, array types) are the schema's
// own. One catalog query.
func outsideDependents(ctx context.Context, pool gorm.ConnPool, schema string) ([]string, error) {
	return listStrings(ctx, pool, outsideDependentsSQL, QuoteIdentifier(schema))
}

// tableDependents lists the objects outside schema that DROP TABLE ...
// CASCADE of tables (names in schema) would drop too.
func tableDependents(ctx context.Context, pool gorm.ConnPool, schema string, tables []string) ([]string, error) {
	qualified := make([]string, len(tables))
	for i, t := range tables {
		qualified[i] = QuoteIdentifier(schema) + "." + QuoteIdentifier(t)
	}
	return listStrings(ctx, pool, tableDependentsSQL, QuoteIdentifier(schema), qualified)
}

// outsideDependentsSQL's common part: ns is the schema ($1), inside every
// object that lives in it.
const insideSQL = `
WITH ns AS (SELECT $1::pg_catalog.regnamespace AS oid),
inside (classid, objid) AS (
          SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass, oid FROM ns
UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_class x, ns WHERE x.relnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_type x, ns WHERE x.typnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_proc x, ns WHERE x.pronamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_constraint x, ns WHERE x.connamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_operator x, ns WHERE x.oprnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_opclass x, ns WHERE x.opcnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_opfamily x, ns WHERE x.opfnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_collation x, ns WHERE x.collnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_conversion x, ns WHERE x.connamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_ts_config x, ns WHERE x.cfgnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_ts_dict x, ns WHERE x.dictnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_ts_parser'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_ts_parser x, ns WHERE x.prsnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_ts_template'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_ts_template x, ns WHERE x.tmplnamespace = ns.oid
UNION ALL SELECT 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_statistic_ext x, ns WHERE x.stxnamespace = ns.oid
)`

// outsideDependentsSQL: dependents of every object of the schema.
const outsideDependentsSQL = insideSQL + `,
targets (classid, objid) AS (SELECT classid, objid FROM inside)
` + dependentsSQL

// tableDependentsSQL: dependents of the tables $2 (qualified names; missing
// ones skipped) and of their indexes, constraints, row types and owned
// sequences: what DROP TABLE ... CASCADE would reach.
const tableDependentsSQL = insideSQL + `,
rels AS (SELECT pg_catalog.to_regclass(x)::pg_catalog.oid AS oid FROM pg_catalog.unnest($2::text[]) AS x WHERE pg_catalog.to_regclass(x) IS NOT NULL),
targets (classid, objid) AS (
          SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, oid FROM rels
UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid FROM pg_catalog.pg_index i JOIN rels ON i.indrelid = rels.oid
UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, c.reltype FROM pg_catalog.pg_class c JOIN rels ON c.oid = rels.oid
UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.typarray FROM pg_catalog.pg_type t JOIN pg_catalog.pg_class c ON t.oid = c.reltype JOIN rels ON c.oid = rels.oid
UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid FROM pg_catalog.pg_constraint k JOIN rels ON k.conrelid = rels.oid
UNION ALL SELECT d.classid, d.objid FROM pg_catalog.pg_depend d JOIN rels ON d.refobjid = rels.oid
           WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'a'
)
` + dependentsSQL

// dependentsSQL lists the objects outside the schema that depend on the
// targets.
const dependentsSQL = `
SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_catalog.pg_depend d
  JOIN targets i ON d.refclassid = i.classid AND d.refobjid = i.objid
 WHERE d.deptype IN ('n', 'a')
   AND NOT EXISTS (SELECT 1 FROM inside o WHERE o.classid = d.classid AND o.objid = d.objid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef x JOIN pg_catalog.pg_class r ON r.oid = x.adrelid, ns
                    WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND x.oid = d.objid AND r.relnamespace = ns.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger x JOIN pg_catalog.pg_class r ON r.oid = x.tgrelid, ns
                    WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND x.oid = d.objid AND r.relnamespace = ns.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite x JOIN pg_catalog.pg_class r ON r.oid = x.ev_class, ns
                    WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND x.oid = d.objid AND r.relnamespace = ns.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy x JOIN pg_catalog.pg_class r ON r.oid = x.polrelid, ns
                    WHERE d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND x.oid = d.objid AND r.relnamespace = ns.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_default_acl x, ns
                    WHERE d.classid = 'pg_catalog.pg_default_acl'::pg_catalog.regclass AND x.oid = d.objid AND x.defaclnamespace = ns.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_amop x JOIN pg_catalog.pg_opfamily f ON f.oid = x.amopfamily, ns
                    WHERE d.classid = 'pg_catalog.pg_amop'::pg_catalog.regclass AND x.oid = d.objid AND f.opfnamespace = ns.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_amproc x JOIN pg_catalog.pg_opfamily f ON f.oid = x.amprocfamily, ns
                    WHERE d.classid = 'pg_catalog.pg_amproc'::pg_catalog.regclass AND x.oid = d.objid AND f.opfnamespace = ns.oid)
 ORDER BY 1`

// checkTenantObjects fails a tenant's migration that changed what ties its
// schema to the rest of the database (see outsideDependents), given the
// list before the migrations ran: a new tie (an extension created in the
// schema, a shared view over a tenant table) or a lost one (a shared view
// dropped by a DROP ... CASCADE) rolls the tenant's transaction back.
func (p *Plugin) checkTenantObjects(tx *gorm.DB, tenant string, before []string) error {
	after, err := outsideDependents(tx.Statement.Context, tx.Statement.ConnPool, tenant)
	if err != nil {
		return fmt.Errorf("check database-wide objects: %w", err)
	}
	var added, lost []string
	for _, o := range after {
		if !slices.Contains(before, o) {
			added = append(added, o)
		}
	}
	for _, o := range before {
		if !slices.Contains(after, o) {
			lost = append(lost, o)
		}
	}
	if len(added) > 0 {
		return &DependencyError{Tenant: tenant, Op: "migrate", Objects: added}
	}
	if len(lost) > 0 {
		return &DependencyError{Tenant: tenant, Op: "migrate", Objects: lost, Dropped: true}
	}
	return nil
}

// isDependencyError reports a *DependencyError in err.
func isDependencyError(err error) bool {
	var de *DependencyError
	return errors.As(err, &de)
}
