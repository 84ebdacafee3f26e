package tenantplugin

import (
	"database/sql"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"gorm.io/driver/postgres"
	"gorm.io/gorm/migrator"

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

func (m skippingMigrator) AddColumn(value any, field string) error {
	if m.skipped(value) {
		return nil
	}
	return m.Migrator.AddColumn(value, field)
}

// MigrateColumn skips the driver's column-comment check when the field has no
// comment: that check runs an information_schema query for every column of
// every table (about 48 ms each, measured at 300 tenants), and with no
// comment it can change nothing.
func (m skippingMigrator) MigrateColumn(value any, field *schema.Field, ct gorm.ColumnType) error {
	if m.skipped(value) {
		return nil
	}
	if pm, ok := m.Migrator.(postgres.Migrator); ok && field.Comment == "" {
		if field.PrimaryKey { // as the driver: primary keys are left alone
			return nil
		}
		return pm.Migrator.MigrateColumn(value, field, ct)
	}
	return m.Migrator.MigrateColumn(value, field, ct)
}

func (m skippingMigrator) MigrateColumnUnique(value any, field *schema.Field, ct gorm.ColumnType) error {
	if m.skipped(value) {
		return nil
	}
	return m.Migrator.MigrateColumnUnique(value, field, ct)
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
// touches only the tables of one side (tenant, or shared when shared is
// true) and treats the other side's tables as existing.
func (p *Plugin) migrationSession(tx *gorm.DB, shared bool) *gorm.DB {
	s := tx.Session(&gorm.Session{})
	l := p.layout
	skip := l.isShared
	if shared {
		// gormigrate's bookkeeping table is no model: in the shared
		// schema it is the shared migrations' own (WithSharedMigrations).
		skip = func(table string) bool { return !l.shared[table] && table != migrationsTable }
	}
	s.Config.Dialector = migrationDialector{Dialector: tx.Dialector, skip: skip}
	return s
}

// ColumnTypes answers as the postgres driver's Migrator.ColumnTypes does, but
// reads primary-key and unique constraints from pg_catalog: the driver joins
// information_schema.table_constraints with constraint_column_usage, views
// whose privilege checks cover every constraint of every tenant; measured
// at 300 tenants, 150-320 ms for each of the two queries, per table. The
// rest follows the driver (gorm.io/driver/postgres, MIT licence).
func (m skippingMigrator) ColumnTypes(value any) ([]gorm.ColumnType, error) {
	if m.skipped(value) {
		return nil, nil
	}
	table, ok := m.tableOf(value)
	if !ok || strings.IndexByte(table, '.') >= 0 {
		return m.Migrator.ColumnTypes(value)
	}
	ctx, pool := m.db.Statement.Context, m.db.Statement.ConnPool
	columnTypes := make([]gorm.ColumnType, 0)

	columns, err := pool.QueryContext(ctx, "SELECT c.column_name, c.is_nullable = 'YES', c.udt_name, c.character_maximum_length, c.numeric_precision, c.numeric_precision_radix, c.numeric_scale, c.datetime_precision, 8 * typlen, c.column_default, pd.description, c.identity_increment FROM information_schema.columns AS c JOIN pg_type AS pgt ON c.udt_name = pgt.typname LEFT JOIN pg_catalog.pg_description as pd ON pd.objsubid = c.ordinal_position AND pd.objoid = (SELECT oid FROM pg_catalog.pg_class WHERE relname = c.table_name AND relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = c.table_schema)) where table_catalog = pg_catalog.current_database() AND table_schema = pg_catalog.current_schema() AND table_name = $1", table)
	if err != nil {
		return nil, err
	}
	for columns.Next() {
		var (
			column = &migrator.ColumnType{
				PrimaryKeyValue: sql.NullBool{Valid: true},
				UniqueValue:     sql.NullBool{Valid: true},
			}
			datetimePrecision sql.NullInt64
			radixValue        sql.NullInt64
			typeLenValue      sql.NullInt64
			identityIncrement sql.NullString
		)
		if err := columns.Scan(
			&column.NameValue, &column.NullableValue, &column.DataTypeValue, &column.LengthValue, &column.DecimalSizeValue,
			&radixValue, &column.ScaleValue, &datetimePrecision, &typeLenValue, &column.DefaultValueValue, &column.CommentValue, &identityIncrement,
		); err != nil {
			columns.Close()
			return nil, err
		}
		if typeLenValue.Valid && typeLenValue.Int64 > 0 {
			column.LengthValue = typeLenValue
		}
		if autoIncrementValuePattern.MatchString(column.DefaultValueValue.String) || (identityIncrement.Valid && identityIncrement.String != "") {
			column.AutoIncrementValue = sql.NullBool{Bool: true, Valid: true}
			column.DefaultValueValue = sql.NullString{}
		}
		if column.DefaultValueValue.Valid {
			column.DefaultValueValue.String = strings.Trim(defaultValueValuePattern.ReplaceAllString(column.DefaultValueValue.String, "$1"), "'")
		}
		if datetimePrecision.Valid {
			column.DecimalSizeValue = datetimePrecision
		}
		columnTypes = append(columnTypes, column)
	}
	columns.Close()
	if err := columns.Err(); err != nil {
		return nil, err
	}

	// The driver's own column types, over the simple protocol: the text is
	// the same for every tenant, so no cached description may serve it.
	rows, err := unprepared(pool).QueryContext(ctx, "SELECT * FROM "+QuoteIdentifier(table)+" LIMIT 1", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	raw, err := rows.ColumnTypes()
	rows.Close()
	if err != nil {
		return nil, err
	}
	byName := map[string]*migrator.ColumnType{}
	for _, ct := range columnTypes {
		mc := ct.(*migrator.ColumnType)
		byName[mc.NameValue.String] = mc
		for _, c := range raw {
			if c.Name() == mc.NameValue.String {
				mc.SQLColumnType = c
				break
			}
		}
	}

	// Primary key and unique constraints; a column is unique when a unique
	// constraint covers it alone.
	cons, err := pool.QueryContext(ctx, `SELECT a.attname, c.conname, c.contype::text, cardinality(c.conkey)
  FROM pg_catalog.pg_constraint c
  JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (c.conkey)
 WHERE n.nspname = pg_catalog.current_schema() AND t.relname = $1 AND c.contype IN ('p', 'u')`, table)
	if err != nil {
		return nil, err
	}
	for cons.Next() {
		var name, conName, conType string
		var width int
		if err := cons.Scan(&name, &conName, &conType, &width); err != nil {
			cons.Close()
			return nil, err
		}
		if mc := byName[name]; mc != nil {
			switch conType {
			case "p":
				mc.PrimaryKeyValue = sql.NullBool{Bool: true, Valid: true}
			case "u":
				if width == 1 {
					mc.UniqueValue = sql.NullBool{Bool: true, Valid: true}
				}
			}
		}
	}
	cons.Close()
	if err := cons.Err(); err != nil {
		return nil, err
	}

	types, err := pool.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class b ON a.attrelid = b.oid
 WHERE b.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = pg_catalog.current_schema())
   AND a.attnum > 0 AND NOT a.attisdropped AND b.relname = $1`, table)
	if err != nil {
		return nil, err
	}
	for types.Next() {
		var name, dataType string
		if err := types.Scan(&name, &dataType); err != nil {
			types.Close()
			return nil, err
		}
		if mc := byName[name]; mc != nil {
			mc.ColumnTypeValue = sql.NullString{String: dataType, Valid: true}
			if strings.HasPrefix(mc.DataTypeValue.String, "_") { // arrays: _text -> text[]
				mc.DataTypeValue = sql.NullString{String: dataType, Valid: true}
			}
		}
	}
	types.Close()
	return columnTypes, types.Err()
}

var (
	autoIncrementValuePattern = regexp.MustCompile(`^nextval\('"?[^']+seq"?'::regclass\)$`)
	defaultValueValuePattern  = regexp.MustCompile(`^(.*?)(?:::.*)?$`)
)

// HasConstraint asks pg_catalog (the driver asks information_schema, slow
// with thousands of tenants). Like GORM, it accepts a constraint's name, a
// relation's name or a field's name, and looks on the table the constraint
// lives on (a has-one's foreign key lives on the other table), as GORM's
// Migrator.GuessConstraintInterfaceAndTable resolves them.
func (m skippingMigrator) HasConstraint(value any, name string) bool {
	if m.skipped(value) {
		return true
	}
	table, ok := m.tableOf(value)
	if !ok || strings.IndexByte(table, '.') >= 0 {
		return m.Migrator.HasConstraint(value, name)
	}
	if g, ok := m.Migrator.(constraintGuesser); ok {
		stmt := &gorm.Statement{DB: m.db, Table: table}
		if _, isString := value.(string); isString || stmt.Parse(value) == nil {
			if c, t := g.GuessConstraintInterfaceAndTable(stmt, name); c != nil {
				name, table = c.GetName(), t
			}
		}
	}
	if m.skip(table) {
		return true
	}
	var exists bool
	row := m.db.Statement.ConnPool.QueryRowContext(m.db.Statement.Context, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
  JOIN pg_catalog.pg_class t ON t.oid = c.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = pg_catalog.current_schema() AND t.relname = $1 AND c.conname = $2)`, table, name)
	if err := row.Scan(&exists); err != nil {
		return m.Migrator.HasConstraint(value, name)
	}
	return exists
}

// constraintGuesser is the method of GORM's generic migrator (which the
// postgres driver's embeds) that maps a name to a constraint and its table.
type constraintGuesser interface {
	GuessConstraintInterfaceAndTable(stmt *gorm.Statement, name string) (schema.ConstraintInterface, string)
}

// The calls that change or remove what a table has are refused for the
// other side's tables, whose changes belong to their own migrations
// (MigrateShared for shared tables): a tenant's migration, RunInTenant or a
// seed would otherwise reach the shared table through the search_path (a
// breaker's finding: DropColumn of a shared model inside RunInTenant dropped
// the shared table's column).
func (m skippingMigrator) refused(value any, what string) error {
	if !m.skipped(value) {
		return nil
	}
	table, _ := m.tableOf(value)
	return fmt.Errorf("tenantplugin: %s on table %q: it is not this migration's side (a shared table inside a tenant's migration, RunInTenant or a seed, or a tenant table in a shared migration); change it where it lives (MigrateShared, or a migration of that side)", what, table)
}

// DropColumn implements gorm.Migrator (see refused).
func (m skippingMigrator) DropColumn(value any, name string) error {
	if err := m.refused(value, "DropColumn"); err != nil {
		return err
	}
	return m.Migrator.DropColumn(value, name)
}

// AlterColumn implements gorm.Migrator (see refused).
func (m skippingMigrator) AlterColumn(value any, field string) error {
	if err := m.refused(value, "AlterColumn"); err != nil {
		return err
	}
	return m.Migrator.AlterColumn(value, field)
}

// RenameColumn implements gorm.Migrator (see refused).
func (m skippingMigrator) RenameColumn(value any, oldName, field string) error {
	if err := m.refused(value, "RenameColumn"); err != nil {
		return err
	}
	return m.Migrator.RenameColumn(value, oldName, field)
}

// DropIndex implements gorm.Migrator (see refused).
func (m skippingMigrator) DropIndex(value any, name string) error {
	if err := m.refused(value, "DropIndex"); err != nil {
		return err
	}
	return m.Migrator.DropIndex(value, name)
}

// RenameIndex implements gorm.Migrator (see refused).
func (m skippingMigrator) RenameIndex(value any, oldName, newName string) error {
	if err := m.refused(value, "RenameIndex"); err != nil {
		return err
	}
	return m.Migrator.RenameIndex(value, oldName, newName)
}

// DropConstraint implements gorm.Migrator (see refused).
func (m skippingMigrator) DropConstraint(value any, name string) error {
	if err := m.refused(value, "DropConstraint"); err != nil {
		return err
	}
	return m.Migrator.DropConstraint(value, name)
}
