package tenantplugin

import (
	"context"
	"fmt"
)

// TenantStats is the size of one tenant's schema, as PostgreSQL's catalog
// sees it.
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
	// Unanalyzed counts the tables PostgreSQL has not analyzed yet
	// (reltuples is -1 since PostgreSQL 14): their rows are missing from
	// Rows, while their bytes are counted.
	Unanalyzed int
	// TableBytes is the disk space of the tables, in bytes: heap, TOAST,
	// free space and visibility maps (pg_table_size).
	TableBytes int64
	// IndexBytes is the disk space of their indexes, in bytes
	// (pg_indexes_size).
	IndexBytes int64
}

// TotalBytes is TableBytes + IndexBytes.
func (s TenantStats) TotalBytes() int64 { return s.TableBytes + s.IndexBytes }

// TenantStats returns the size of every registered tenant, the largest
// (TotalBytes) first, then by name. It is one catalog query whatever the
// number of tenants: the registry joined with pg_namespace and pg_class,
// grouped by tenant. Sizes are exact (pg_table_size, pg_indexes_size: a
// stat of each relation's files), row counts are the planner's estimates.
// A registered tenant whose schema is missing is listed with zeros.
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
       count(c.oid) FILTER (WHERE NOT c.relispartition)::int,
       coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint,
       count(c.oid) FILTER (WHERE c.reltuples < 0 AND c.relkind <> 'p')::int,
       coalesce(sum(pg_catalog.pg_table_size(c.oid)), 0)::bigint AS table_bytes,
       coalesce(sum(pg_catalog.pg_indexes_size(c.oid)), 0)::bigint AS index_bytes
  FROM ` + m.p.sharedQuoted + "." + QuoteIdentifier(TenantRecord{}.TableName()) + ` t
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.name
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'm')
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
