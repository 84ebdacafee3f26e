package tenantplugin

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// layout is the plugin's one model of where each table lives: in the shared
// schema, or once in every tenant schema. It is computed once, when the
// plugin is registered (Initialize), from the declared models and every model
// and join table they reach through relationships, and never changes after.
// The router (schemaFor), the migrator (what AutoMigrate builds on each
// side), the guard on GORM's own Migrator and the start-up checks all read
// it; nothing else decides where a table lives.
//
// The rules:
//   - the library's registry tables and the models given to WithSharedModels
//     are shared;
//   - every other table is a tenant table: the models given to
//     WithTenantModels, models they reach that are not declared shared, and
//     tables no model declares (the safe default: a tenant table without a
//     tenant fails closed);
//   - a many2many join table is shared when both sides are shared, otherwise
//     it holds tenant rows and lives in each tenant schema, even when the
//     relation is declared on a shared model.
//
// Shapes that cannot be made safe are refused when the plugin is registered,
// with a *LayoutError naming the model, the field and why.
type layout struct {
	shared  map[string]bool           // tables in the shared schema
	tenant  map[string]bool           // tables every tenant schema holds
	byTable map[string]*schema.Schema // parsed model (or join table) of each table
	quoted  map[string]string         // table -> quoted identifier

	sharedValues []any // AutoMigrate list of the shared schema
	tenantValues []any // AutoMigrate list of each tenant schema
}

// isShared reports whether table lives in the shared schema.
func (l *layout) isShared(table string) bool { return l.shared[table] }

// schemaOf returns the parsed model of a table the layout knows, or nil.
func (l *layout) schemaOf(table string) *schema.Schema { return l.byTable[table] }

// quote returns the quoted identifier of a table name, from the cache for
// known tables.
func (l *layout) quote(table string) string {
	if q, ok := l.quoted[table]; ok {
		return q
	}
	return QuoteIdentifier(table)
}

// tenantTables returns the tenant tables, sorted.
func (l *layout) tenantTables() []string {
	out := make([]string, 0, len(l.tenant))
	for t := range l.tenant {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func buildLayout(db *gorm.DB, sharedModels, tenantModels []any) (*layout, error) {
	l := &layout{shared: map[string]bool{}, tenant: map[string]bool{}, byTable: map[string]*schema.Schema{}, quoted: map[string]string{}}
	var queue []*schema.Schema
	for _, m := range append(append([]any{}, libraryModels...), sharedModels...) {
		s, err := parseModel(db, m)
		if err != nil {
			return nil, err
		}
		if !l.shared[s.Table] {
			l.shared[s.Table] = true
			l.byTable[s.Table] = s
			l.sharedValues = append(l.sharedValues, m)
			queue = append(queue, s)
		}
	}
	for _, m := range tenantModels {
		s, err := parseModel(db, m)
		if err != nil {
			return nil, err
		}
		if l.shared[s.Table] {
			reason := "it is declared both shared (WithSharedModels) and tenant (WithTenantModels)"
			if other := l.byTable[s.Table]; other != nil && other.Name != s.Name {
				reason = fmt.Sprintf("its table is also the table of shared model %s: one table cannot be shared and a tenant table", other.Name)
			}
			return nil, &LayoutError{Model: s.Name, Table: s.Table, Reason: reason}
		}
		if !l.tenant[s.Table] {
			l.tenant[s.Table] = true
			l.byTable[s.Table] = s
			l.tenantValues = append(l.tenantValues, m)
			queue = append(queue, s)
		}
	}
	// Walk every relationship: undeclared models become tenant tables, join
	// tables are placed, and foreign keys from shared to tenant tables are
	// refused.
	seen := map[*schema.Schema]bool{}
	var sharedJoins []*schema.Relationship
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if seen[s] {
			continue
		}
		seen[s] = true
		for _, rel := range relationsOf(&s.Relationships) {
			fs := rel.FieldSchema
			if !l.shared[fs.Table] && !l.tenant[fs.Table] {
				l.tenant[fs.Table] = true
				l.byTable[fs.Table] = fs
			}
			queue = append(queue, fs)
			if jt := rel.JoinTable; jt != nil {
				both := l.shared[s.Table] && l.shared[fs.Table]
				if both {
					l.shared[jt.Table] = true
				} else if !l.tenant[jt.Table] {
					l.tenant[jt.Table] = true
					if l.shared[s.Table] {
						// Declared on a shared model: migrating the tenant
						// models would not create it, so each tenant does.
						sharedJoins = append(sharedJoins, rel)
					}
				}
				l.byTable[jt.Table] = jt
				queue = append(queue, jt)
			}
		}
	}
	for _, rel := range sharedJoins {
		l.tenantValues = append(l.tenantValues, reflect.New(rel.JoinTable.ModelType).Interface())
	}
	// Checks over the final classification.
	for s := range seen {
		if err := l.check(s); err != nil {
			return nil, err
		}
	}
	if err := checkIndexNames(l, seen); err != nil {
		return nil, err
	}
	for t := range l.shared {
		l.quoted[t] = QuoteIdentifier(t)
	}
	for t := range l.tenant {
		l.quoted[t] = QuoteIdentifier(t)
	}
	return l, nil
}

// relationsOf returns a model's relationships, embedded ones included, in
// a stable order.
func relationsOf(r *schema.Relationships) []*schema.Relationship {
	var out []*schema.Relationship
	names := make([]string, 0, len(r.Relations))
	for n := range r.Relations {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, r.Relations[n])
	}
	emb := make([]string, 0, len(r.EmbeddedRelations))
	for n := range r.EmbeddedRelations {
		emb = append(emb, n)
	}
	sort.Strings(emb)
	for _, n := range emb {
		out = append(out, relationsOf(r.EmbeddedRelations[n])...)
	}
	return out
}

