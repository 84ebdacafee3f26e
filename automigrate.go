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

func (m skippingMigrator) skipped(value any) bool {
	var table string
	switch v := value.(type) {
	case string:
		table = v
	default:
		if m.db.Statement.Table != "" {
			table = m.db.Statement.Table
		} else {
			stmt := &gorm.Statement{DB: m.db}
			if err := stmt.Parse(value); err != nil {
				return false
			}
			table = stmt.Table
		}
	}
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		return false // explicitly qualified: the app knows where it lives
	}
	return m.skip(table)
}

func (m skippingMigrator) HasTable(value any) bool {
	return m.skipped(value) || m.Migrator.HasTable(value)
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
