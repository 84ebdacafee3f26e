package tenantplugin

import (
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// GORM's own Migrator (db.Migrator(), db.AutoMigrate) builds raw SQL on
// unqualified table names, which the clause builders never see: without a
// tenant it would create, inspect or drop tenant tables in whatever schema
// the connection's default search_path names (db.AutoMigrate(&Poll{}) would
// create public.polls, a shadow every tenant's raw SQL could then reach).
// db.Use(plugin) therefore wraps the database's dialector; its Migrator
// routes each call by the layout, like every other statement:
//
//   - a tenant table with no tenant in the context fails with ErrNoTenant
//     and sends nothing (the methods that return only a bool, such as
//     HasTable, return false);
//   - with a tenant, tenant tables are migrated in the tenant's schema and
//     shared tables in the shared schema, in one transaction whose
//     search_path is set right after BEGIN (inside the caller's transaction
//     when there is one);
//   - shared tables with no tenant go to the shared schema;
//   - names that spell out a schema ("public.polls") run as written.
//
// Inside the library's own transactions (migrations, RunInTenant) the
// search_path is already set, and GORM's Migrator runs unchanged.
type guardDialector struct {
	gorm.Dialector
	p *Plugin
}

// Migrator implements gorm.Dialector.
func (d guardDialector) Migrator(db *gorm.DB) gorm.Migrator {
	inner := d.Dialector.Migrator(db)
	if v := valueFrom(db.Statement.Context); v != nil && v.pathSetOn(db.Statement.ConnPool) {
		if v.shared || v.capture {
			return inner
		}
		// The library's transaction for a tenant (RunInTenant, a seed, a
		// migration): shared tables are the shared schema's, so AutoMigrate
		// leaves them alone and HasTable finds them, as migrations do
		// (migrationSession; a breaker's finding: plans was copied into the
		// tenant's schema).
		if _, ok := db.Dialector.(migrationDialector); !ok { // which wraps it itself
			inner = skippingMigrator{Migrator: inner, db: db, skip: d.p.layout.isShared}
		}
		return dropGuard{Migrator: inner, db: db, tenant: v.name}
	}
	return guardedMigrator{Migrator: inner, p: d.p, db: db}
}

// dropGuard is GORM's Migrator inside a tenant's own transaction
// (RunInTenant, migrations). GORM's DropTable sends DROP TABLE ... CASCADE,
// which follows dependencies out of the tenant's schema (a shared view over
// the table, another schema's foreign key): while anything outside depends
// on the tenant's schema, it refuses, naming what, and drops nothing.
type dropGuard struct {
	gorm.Migrator
	db     *gorm.DB
	tenant string
}

// GuessConstraintInterfaceAndTable keeps GORM's name-to-constraint mapping
// reachable (see skippingMigrator.HasConstraint).
func (g dropGuard) GuessConstraintInterfaceAndTable(stmt *gorm.Statement, name string) (schema.ConstraintInterface, string) {
	if cg, ok := g.Migrator.(constraintGuesser); ok {
		return cg.GuessConstraintInterfaceAndTable(stmt, name)
	}
	return nil, stmt.Table
}

// DropTable implements gorm.Migrator: refused, dropping nothing, when
// anything outside the tenant's schema depends on one of the tables.
func (g dropGuard) DropTable(values ...any) error {
	tables := make([]string, 0, len(values))
	for _, v := range values {
		switch x := v.(type) {
		case string:
			if strings.IndexByte(x, '.') < 0 {
				tables = append(tables, x)
			}
		default:
			stmt := &gorm.Statement{DB: g.db}
			if err := stmt.Parse(v); err == nil && strings.IndexByte(stmt.Table, '.') < 0 {
				tables = append(tables, stmt.Table)
			}
		}
	}
	objs, err := tableDependents(g.db.Statement.Context, g.db.Statement.ConnPool, g.tenant, tables)
	if err != nil {
		return err
	}
	if len(objs) > 0 {
		return &DependencyError{Tenant: g.tenant, Op: "drop table", Objects: objs}
	}
	return g.Migrator.DropTable(values...)
}

// SavePoint keeps nested transactions working (gorm.SavePointerDialectorInterface).
func (d guardDialector) SavePoint(tx *gorm.DB, name string) error {
	return d.Dialector.(gorm.SavePointerDialectorInterface).SavePoint(tx, name)
}

// RollbackTo implements gorm.SavePointerDialectorInterface.
func (d guardDialector) RollbackTo(tx *gorm.DB, name string) error {
	return d.Dialector.(gorm.SavePointerDialectorInterface).RollbackTo(tx, name)
}

// Translate keeps GORM's TranslateError working (gorm.ErrorTranslator).
func (d guardDialector) Translate(err error) error {
	if t, ok := d.Dialector.(gorm.ErrorTranslator); ok {
		return t.Translate(err)
	}
	return err
}

// guardedMigrator is GORM's Migrator routed by the layout. Every method of
// gorm.Migrator that sends SQL about a table is wrapped; the others
// (CurrentDatabase, FullDataTypeOf, GetTypeAliases) send nothing about
// tables and are GORM's.
type guardedMigrator struct {
	gorm.Migrator
	p  *Plugin
	db *gorm.DB
}

// target is where one call's tables live.
type target int

const (
	targetExplicit target = iota // every name spells out its schema
	targetShared
	targetTenant
)

// tableOf returns the table a migrator argument names.
func (g guardedMigrator) tableOf(value any) string {
	switch v := value.(type) {
	case string:
		return v
	case nil:
		return ""
	}
	if g.db.Statement.Table != "" {
		return g.db.Statement.Table
	}
	stmt := &gorm.Statement{DB: g.db}
	if err := stmt.Parse(value); err != nil || stmt.Schema == nil {
		return ""
	}
	return stmt.Schema.Table
}

func (g guardedMigrator) classify(value any) (target, string) {
	table := g.tableOf(value)
	switch {
	case strings.IndexByte(table, '.') >= 0:
		return targetExplicit, table
	case table != "" && g.p.layout.isShared(table):
		return targetShared, table
	}
	return targetTenant, table
}

// with runs fn on migrators routed for values: shared values in the shared
// schema, tenant values in the context's tenant schema, all in one
// transaction. fn is called once per side that has values, with those
// values.
func (g guardedMigrator) with(values []any, fn func(m gorm.Migrator, values []any) error) error {
	v := valueFrom(g.db.Statement.Context)
	if v != nil && v.err != nil {
		return v.err
	}
	var explicit, shared, tenant []any
	for _, val := range values {
		switch t, table := g.classify(val); t {
		case targetExplicit:
			explicit = append(explicit, val)
		case targetShared:
			shared = append(shared, val)
		default:
			if v == nil || v.shared {
				if table == "" {
					table = "?"
				}
				return noTenantError(table)
			}
			tenant = append(tenant, val)
		}
	}
	if v != nil && !v.shared {
		if reason := g.p.notATenant(v.name); reason != "" {
			return &NameError{Name: v.name, Reason: reason}
		}
	}
	if len(explicit) > 0 {
		if err := fn(g.Migrator, explicit); err != nil {
			return err
		}
	}
	if len(shared) == 0 && len(tenant) == 0 {
		return nil
	}
	return g.tx(func(tx *gorm.DB) error {
		if len(shared) > 0 {
			m, err := g.routed(tx, &tenantValue{shared: true}, true)
			if err != nil {
				return err
			}
			if err := fn(m, shared); err != nil {
				return err
			}
		}
		if len(tenant) > 0 {
			m, err := g.routed(tx, v, false)
			if err != nil {
				return err
			}
			return fn(m, tenant)
		}
		return nil
	})
}

// tx runs fn in the caller's transaction, or in a new one. In the
// caller's transaction the search_path fn set (routed) is reset afterwards,
// as after a routed raw statement (a breaker's finding: what ran next in
// the transaction saw the tenant's path); the library's own transactions
// keep theirs.
func (g guardedMigrator) tx(fn func(tx *gorm.DB) error) error {
	pool := g.db.Statement.ConnPool
	if _, inTx := pool.(gorm.TxCommitter); !inTx {
		return g.db.Transaction(fn)
	}
	err := fn(g.db)
	if _, owned := g.p.owned.Load(unprepared(pool)); owned {
		return err
	}
	// Whatever fn returned: an error of GORM's own (a field it cannot
	// find) leaves the transaction usable and the path set (a breaker's
	// finding). After a failed statement the transaction is aborted and the
	// reset fails too; fn's error is the one to report.
	_, rerr := unprepared(pool).ExecContext(g.db.Statement.Context, resetPath[0])
	return firstErr(err, rerr)
}

// routed sets tx's search_path to v's and returns GORM's Migrator on it, as
// a migration session of v's side (see migrationSession).
func (g guardedMigrator) routed(tx *gorm.DB, v *tenantValue, shared bool) (gorm.Migrator, error) {
	if _, err := g.p.checkOwner(tx.Statement.ConnPool, v); err != nil {
		return nil, err
	}
	if err := g.p.setPath(tx, v); err != nil {
		return nil, err
	}
	s := g.p.migrationSession(tx.WithContext(withPathSet(g.db.Statement.Context, v, tx.Statement.ConnPool)), shared)
	if t := g.db.Statement.Table; t != "" {
		s = s.Table(t)
	}
	return s.Migrator(), nil
}

// one runs fn for a single value and returns its result.
func one[T any](g guardedMigrator, value any, fn func(m gorm.Migrator) (T, error)) (T, error) {
	var out T
	err := g.with([]any{value}, func(m gorm.Migrator, _ []any) error {
		var err error
		out, err = fn(m)
		return err
	})
	return out, err
}

// AutoMigrate implements gorm.Migrator.
func (g guardedMigrator) AutoMigrate(values ...any) error {
	return g.with(values, func(m gorm.Migrator, vs []any) error { return m.AutoMigrate(vs...) })
}

// CreateTable implements gorm.Migrator.
func (g guardedMigrator) CreateTable(values ...any) error {
	return g.with(values, func(m gorm.Migrator, vs []any) error { return m.CreateTable(vs...) })
}

// DropTable implements gorm.Migrator.
func (g guardedMigrator) DropTable(values ...any) error {
	return g.with(values, func(m gorm.Migrator, vs []any) error { return m.DropTable(vs...) })
}

// HasTable implements gorm.Migrator; false when the table's schema cannot be
// chosen (no tenant for a tenant table).
func (g guardedMigrator) HasTable(value any) bool {
	ok, _ := one(g, value, func(m gorm.Migrator) (bool, error) { return m.HasTable(value), nil })
	return ok
}

// RenameTable implements gorm.Migrator, routed by the old name.
func (g guardedMigrator) RenameTable(oldName, newName any) error {
	return g.with([]any{oldName}, func(m gorm.Migrator, _ []any) error { return m.RenameTable(oldName, newName) })
}

// GetTables implements gorm.Migrator: the tables of the context's tenant
// schema, or of the shared schema with no tenant.
func (g guardedMigrator) GetTables() ([]string, error) {
	v := valueFrom(g.db.Statement.Context)
	if v != nil && v.err != nil {
		return nil, v.err
	}
	if v == nil {
		v = &tenantValue{shared: true}
	}
	var out []string
	err := g.tx(func(tx *gorm.DB) error {
		m, err := g.routed(tx, v, v.shared)
		if err != nil {
			return err
		}
		out, err = m.GetTables()
		return err
	})
	return out, err
}

// TableType implements gorm.Migrator.
func (g guardedMigrator) TableType(value any) (gorm.TableType, error) {
	return one(g, value, func(m gorm.Migrator) (gorm.TableType, error) { return m.TableType(value) })
}

// AddColumn implements gorm.Migrator.
func (g guardedMigrator) AddColumn(value any, field string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.AddColumn(value, field) })
}

