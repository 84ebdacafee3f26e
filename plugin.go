package tenantplugin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"gorm.io/gorm"
)

// Plugin routes GORM statements to tenant schemas. Create it with New and
// register it with db.Use. A Plugin serves one *gorm.DB.
type Plugin struct {
	sharedSchema string
	sharedQuoted string
	sharedPath   string   // shared schema, extension schemas, pg_temp (quoted)
	isolatedPath string   // extension schemas, pg_temp (quoted)
	extSchemas   []string // WithExtensionSchemas, in order
	sharedModels []any
	tenantModels []any
	roles        bool
	database     string // current_database(), read at registration with tenant roles

	// Filled by Initialize; read-only afterwards.
	db       *gorm.DB
	rootPool gorm.ConnPool
	layout   *layout // where each table lives

	owned sync.Map // gorm.ConnPool of a library transaction -> *tenantValue (see own)

	dirOnce sync.Once
	dir     *Directory

	citus citusState // Citus or plain PostgreSQL, detected once (citus.go)

	prepares bool // the pool may hold prepared statements (hotset.go)
	pipeOnce sync.Once
	pipe     pipelineSettings // read from the pool's pgx configuration (pipeline.go)
}

// Option configures a Plugin.
type Option func(*Plugin)

// WithSharedModels declares models whose tables live in the shared schema.
// Every model that is not declared shared is a tenant model.
func WithSharedModels(models ...any) Option {
	return func(p *Plugin) { p.sharedModels = append(p.sharedModels, models...) }
}

// WithTenantModels declares the models whose tables every tenant schema holds.
// The migrator creates and migrates these tables; routing treats any table not
// declared shared as a tenant table, declared here or not.
func WithTenantModels(models ...any) Option {
	return func(p *Plugin) { p.tenantModels = append(p.tenantModels, models...) }
}

// WithSharedSchema sets the shared schema (default "public"). It must already
// exist (public always does) or be created by MigrateShared.
func WithSharedSchema(name string) Option {
	return func(p *Plugin) { p.sharedSchema = name }
}

// WithExtensionSchemas names the schemas that hold database-wide objects,
// such as extensions (CREATE EXTENSION citext SCHEMA extensions) and the
// types, functions and operators they bring; hosted PostgreSQL services
// often use a schema named "extensions". It is the idea of apartment's
// persistent_schemas: these schemas follow the tenant and the shared schema
// on every search_path the library sets, so raw SQL sees them; GORM-built
// statements resolve types, functions and operators through the
// connections' default search_path, which must therefore see them too:
// MigrateShared checks it, and that every installed extension lives in the
// shared schema or in one of these, and fails at start-up with what to
// change otherwise. GuardDefaultSearchPath keeps these schemas visible. An
// extension schema must hold no tables of its own (extension members
// excepted): raw SQL for every tenant could reach them. They can never be
// tenant names.
func WithExtensionSchemas(schemas ...string) Option {
	return func(p *Plugin) { p.extSchemas = append(p.extSchemas, schemas...) }
}

// New returns a Plugin configured by opts.
func New(opts ...Option) *Plugin {
	p := &Plugin{sharedSchema: "public"}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Name implements gorm.Plugin.
func (p *Plugin) Name() string { return "tenantplugin" }

// SharedSchema returns the name of the shared schema.
func (p *Plugin) SharedSchema() string { return p.sharedSchema }

// Initialize implements gorm.Plugin: it classifies the declared models and
// registers the routing callbacks and clause builders on db.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if p.db != nil {
		return fmt.Errorf("tenantplugin: a Plugin serves one *gorm.DB; create another with New")
	}
	if p.sharedSchema != "public" {
		if err := checkSharedSchemaName(p.sharedSchema); err != nil {
			return err
		}
	}
	if db.Dialector == nil || db.Dialector.Name() != "postgres" {
		return fmt.Errorf("tenantplugin: needs the postgres dialector, got %v", dialectorName(db))
	}
	p.sharedQuoted = QuoteIdentifier(p.sharedSchema)
	if err := p.checkExtensionSchemaNames(); err != nil {
		return err
	}
	p.isolatedPath = ""
	for _, s := range p.extSchemas {
		p.isolatedPath += QuoteIdentifier(s) + ", "
	}
	p.isolatedPath += "pg_temp"
	p.sharedPath = p.sharedQuoted + ", " + p.isolatedPath
	l, err := buildLayout(db, p.sharedModels, p.tenantModels)
	if err != nil {
		return err
	}
	p.layout = l

	if p.roles {
		row := db.ConnPool.QueryRowContext(context.Background(), "SELECT pg_catalog.current_database()")
		if err := row.Scan(&p.database); err != nil {
			return fmt.Errorf("tenantplugin: tenant roles need the database's name: %w", err)
		}
	}
	p.db = db
	p.rootPool = db.ConnPool
	var hot *hotSet
	if s, ok := poolSettings(db); ok {
		hot = s.hotSet()
		p.prepares = s.prepares()
	}
	installDriftRetry(db, hot)
	if err := p.registerCallbacks(db); err != nil {
		return err
	}
	p.installClauseBuilders(db)
	db.Dialector = guardDialector{Dialector: db.Dialector, p: p}
	return nil
}

