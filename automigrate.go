package tenantplugin

import (
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// GORM's AutoMigrate adds the models a model depends on (the target of a
// belongs-to) to the list it migrates, and looks for tables in
// CURRENT_SCHEMA() only. Migrating the tenant models would therefore create
// a copy of each shared table they reference (plans) inside every tenant
// schema, with the tenant's foreign keys pointing at that copy. The migrator
// runs AutoMigrate through this dialector instead: its Migrator treats the
// tables of the other side (shared tables while migrating a tenant, tenant
// tables while migrating the shared schema) as existing and leaves them
// alone. Foreign keys to shared tables then resolve, through the search_path
// (tenant, shared, pg_temp), to the shared table.

type migrationDialector struct {
	gorm.Dialector
	skip func(table string) bool
}

// Migrator implements gorm.Dialector.
func (d migrationDialector) Migrator(db *gorm.DB) gorm.Migrator {
	return skippingMigrator{Migrator: d.Dialector.Migrator(db), db: db, skip: d.skip}
}

// SavePoint and RollbackTo keep nested transactions working in migrations.
func (d migrationDialector) SavePoint(tx *gorm.DB, name string) error {
	return d.Dialector.(gorm.SavePointerDialectorInterface).SavePoint(tx, name)
}

// RollbackTo implements gorm.SavePointerDialectorInterface.
func (d migrationDialector) RollbackTo(tx *gorm.DB, name string) error {
	return d.Dialector.(gorm.SavePointerDialectorInterface).RollbackTo(tx, name)
}

// Translate keeps GORM's TranslateError working.
func (d migrationDialector) Translate(err error) error {
	if t, ok := d.Dialector.(gorm.ErrorTranslator); ok {
		return t.Translate(err)
	}
	return err
}

type skippingMigrator struct {
	gorm.Migrator
	db   *gorm.DB
	skip func(table string) bool
}

// tableOf returns the table a migrator call is about, as given (possibly
// "schema.table").
func (m skippingMigrator) tableOf(value any) (string, bool) {
	if v, ok := value.(string); ok {
		return v, true
	}
	if m.db.Statement.Table != "" {
		return m.db.Statement.Table, true
	}
	stmt := &gorm.Statement{DB: m.db}
	if err := stmt.Parse(value); err != nil {
		return "", false
	}
	return stmt.Schema.Table, true
}

func (m skippingMigrator) skipped(value any) bool {
	table, ok := m.tableOf(value)
	if !ok || strings.IndexByte(table, '.') >= 0 {
		return false // explicitly qualified: the app knows where it lives
	}
	return m.skip(table)
}

// HasTable asks pg_catalog directly: GORM's query goes through
// information_schema.tables, whose privilege checks over every table of
// every tenant make it slow once the catalog holds thousands of tenants.
func (m skippingMigrator) HasTable(value any) bool {
	if m.skipped(value) {
		return true
	}
	table, ok := m.tableOf(value)
	if !ok {
		return m.Migrator.HasTable(value)
	}
	schema := "pg_catalog.current_schema()"
	args := []any{table}
	if i := strings.IndexByte(table, '.'); i >= 0 {
		schema, args = "$2", []any{table[i+1:], table[:i]}
	}
	var exists bool
	row := m.db.Statement.ConnPool.QueryRowContext(m.db.Statement.Context,
		"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"+
			" WHERE n.nspname = "+schema+" AND c.relname = $1 AND c.relkind IN ('r', 'p'))", args...)
	if err := row.Scan(&exists); err != nil {
		return m.Migrator.HasTable(value)
	}
	return exists
}

func (m skippingMigrator) CreateTable(values ...any) error {
	for _, v := range values {
		if m.skipped(v) {
			continue
		}
		if err := m.Migrator.CreateTable(v); err != nil {
			return err
		}
	}
	return nil
}

func (m skippingMigrator) ColumnTypes(value any) ([]gorm.ColumnType, error) {
	if m.skipped(value) {
		return nil, nil
	}
	return m.Migrator.ColumnTypes(value)
}

func (m skippingMigrator) AddColumn(value any, field string) error {
	if m.skipped(value) {
		return nil
	}
	return m.Migrator.AddColumn(value, field)
}

func (m skippingMigrator) MigrateColumn(value any, field *schema.Field, ct gorm.ColumnType) error {
	if m.skipped(value) {
		return nil
	}
	return m.Migrator.MigrateColumn(value, field, ct)
}

func (m skippingMigrator) MigrateColumnUnique(value any, field *schema.Field, ct gorm.ColumnType) error {
	if m.skipped(value) {
		return nil
	}
	return m.Migrator.MigrateColumnUnique(value, field, ct)
}

func (m skippingMigrator) HasConstraint(value any, name string) bool {
	return m.skipped(value) || m.Migrator.HasConstraint(value, name)
}

func (m skippingMigrator) CreateConstraint(value any, name string) error {
	if m.skipped(value) {
		return nil
	}
	return m.Migrator.CreateConstraint(value, name)
}

func (m skippingMigrator) HasIndex(value any, name string) bool {
	return m.skipped(value) || m.Migrator.HasIndex(value, name)
}

func (m skippingMigrator) CreateIndex(value any, name string) error {
	if m.skipped(value) {
		return nil
	}
	return m.Migrator.CreateIndex(value, name)
}

// migrationSession returns tx with the migration dialector: AutoMigrate on it
// touches only the tables of one side (tenant, or shared when shared is true).
func (p *Plugin) migrationSession(tx *gorm.DB, shared bool) *gorm.DB {
	s := tx.Session(&gorm.Session{})
	skip := func(table string) bool { return p.sharedTables[table] }
	if shared {
		tenant := make(map[string]bool, len(p.tenantTables))
		for _, t := range p.tenantTables {
			tenant[t] = true
		}
		skip = func(table string) bool { return tenant[table] }
	}
	s.Config.Dialector = migrationDialector{Dialector: tx.Dialector, skip: skip}
	return s
}
