package tenantplugin

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// DefaultDescriptionCacheCapacity is the per-connection number of statement
// descriptions (argument and result types) Open has pgx keep, for statements
// run in cache_describe mode (see DefaultPreparedStatements). A description
// is a few hundred bytes on the client and nothing on the server. pgx's own
// default is 512.
const DefaultDescriptionCacheCapacity = 16384

// DefaultPreparedStatements is the per-connection statement cache capacity
// Open sets (pgx's statement_cache_capacity; pgx's own default is 512), and
// so how many statement texts the plugin runs as server-side prepared
// statements on a database opened with Open: the most used ones (hotset.go).
// Each connection's backend holds at most this many, about 12 kB of plan
// memory each (12 MB per connection at the default).
const DefaultPreparedStatements = 1024

// DefaultConnMaxLifetime is the connection lifetime Open sets. A backend keeps
// catalog cache for every schema it touched (about 120 kB per tenant) until
// it closes; recycling connections bounds that growth.
const DefaultConnMaxLifetime = 30 * time.Minute

// Open returns a GORM dialector for dsn with the driver configured for many
// tenants. It is optional: the plugin picks pgx's execution mode per
// statement on any pool backed by pgx's stdlib driver, gorm's postgres.Open
// included, sized to that pool's statement cache (512 on pgx's defaults,
// 448 of which the plugin uses). Open adds:
//
//   - a statement cache of DefaultPreparedStatements (1,024) per connection,
//     so twice as many hot statement texts run as prepared statements;
//   - cache_describe as pgx's default mode, with a description cache of
//     DefaultDescriptionCacheCapacity, for statements that do not pass
//     through the plugin: one round trip, nothing kept on the server;
//   - connections recycled after DefaultConnMaxLifetime.
//
// What the plugin does with the modes (hotset.go): hot texts, the most used
// ones, at most the statement cache capacity, run as prepared statements;
// other statements with arguments run in pgx's exec mode (one round trip,
// nothing kept per text), or cache_describe when an argument is not of a Go
// basic type; statements without arguments use the simple protocol. The
// README's Performance section has the measurements.
//
// Anything the DSN sets itself wins: description_cache_capacity; a
// statement_cache_capacity sizes the hot set instead of
// DefaultPreparedStatements; a default_query_exec_mode turns the per-statement
// choice off (behind PgBouncer older than 1.21 in transaction mode, add
// default_query_exec_mode=cache_describe: no prepared statements at all).
// SetConnMaxLifetime on db.DB() afterwards wins too.
func Open(dsn string, opts ...OpenOption) gorm.Dialector {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return errDialector{postgres.Open(dsn), fmt.Errorf("tenantplugin: parse DSN: %w", err)}
	}
	for _, o := range opts {
		o(cfg)
	}
	openMode := !strings.Contains(dsn, "default_query_exec_mode")
	if openMode {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	if !strings.Contains(dsn, "description_cache_capacity") {
		cfg.DescriptionCacheCapacity = DefaultDescriptionCacheCapacity
	}
	if !strings.Contains(dsn, "statement_cache_capacity") {
		cfg.StatementCacheCapacity = DefaultPreparedStatements
	}
	settings := settingsOf(cfg)
	settings.openMode = openMode
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetConnMaxLifetime(DefaultConnMaxLifetime)
	return &openDialector{
		Dialector: postgres.New(postgres.Config{Conn: sqlDB}).(*postgres.Dialector),
		settings:  settings,
	}
}

// openDialector is GORM's postgres dialector carrying the pgx settings Open
// chose, which the plugin reads at Initialize (no connection needed, no
// process-global registry).
type openDialector struct {
	*postgres.Dialector
	settings pgxSettings
}

func (d *openDialector) pgxSettings() pgxSettings { return d.settings }

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
