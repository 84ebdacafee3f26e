package tenantplugin

import (
	"context"
	"fmt"
)

// TenantStats is the size of one tenant's schema, as PostgreSQL's catalog
// records it.
type TenantStats struct {
	Tenant string
	// Tables counts the schema's tables and materialized views (partitions
	// count with their parent), the tenantplugin_migrations bookkeeping
	// table included.
	Tables int
	// Rows is PostgreSQL's estimate of the rows in those tables
	// (pg_class.reltuples), which VACUUM, ANALYZE and autovacuum keep up to
	// date: cheap to read, not an exact count.
	Rows int64
	// Unanalyzed counts the tables PostgreSQL has not vacuumed or analyzed
	// yet (reltuples is -1 since PostgreSQL 14; autovacuum leaves empty
	// tables so): their rows and pages are missing from the estimates.
	Unanalyzed int
	// TableBytes is the space of the tables and their TOAST tables, in
	// bytes: pages (pg_class.relpages, kept by the same VACUUM and ANALYZE)
	// times the block size.
	TableBytes int64
	// IndexBytes is the space of their indexes, in bytes, estimated the
	// same way.
	IndexBytes int64
}

// TotalBytes is TableBytes + IndexBytes.
func (s TenantStats) TotalBytes() int64 { return s.TableBytes + s.IndexBytes }

// TenantStats returns the size of every registered tenant, the largest
// (TotalBytes) first, then by name. It is one query whatever the number of
// tenants, and reads the catalog only: the registry joined with
// pg_namespace and pg_class, grouped by tenant. Rows and bytes are the
// estimates PostgreSQL keeps in pg_class (reltuples, relpages) as VACUUM,
// ANALYZE and autovacuum run; no relation is opened and no file is read, so
// a connection does not load the catalog entries of every tenant's tables
// (which pg_table_size would, and keep until the connection closes). For
// exact figures of one tenant, run ANALYZE in it first, or ask
// pg_total_relation_size. A registered tenant whose schema is missing is
// listed with zeros. On a Citus coordinator the catalog describes the
// coordinator's own tables only: a distributed tenant's rows and pages on
// its worker are not counted (Citus's citus_shards view has their sizes).
//
// It lives on the Migrator, beside Tenants and Domains: like them it is the
// operator's view of the registry (the tenantcmd command set holds a
// Migrator), not something a request needs.
func (m *Migrator) TenantStats(ctx context.Context) ([]TenantStats, error) {
	if err := m.p.registered(); err != nil {
		return nil, err
	}
	q := `
SELECT * FROM (
SELECT t.name,
       count(c.oid) FILTER (WHERE c.relkind <> 'i' AND NOT c.relispartition)::int,
       coalesce(sum(greatest(c.reltuples, 0)) FILTER (WHERE c.relkind <> 'i'), 0)::bigint,
       count(c.oid) FILTER (WHERE c.relkind IN ('r', 'm') AND c.reltuples < 0)::int,
       coalesce(sum(c.relpages::bigint + coalesce(toast.relpages, 0)) FILTER (WHERE c.relkind <> 'i'), 0)
         * current_setting('block_size')::bigint AS table_bytes,
       coalesce(sum(c.relpages::bigint) FILTER (WHERE c.relkind = 'i'), 0)
         * current_setting('block_size')::bigint AS index_bytes
  FROM ` + m.p.sharedQuoted + "." + QuoteIdentifier(TenantRecord{}.TableName()) + ` t
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.name
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'm', 'i')
  LEFT JOIN pg_catalog.pg_class toast ON toast.oid = c.reltoastrelid
 GROUP BY t.name) s
 ORDER BY table_bytes + index_bytes DESC, name`
	rows, err := m.p.rootPool.QueryContext(noRoute(ctx), q)
	if err != nil {
		return nil, fmt.Errorf("tenantplugin: tenant stats: %w", err)
	}
	defer rows.Close()
	var out []TenantStats
	for rows.Next() {
		var s TenantStats
		if err := rows.Scan(&s.Tenant, &s.Tables, &s.Rows, &s.Unanalyzed, &s.TableBytes, &s.IndexBytes); err != nil {
			return nil, fmt.Errorf("tenantplugin: tenant stats: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tenantplugin: tenant stats: %w", err)
	}
	return out, nil
}
