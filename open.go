package tenantplugin

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// DefaultDescriptionCacheCapacity is the per-connection number of statement
// descriptions Open keeps. Qualified SQL is different text per tenant, so the
// cache must hold (tenants x query shapes); a description is a few hundred
// bytes on the client and nothing on the server.
const DefaultDescriptionCacheCapacity = 16384

// DefaultPreparedStatements is how many statement texts a database opened
// with Open runs as server-side prepared statements: the most used ones, the
// first this many texts seen twice. Every connection may hold them all, about
// 12 kB each in its backend (12 MB per connection at the default).
const DefaultPreparedStatements = 1024

// hybridPools remembers the pools Open configured for the hybrid mode, so
// the plugin registered on them knows it may pick prepared statements.
var hybridPools sync.Map // *sql.DB -> int (prepared statement budget)

// DefaultConnMaxLifetime is the connection lifetime Open sets. A backend keeps
// catalog cache for every schema it touched (about 120 kB per tenant) until
// it closes; recycling connections bounds that growth.
const DefaultConnMaxLifetime = 30 * time.Minute

// Open returns a GORM dialector for dsn with the driver configured for many
// tenants (use it in place of postgres.Open):
//
//   - Qualified SQL is different text for every tenant, so pgx's default (a
//     512-entry prepared-statement cache) thrashes once tenants x query
//     shapes pass 512, paying prepare and deallocate round trips on almost
//     every statement. Open runs the hot statement texts (the first
//     DefaultPreparedStatements texts seen twice) as prepared statements,
//     which every connection's cache can hold without thrashing, and every
//     other statement in cache_describe mode: one round trip, planned by the
//     server each time, nothing kept on the server. Statements inside
//     transactions use cache_describe. The README has the measurements.
//   - connections are recycled after DefaultConnMaxLifetime.
//
// Anything the DSN sets itself (default_query_exec_mode,
// description_cache_capacity, statement_cache_capacity) wins, and naming a
// mode or a statement cache capacity turns the hot set off; behind
// PgBouncer older than 1.21 in transaction mode, add
// default_query_exec_mode=cache_describe (no prepared statements at all).
// SetConnMaxLifetime on db.DB() afterwards wins too.
func Open(dsn string, opts ...OpenOption) gorm.Dialector {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return errDialector{postgres.Open(dsn), fmt.Errorf("tenantplugin: parse DSN: %w", err)}
	}
	for _, o := range opts {
		o(cfg)
	}
	if !strings.Contains(dsn, "default_query_exec_mode") {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	if !strings.Contains(dsn, "description_cache_capacity") {
		cfg.DescriptionCacheCapacity = DefaultDescriptionCacheCapacity
	}
	hybrid := !strings.Contains(dsn, "default_query_exec_mode") && !strings.Contains(dsn, "statement_cache_capacity")
	if hybrid {
		cfg.StatementCacheCapacity = DefaultPreparedStatements
	}
	sqlDB := stdlib.OpenDB(*cfg)
	if hybrid {
		hybridPools.Store(sqlDB, DefaultPreparedStatements)
	}
	sqlDB.SetConnMaxLifetime(DefaultConnMaxLifetime)
	return postgres.New(postgres.Config{Conn: sqlDB})
}

// OpenOption adjusts the pgx configuration Open builds from the DSN.
type OpenOption func(*pgx.ConnConfig)

// WithPgxConfig lets fn change the pgx configuration (a tracer, TLS, ...)
// before Open applies its own defaults; fields the defaults concern keep
// Open's values unless the DSN names them.
func WithPgxConfig(fn func(*pgx.ConnConfig)) OpenOption { return OpenOption(fn) }

// errDialector reports a DSN error from gorm.Open instead of panicking.
type errDialector struct {
	gorm.Dialector
	err error
}

func (d errDialector) Initialize(*gorm.DB) error { return d.err }