// DropColumn implements gorm.Migrator.
func (g guardedMigrator) DropColumn(value any, name string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.DropColumn(value, name) })
}

// AlterColumn implements gorm.Migrator.
func (g guardedMigrator) AlterColumn(value any, field string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.AlterColumn(value, field) })
}

// MigrateColumn implements gorm.Migrator.
func (g guardedMigrator) MigrateColumn(value any, field *schema.Field, ct gorm.ColumnType) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.MigrateColumn(value, field, ct) })
}

// MigrateColumnUnique implements gorm.Migrator.
func (g guardedMigrator) MigrateColumnUnique(value any, field *schema.Field, ct gorm.ColumnType) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.MigrateColumnUnique(value, field, ct) })
}

// HasColumn implements gorm.Migrator.
func (g guardedMigrator) HasColumn(value any, field string) bool {
	ok, _ := one(g, value, func(m gorm.Migrator) (bool, error) { return m.HasColumn(value, field), nil })
	return ok
}

// RenameColumn implements gorm.Migrator.
func (g guardedMigrator) RenameColumn(value any, oldName, field string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.RenameColumn(value, oldName, field) })
}

// ColumnTypes implements gorm.Migrator.
func (g guardedMigrator) ColumnTypes(value any) ([]gorm.ColumnType, error) {
	return one(g, value, func(m gorm.Migrator) ([]gorm.ColumnType, error) { return m.ColumnTypes(value) })
}

