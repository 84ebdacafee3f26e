package tenantplugin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gorm.io/gorm"
)

// Citus (the PostgreSQL extension, https://www.citusdata.com) spreads a
// database over a coordinator and worker nodes. With schema-based sharding
// (citus.enable_schema_based_sharding = on) every schema created on the
// coordinator becomes a distributed schema: its tables are placed whole on
// one worker and colocated, which is exactly a tenant. The plugin detects
// Citus once (the citus extension in the connected database, asked by
// MigrateShared, the first tenant creation or migration, and the Citus
// methods below) and then, with no option to set:
//
//   - sends the captured tenant DDL one statement per round trip (Citus
//     forwards a multi-statement string to the worker, which refuses one
//     holding CREATE INDEX or ALTER TABLE), and splits ExecScript's scripts
//     into statements for the same reason;
//   - makes the registry tables, and every shared table a tenant table holds
//     a key to (with the shared tables those reference), reference tables in
//     MigrateShared, referenced tables first: a foreign key from a tenant's
//     table to a shared table needs one;
//   - never lets the shared schema become a distributed schema (MigrateShared
//     creates it with schema-based sharding off for that statement, and
//     undistributes it if an earlier run let it become one);
//   - refuses what Citus cannot do: WithTenantRoles (Citus opens its
//     connections to the workers as the current role, and tenant roles are
//     NOLOGIN), a shared table that tenant tables reference but that cannot be
//     a reference table, and a connection to a worker instead of the
//     coordinator;
//   - offers DistributeTenants (citus_schema_distribute, for tenants created
//     while schema-based sharding was off), MoveTenant (citus_schema_move) and
//     TenantNode.
//
// On plain PostgreSQL the detection is one catalog query per Plugin, and
// nothing is added to any statement.

// citusState caches what the plugin found about its database.
type citusState struct {
	mu    sync.Mutex
	known bool
	on    bool // the citus extension is installed (and this is the coordinator)
	major int  // Citus major version
}

// onCitus reports whether the plugin's database is a Citus coordinator. It
// asks once per Plugin, on pool (a transaction of the caller, or the root
// pool), and caches the answer; a failed question is asked again next time.
// A connection to a Citus worker is an error: DDL, tenant creation and the
// registry must go through the coordinator.
func (p *Plugin) onCitus(ctx context.Context, pool gorm.ConnPool) (bool, error) {
	s := &p.citus
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known {
		return s.on, nil
	}
	on, major, err := detectCitus(ctx, pool)
	if err != nil {
		return false, err
	}
	s.known, s.on, s.major = true, on, major
	return on, nil
}

func detectCitus(ctx context.Context, pool gorm.ConnPool) (on bool, major int, err error) {
	var version string
	err = pool.QueryRowContext(ctx, "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus'").Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("tenantplugin: detect Citus: %w", err)
	}
	var group int
	if err := pool.QueryRowContext(ctx, "SELECT groupid FROM pg_catalog.pg_dist_local_group").Scan(&group); err != nil {
		return false, 0, fmt.Errorf("tenantplugin: detect Citus: %w", err)
	}
	if group != 0 {
		return false, 0, &CitusError{Reason: fmt.Sprintf("this database is on a Citus worker node (group %d); connect to the coordinator: "+
			"DDL, tenant creation and the tenant registry go through it", group)}
	}
	major, _ = strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	return true, major, nil
}

// checkCitusOptions refuses the plugin options Citus cannot honour.
func (p *Plugin) checkCitusOptions() error {
	if p.roles {
		return &CitusError{Reason: "WithTenantRoles cannot work on Citus: tenant roles are NOLOGIN, and Citus opens its connections " +
			"to the workers as the current role, so every statement run under a tenant role would fail " +
			"(role ... is not permitted to log in); remove WithTenantRoles"}
	}
	return nil
}

// refTable is a shared table that must be a Citus reference table.
type refTable struct {
	table string // as the layout knows it (may be schema-qualified)
	model string // Go type name of its model
	why   string // who needs it
}