func dialectorName(db *gorm.DB) string {
	if db.Dialector == nil {
		return "none"
	}
	return db.Dialector.Name()
}

// checkSharedSchemaName checks a shared schema other than public: it follows
// the rule of tenant names.
func checkSharedSchemaName(name string) error {
	if reason := nameProblem(name); reason != "" {
		return fmt.Errorf("tenantplugin: invalid shared schema name %s: %s (the rule of tenant names applies)", quoteForMessage(name), reason)
	}
	return nil
}

// IsShared reports whether table lives in the shared schema.
func (p *Plugin) IsShared(table string) bool { return p.layout != nil && p.layout.isShared(table) }

// schemaFor returns the quoted schema that table lives in under the routing
// value v (which may be nil: no tenant).
func (p *Plugin) schemaFor(v *tenantValue, table string) (string, error) {
	if v != nil {
		if v.err != nil {
			return "", v.err
		}
		if v.shared {
			if p.layout.tenant[table] {
				return "", noTenantError(table) // SharedOnly: tenant tables are out of reach
			}
			return p.sharedQuoted, nil
		}
	}
	if p.layout.shared[table] {
		return p.sharedQuoted, nil
	}
	if v == nil {
		return "", noTenantError(table)
	}
	return v.quoted, nil
}

// schemaExists asks the catalog whether a schema exists. It is used on error
// paths only.
func (p *Plugin) schemaExists(ctx context.Context, name string) (bool, error) {
	if db := sqlDBOf(p.rootPool); db != nil {
		// The *sql.DB itself: GORM's PreparedStmtDB answers a failed
		// QueryRowContext with an empty *sql.Row, whose Scan panics (a
		// breaker's finding).
		return schemaExistsOn(ctx, db, name)
	}
	return schemaExistsOn(ctx, p.rootPool, name)
}

// errPoolBusy: the pool has no connection to spare for a catalog question.
var errPoolBusy = errors.New("tenantplugin: no idle connection")

// schemaExistsBesides is schemaExists asked while the caller holds one of
// the pool's connections (a statement failed inside a transaction, which
// is aborted and cannot ask, or inside db.Connection): it asks only when
// the pool can give another connection without waiting for one to be
// released, and returns errPoolBusy otherwise (a breaker's finding: on a
// full pool, N transactions each waiting for a connection to ask never
// returned).
func (p *Plugin) schemaExistsBesides(ctx context.Context, name string) (bool, error) {
	if db := sqlDBOf(p.rootPool); db != nil {
		st := db.Stats()
		if st.Idle == 0 && st.MaxOpenConnections > 0 && st.OpenConnections >= st.MaxOpenConnections {
			return false, errPoolBusy
		}
	}
	return p.schemaExists(ctx, name)
}

// schemaExistsOn asks the catalog, on pool, whether schema name exists.
func schemaExistsOn(ctx context.Context, pool gorm.ConnPool, name string) (bool, error) {
	var exists bool
	row := pool.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", name)
	if err := row.Scan(&exists); err != nil {
		return false, err
	}
	return exists, nil
}

// DB returns the *gorm.DB the plugin was registered on.
func (p *Plugin) DB() *gorm.DB { return p.db }

// sqlDB returns the *sql.DB under the plugin's *gorm.DB.
func (p *Plugin) sqlDB() (*sql.DB, error) { return p.db.DB() }

// registered returns ErrNotRegistered until db.Use(p) has succeeded: the one
// policy of every method that needs the database.
func (p *Plugin) registered() error {
	if p.db == nil {
		return ErrNotRegistered
	}
	return nil
}

// checkTenantName validates a name given to an entry point that acts for a
// tenant: the tenant rule, and never the shared schema.
func (p *Plugin) checkTenantName(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if reason := p.notATenant(name); reason != "" {
		return &NameError{Name: name, Reason: reason}
	}
	return nil
}

// notATenant says why a valid name still cannot be a tenant of this plugin,
// or returns "".
func (p *Plugin) notATenant(name string) string {
	if name == p.sharedSchema {
		return "it is the shared schema"
	}
	for _, s := range p.extSchemas {
		if name == s {
			return "it is an extension schema"
		}
	}
	return ""
}