// CreateView implements gorm.Migrator, routed by the view's name.
func (g guardedMigrator) CreateView(name string, option gorm.ViewOption) error {
	return g.with([]any{name}, func(m gorm.Migrator, _ []any) error { return m.CreateView(name, option) })
}

// DropView implements gorm.Migrator.
func (g guardedMigrator) DropView(name string) error {
	return g.with([]any{name}, func(m gorm.Migrator, _ []any) error { return m.DropView(name) })
}

// CreateConstraint implements gorm.Migrator.
func (g guardedMigrator) CreateConstraint(value any, name string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.CreateConstraint(value, name) })
}

// DropConstraint implements gorm.Migrator.
func (g guardedMigrator) DropConstraint(value any, name string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.DropConstraint(value, name) })
}

// HasConstraint implements gorm.Migrator.
func (g guardedMigrator) HasConstraint(value any, name string) bool {
	ok, _ := one(g, value, func(m gorm.Migrator) (bool, error) { return m.HasConstraint(value, name), nil })
	return ok
}

// CreateIndex implements gorm.Migrator.
func (g guardedMigrator) CreateIndex(value any, name string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.CreateIndex(value, name) })
}

// DropIndex implements gorm.Migrator.
func (g guardedMigrator) DropIndex(value any, name string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.DropIndex(value, name) })
}

// HasIndex implements gorm.Migrator.
func (g guardedMigrator) HasIndex(value any, name string) bool {
	ok, _ := one(g, value, func(m gorm.Migrator) (bool, error) { return m.HasIndex(value, name), nil })
	return ok
}

// RenameIndex implements gorm.Migrator.
func (g guardedMigrator) RenameIndex(value any, oldName, newName string) error {
	return g.with([]any{value}, func(m gorm.Migrator, _ []any) error { return m.RenameIndex(value, oldName, newName) })
}

// GetIndexes implements gorm.Migrator.
func (g guardedMigrator) GetIndexes(value any) ([]gorm.Index, error) {
	return one(g, value, func(m gorm.Migrator) ([]gorm.Index, error) { return m.GetIndexes(value) })
}