// citusReferenceTables lists, from the layout, the shared tables that must
// be reference tables on Citus, referenced tables first: the registry
// tables; every shared table a tenant table (a model, an undeclared related
// model or a join table) holds a key to; and, since a reference table may
// only have foreign keys to reference tables, every shared table those
// reference in turn.
func (l *layout) citusReferenceTables() []refTable {
	why := map[string]string{}
	for _, m := range libraryModels {
		switch m.(type) {
		case *TenantRecord:
			why[TenantRecord{}.TableName()] = "it holds the tenant registry"
		case *TenantDomain:
			why[TenantDomain{}.TableName()] = "it holds the tenant registry"
		}
	}
	// Edges from a table holding a key to the table it points at; fkEdges
	// keeps only those that become foreign keys.
	keyEdges := map[string]map[string]string{} // fk table -> pk table -> field
	fkEdges := map[string][]string{}
	tables := make([]string, 0, len(l.byTable))
	for t := range l.byTable {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		s := l.byTable[t]
		for _, rel := range relationsOf(&s.Relationships) {
			for _, ref := range rel.References {
				if ref.PrimaryKey == nil || ref.ForeignKey == nil {
					continue
				}
				fk, pk := ref.ForeignKey.Schema.Table, ref.PrimaryKey.Schema.Table
				if fk == pk {
					continue
				}
				if keyEdges[fk] == nil {
					keyEdges[fk] = map[string]string{}
				}
				if _, ok := keyEdges[fk][pk]; !ok {
					keyEdges[fk][pk] = ref.ForeignKey.Schema.Name + "." + rel.Name
				}
			}
			if c := rel.ParseConstraint(); c != nil && c.Schema != nil && c.ReferenceSchema != nil && c.Schema != c.ReferenceSchema {
				fkEdges[c.Schema.Table] = append(fkEdges[c.Schema.Table], c.ReferenceSchema.Table)
			}
		}
	}
	for _, fk := range sortedKeys(keyEdges) {
		if !l.tenant[fk] {
			continue
		}
		for _, pk := range sortedKeys(keyEdges[fk]) {
			if l.shared[pk] && why[pk] == "" {
				why[pk] = fmt.Sprintf("tenant table %s references it (%s)", fk, keyEdges[fk][pk])
			}
		}
	}
	// Closure over foreign keys between shared tables, then referenced
	// tables first (depth-first, post-order).
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(t string)
	visit = func(t string) {
		if state[t] != 0 {
			return
		}
		state[t] = 1
		refs := append([]string(nil), fkEdges[t]...)
		sort.Strings(refs)
		for _, r := range refs {
			if l.shared[r] {
				if why[r] == "" {
					why[r] = "reference table " + t + " has a foreign key to it"
				}
				visit(r)
			}
		}
		state[t] = 2
		order = append(order, t)
	}
	for _, t := range sortedKeys(why) {
		visit(t)
	}
	out := make([]refTable, 0, len(order))
	for _, t := range order {
		name := t
		if s := l.byTable[t]; s != nil && s.Name != "" {
			name = s.Name
		}
		out = append(out, refTable{table: t, model: name, why: why[t]})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// qualifiedShared returns the quoted, schema-qualified name of a shared table.
func (p *Plugin) qualifiedShared(table string) string {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		return QuoteIdentifier(table[:i]) + "." + QuoteIdentifier(table[i+1:])
	}
	return p.sharedQuoted + "." + QuoteIdentifier(table)
}

// citusTableKind classifies a table in Citus's metadata: "local" (a plain
// table, or a Citus local table on the coordinator), "reference",
// "distributed" (hash or single-shard), or "schema" when the table's schema
// is a distributed schema.
func citusTableKind(ctx context.Context, pool gorm.ConnPool, qualified string) (string, error) {
	var method, repModel sql.NullString
	var colocation sql.NullInt64
	var inSchema bool
	err := pool.QueryRowContext(ctx, `SELECT p.partmethod::text, p.repmodel::text, p.colocationid,
       EXISTS (SELECT 1 FROM pg_catalog.pg_dist_schema s WHERE s.schemaid = c.relnamespace)
  FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = c.oid
 WHERE c.oid = $1::pg_catalog.regclass`, qualified).Scan(&method, &repModel, &colocation, &inSchema)
	if err != nil {
		return "", err
	}
	switch {
	case inSchema:
		return "schema", nil
	case !method.Valid:
		return "local", nil
	case method.String == "n" && repModel.String == "t":
		return "reference", nil
	case method.String == "n" && colocation.Int64 == 0:
		return "local", nil
	}
	return "distributed", nil
}

// citusShardingOff turns schema-based sharding off until the end of the
// transaction.
const citusShardingOff = "SELECT pg_catalog.set_config('citus.enable_schema_based_sharding', 'off', true)"

// citusSharedSchema runs in MigrateShared's transaction, before the shared
// schema is created: it turns schema-based sharding off for the rest of the
// transaction (so that CREATE SCHEMA makes a plain schema, and nothing the
// shared migrations create becomes a distributed schema), and undistributes
// the shared schema if an earlier run (or a hand) made it a distributed
// schema, which would break every foreign key from tenants to it.
func (p *Plugin) citusSharedSchema(tx *gorm.DB) error {
	conn, ctx := tx.Statement.ConnPool, tx.Statement.Context
	if _, err := conn.ExecContext(ctx, citusShardingOff); err != nil {
		return fmt.Errorf("turn schema-based sharding off for the shared schema: %w", err)
	}
	if p.sharedSchema == "public" {
		return nil
	}
	var distributed bool
	err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_schema s
  JOIN pg_catalog.pg_namespace n ON n.oid = s.schemaid WHERE n.nspname = $1)`, p.sharedSchema).Scan(&distributed)
	if err != nil {
		return err
	}
	if distributed {
		if _, err := conn.ExecContext(ctx, "SELECT pg_catalog.citus_schema_undistribute($1::pg_catalog.regnamespace)", p.sharedQuoted); err != nil {
			return fmt.Errorf("the shared schema is a Citus distributed schema; undistribute it: %w", err)
		}
	}
	return nil
}

// citusReferences runs at the end of MigrateShared's transaction: it makes
// every table of citusReferenceTables a reference table (create_reference_table
// copies its rows to every node), referenced tables first. A table that
// cannot be one gives a *CitusError naming its model and why.
func (p *Plugin) citusReferences(tx *gorm.DB) error {
	conn, ctx := tx.Statement.ConnPool, tx.Statement.Context
	for _, rt := range p.layout.citusReferenceTables() {
		q := p.qualifiedShared(rt.table)
		kind, err := citusTableKind(ctx, conn, q)
		if err != nil {
			return &CitusError{Model: rt.model, Table: rt.table, Reason: "must be a reference table (" + rt.why + "), but cannot be read: " + err.Error()}
		}
		switch kind {
		case "reference":
			continue
		case "schema":
			return &CitusError{Model: rt.model, Table: rt.table, Reason: "must be a reference table (" + rt.why + "), but its schema is a Citus distributed schema " +
				"(created while citus.enable_schema_based_sharding was on), whose tables cannot be reference tables; " +
				"undistribute the schema (citus_schema_undistribute) or move the table"}
		case "distributed":
			return &CitusError{Model: rt.model, Table: rt.table, Reason: "must be a reference table (" + rt.why + "), but it is a distributed table; " +
				"Citus allows foreign keys from tenant tables only to reference tables: undistribute it (undistribute_table), " +
				"or drop the relationship (constraint:-) and keep it coordinator-side"}
		}
		if _, err := conn.ExecContext(ctx, "SELECT pg_catalog.create_reference_table($1::pg_catalog.regclass)", q); err != nil {
			return &CitusError{Model: rt.model, Table: rt.table, Reason: "must be a reference table (" + rt.why + "), but create_reference_table failed", Err: err}
		}
	}
	return nil
}

// citusTenantChecks runs before the capture of the tenant model set on
// Citus: options Citus cannot honour, and shared tables tenant tables
// reference that are not reference tables yet (MigrateShared makes them so).
func (p *Plugin) citusTenantChecks(ctx context.Context) error {
	if err := p.checkCitusOptions(); err != nil {
		return err
	}
	for _, rt := range p.layout.citusReferenceTables() {
		kind, err := citusTableKind(ctx, p.rootPool, p.qualifiedShared(rt.table))
		if err != nil {
			return &CitusError{Model: rt.model, Table: rt.table, Reason: "must be a reference table (" + rt.why + "), but cannot be read (run MigrateShared first)", Err: err}
		}
		if kind != "reference" {
			return &CitusError{Model: rt.model, Table: rt.table, Reason: "must be a reference table (" + rt.why + "), but is a " + kind +
				" table: run MigrateShared (the migrate command), which makes it one"}
		}
	}
	return nil
}

// citusGate detects Citus for a Citus-only method: ErrNotCitus on plain
// PostgreSQL, or on a Citus too old for schema-based sharding (12.0).
func (m *Migrator) citusGate(ctx context.Context) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	on, err := m.p.onCitus(ctx, m.p.rootPool)
	if err != nil {
		return err
	}
	if !on {
		return ErrNotCitus
	}
	m.p.citus.mu.Lock()
	major := m.p.citus.major
	m.p.citus.mu.Unlock()
	if major < 12 {
		return fmt.Errorf("%w: schema-based sharding needs Citus 12.0 or newer, this is Citus %d", ErrNotCitus, major)
	}
	return nil
}

// inRegisteredTenant runs fn in one transaction for tenant name, under the
// tenant's advisory lock (migrations of the tenant wait), after checking
// that it is registered and its schema exists.
func (m *Migrator) inRegisteredTenant(ctx context.Context, name string, fn func(tx *gorm.DB) error) error {
	if err := m.p.checkTenantName(name); err != nil {
		return err
	}
	return m.p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := advisoryLock(tx, lockKey("tenant", name)); err != nil {
			return err
		}
		var registered, exists bool
		err := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context,
			"SELECT EXISTS (SELECT 1 FROM "+m.p.sharedQuoted+"."+QuoteIdentifier(TenantRecord{}.TableName())+" WHERE name = $1),"+
				" EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", name).Scan(&registered, &exists)
		if err != nil {
			return err
		}
		if !registered {
			return notRegistered(name)
		}
		if !exists {
			return &UnknownTenantError{Tenant: name}
		}
		return fn(tx.WithContext(noRoute(ctx)))
	})
}

// tenantIsDistributed reports whether tenant v's schema is a distributed
// schema.
func tenantIsDistributed(tx *gorm.DB, v *tenantValue) (bool, error) {
	var distributed bool
	err := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context,
		"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_schema WHERE schemaid = $1::pg_catalog.regnamespace)", v.quoted).Scan(&distributed)
	return distributed, err
}

// DistributeTenants makes the schema of each tenant named (every registered
// tenant when names is nil) a Citus distributed schema with
// citus_schema_distribute: its tables move from the coordinator to one
// worker, chosen by Citus. It is for tenants created while schema-based
// sharding was off; with it on, new tenant schemas are distributed when
// created. Each tenant is one transaction under its advisory lock; tenants
// already distributed are reported up to date, the others done. One failure
// does not stop the others; the error, a *RunError, wraps each failure. On
// plain PostgreSQL it returns ErrNotCitus.
func (m *Migrator) DistributeTenants(ctx context.Context, names []string) (*Report, error) {
	if err := m.citusGate(ctx); err != nil {
		return nil, err
	}
	if names == nil {
		var err error
		if names, err = m.Tenants(ctx); err != nil {
			return nil, err
		}
	}
	return m.run(ctx, "distribute", names, func(ctx context.Context, name string) (State, error) {
		st := StateDone
		err := m.inRegisteredTenant(ctx, name, func(tx *gorm.DB) error {
			v := newTenantValue(name)
			distributed, err := tenantIsDistributed(tx, v)
			if err != nil {
				return err
			}
			if distributed {
				st = StateUpToDate
				return nil
			}
			_, err = tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "SELECT pg_catalog.citus_schema_distribute($1::pg_catalog.regnamespace)", v.quoted)
			return err
		})
		if err != nil {
			return StateFailed, err
		}
		return st, nil
	})
}

// MoveTenant moves tenant name's schema, with all its tables, to the Citus
// worker node ("host:port", as listed by citus_get_active_worker_nodes),
// with citus_schema_move in block_writes mode: the tenant's writes wait
// until the copy is done, its reads go on (the mode that needs no
// wal_level = logical). A tenant already on node is left alone
// (StateUpToDate); a moved one gives StateDone. It runs in one transaction
// under the tenant's advisory lock. Errors: ErrNotCitus on plain
// PostgreSQL, ErrUnknownTenant, a *TenantError naming the tenant when its
// schema is not distributed (see DistributeTenants) or Citus refuses the
// node.
func (m *Migrator) MoveTenant(ctx context.Context, name, node string) (State, error) {
	if err := m.citusGate(ctx); err != nil {
		return StateFailed, err
	}
	host, portText, err := net.SplitHostPort(node)
	port, perr := strconv.Atoi(portText)
	if err != nil || host == "" || perr != nil || port < 1 || port > 65535 {
		return StateFailed, fmt.Errorf("tenantplugin: move tenant %q: node %s is not HOST:PORT", name, quoteForMessage(node))
	}
	st := StateDone
	err = m.inRegisteredTenant(ctx, name, func(tx *gorm.DB) error {
		v := newTenantValue(name)
		distributed, err := tenantIsDistributed(tx, v)
		if err != nil {
			return err
		}
		if !distributed {
			return fmt.Errorf("its schema is not a distributed schema (it was created while citus.enable_schema_based_sharding was off): distribute it first (DistributeTenants, tenants distribute)")
		}
		current, err := tenantNode(tx, v)
		if err != nil {
			return err
		}
		if current == net.JoinHostPort(host, strconv.Itoa(port)) {
			st = StateUpToDate
			return nil
		}
		_, err = tx.Statement.ConnPool.ExecContext(tx.Statement.Context,
			"SELECT pg_catalog.citus_schema_move($1::pg_catalog.regnamespace, $2, $3, 'block_writes')", v.quoted, host, port)
		return err
	})
	if err != nil {
		var ue *UnknownTenantError
		if !errors.As(err, &ue) && !errors.Is(err, ErrInvalidTenantName) {
			err = &TenantError{Tenant: name, Op: "move to " + node, Err: err}
		}
		return StateFailed, err
	}
	return st, nil
}

// TenantNode returns the Citus worker ("host:port") holding tenant name's
// tables, or "" when its schema is not a distributed schema (its tables are
// on the coordinator) or holds no table yet. Errors: ErrNotCitus on plain
// PostgreSQL, ErrUnknownTenant for a tenant not registered or without a
// schema.
func (m *Migrator) TenantNode(ctx context.Context, name string) (string, error) {
	if err := m.citusGate(ctx); err != nil {
		return "", err
	}
	var node string
	err := m.inRegisteredTenant(ctx, name, func(tx *gorm.DB) error {
		var err error
		node, err = tenantNode(tx, newTenantValue(name))
		return err
	})
	if err != nil {
		var ue *UnknownTenantError
		if !errors.As(err, &ue) && !errors.Is(err, ErrInvalidTenantName) {
			err = &TenantError{Tenant: name, Op: "find node", Err: err}
		}
		return "", err
	}
	return node, nil
}

// tenantNode asks Citus's metadata where the shards of tenant v's
// distributed schema are placed.
func tenantNode(tx *gorm.DB, v *tenantValue) (string, error) {
	var host string
	var port int
	err := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context, `SELECT n.nodename, n.nodeport
  FROM pg_catalog.pg_dist_schema s
  JOIN pg_catalog.pg_dist_partition p ON p.colocationid = s.colocationid
  JOIN pg_catalog.pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
  JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = sh.shardid
  JOIN pg_catalog.pg_dist_node n ON n.groupid = pl.groupid
 WHERE s.schemaid = $1::pg_catalog.regnamespace
 LIMIT 1`, v.quoted).Scan(&host, &port)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