// check refuses a model shape the plugin cannot make safe.
func (l *layout) check(s *schema.Schema) error {
	table := s.Table
	bare := table
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		if !l.shared[table] {
			// TableName "app.items", or a NamingStrategy TablePrefix "app.":
			// every tenant would share the one table app.items.
			return &LayoutError{Model: s.Name, Table: table, Reason: "a tenant table's name must not name a schema: every tenant would share that one table (check TableName and NamingStrategy.TablePrefix)"}
		}
		bare = table[i+1:]
	}
	if len(bare) > MaxNameLength {
		return &LayoutError{Model: s.Name, Table: table, Reason: fmt.Sprintf("the table name is %d bytes long; PostgreSQL truncates names to %d bytes, so two long names could become one table", len(bare), MaxNameLength)}
	}
	for _, rel := range relationsOf(&s.Relationships) {
		if rel.Schema != s || rel.JoinTable != nil {
			continue
		}
		c := rel.ParseConstraint()
		if c == nil || c.Schema == nil || c.ReferenceSchema == nil {
			continue
		}
		if l.shared[c.Schema.Table] && !l.shared[c.ReferenceSchema.Table] {
			return &LayoutError{Model: rel.Schema.Name, Field: rel.Name, Table: rel.Schema.Table, Reason: fmt.Sprintf(
				"a foreign key from shared table %s to tenant table %s cannot exist: the tenant table exists once in every tenant schema. "+
					"Declare %s shared, make %s a tenant model, or tag the field constraint:- for a reference without a foreign key",
				c.Schema.Table, c.ReferenceSchema.Table, c.ReferenceSchema.Name, c.Schema.Name)}
		}
	}
	return nil
}

// checkIndexNames refuses index, unique and foreign-key constraint names
// that PostgreSQL would truncate (over 63 bytes; GORM shortens only names
// over 64), and index names used twice on one side: index names are unique
// per schema.
func checkIndexNames(l *layout, schemas map[*schema.Schema]bool) error {
	type owner struct{ model, table string }
	perSide := map[bool]map[string]owner{true: {}, false: {}}
	list := make([]*schema.Schema, 0, len(schemas))
	for s := range schemas {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Table < list[j].Table })
	for _, s := range list {
		side := perSide[l.shared[s.Table]]
		var names []string
		for _, idx := range s.ParseIndexes() {
			names = append(names, idx.Name)
		}
		for name := range s.ParseUniqueConstraints() {
			names = append(names, name)
		}
		for _, name := range names {
			if len(name) > MaxNameLength {
				return &LayoutError{Model: s.Name, Table: s.Table, Reason: fmt.Sprintf("index or constraint name %q is %d bytes long; PostgreSQL would truncate it to %d (name it in the index tag)", name, len(name), MaxNameLength)}
			}
			if o, ok := side[name]; ok && o.table != s.Table {
				return &LayoutError{Model: s.Name, Table: s.Table, Reason: fmt.Sprintf("index name %q is also used by table %s (model %s); index names are unique per schema", name, o.table, o.model)}
			}
			side[name] = owner{s.Name, s.Table}
		}
		for _, rel := range s.Relationships.Relations {
			if c := rel.ParseConstraint(); c != nil && c.Schema == s && len(c.Name) > MaxNameLength {
				return &LayoutError{Model: s.Name, Field: rel.Name, Table: s.Table, Reason: fmt.Sprintf("foreign key name %q is %d bytes long; PostgreSQL would truncate it to %d (name it with the constraint tag)", c.Name, len(c.Name), MaxNameLength)}
			}
		}
	}
	return nil
}

func parseModel(db *gorm.DB, model any) (*schema.Schema, error) {
	if model == nil {
		return nil, fmt.Errorf("tenantplugin: nil model")
	}
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(model); err != nil {
		return nil, fmt.Errorf("tenantplugin: parse model %s: %w", reflect.TypeOf(model), err)
	}
	return stmt.Schema, nil
}

// checkShadows refuses tables in the shared schema that have the name of a
// tenant table (see WithShadowTablesAllowed): one catalog query.
func (p *Plugin) checkShadows(tx *gorm.DB) error {
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context,
		`SELECT c.relname FROM pg_catalog.pg_class c
		  WHERE c.relnamespace = $1::pg_catalog.regnamespace AND c.relname = ANY ($2)
		    AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1`,
		p.sharedQuoted, p.layout.tenantTables())
	if err != nil {
		return err
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return err
		}
		found = append(found, t)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	model := "(join table)"
	if s := p.layout.schemaOf(found[0]); s != nil && s.ModelType != nil && s.Name != "" {
		model = s.Name
	}
	return &LayoutError{Model: model, Table: found[0], Reason: fmt.Sprintf(
		"the shared schema %s holds table(s) %s named like tenant tables: raw SQL for a tenant that lacked one would read the shared copy. "+
			"Drop or rename them, or accept them with WithShadowTablesAllowed", p.sharedQuoted, strings.Join(found, ", "))}
}
