// Package tenantplugin is a GORM plugin for schema-per-tenant multi-tenancy on
// PostgreSQL.
//
// Every tenant owns a PostgreSQL schema named after it, holding its own copy
// of the tenant tables; shared tables live in one shared schema ("public" by
// default). The tenant travels in the context.Context of each statement:
//
//	plugin := tenantplugin.New(
//		tenantplugin.WithSharedModels(&Plan{}),
//		tenantplugin.WithTenantModels(&Poll{}, &Choice{}),
//	)
//	db.Use(plugin)
//	ctx := tenantplugin.WithTenant(r.Context(), "thor")
//	db.WithContext(ctx).Find(&polls) // SELECT * FROM "thor"."polls"
//
// Packages by audience: this package is the plugin and its migrator;
// tenanthttp resolves the tenant of an HTTP request; tenantcmd is a command
// set for operators (migrate, create, drop, rename, clone, sizes, run SQL in
// tenants); tenanttest gives each application test a tenant of its own.
// LogHandler and Logger make slog and GORM log lines name their tenant.
//
// # Routing
//
// Statements GORM builds are routed by qualifying their table names
// ("thor"."polls"): the plugin wraps GORM's FROM, JOIN, INSERT and UPDATE
// clause builders, which costs no extra round trip. Raw SQL, and GORM
// statements carrying raw SQL fragments that name tables, are routed by
// search_path, set with set_config(..., true) inside a transaction so that no
// pooled connection keeps a tenant's search_path. Which tables are tenant
// tables and which are shared is decided once, when the plugin is
// registered, from the declared models (see New).
//
// # Migrations
//
// Plugin.Migrator returns a Migrator: MigrateShared migrates the shared
// schema, MigrateTenants every tenant (AutoMigrate of the tenant models, then
// gormigrate migrations, each tenant in one transaction under an advisory
// lock, with bounded concurrency and a Report), CreateTenant and DropTenant
// manage one tenant. Migrate, the start-up call, does both.
//
// # Outside requests
//
// RunInTenant runs a function in a transaction routed to one tenant;
// RunInTenants and ForEachTenant run one for many; ContextFor checks a tenant
// name that arrives in a job payload.
//
// # Guarantees
//
// A statement for a tenant touches that tenant's schema and the shared
// schema, never another tenant's. A tenant table used without a tenant fails
// with ErrNoTenant before any SQL is sent. Tenant names are validated
// (ValidateName) and quoted by the library itself, never pasted into SQL.
// The README and SECURITY.md say precisely what is and is not guaranteed.
package tenantplugin
