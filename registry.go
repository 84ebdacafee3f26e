package tenantplugin

import (
	"time"
)

// TenantRecord is a row of the tenant registry, the table
// tenantplugin_tenants in the shared schema. The library owns it: the
// migrator creates it (MigrateShared) and keeps it in step with the tenant
// schemas. Apps may reference it from their own shared models (foreign key
// to tenantplugin_tenants.name) and read it, but should change it only
// through the Migrator.
type TenantRecord struct {
	// Name is the tenant name, which is also its schema name.
	Name string `gorm:"primaryKey;size:63"`
	// Fingerprint identifies the model set and migration list the tenant
	// schema was last migrated to; the migrator skips tenants whose
	// fingerprint is current. Empty means "never fully migrated".
	Fingerprint string `gorm:"size:64;not null;default:''"`
	CreatedAt   time.Time
	MigratedAt  *time.Time
	// Domains are the host names that resolve to this tenant (middleware).
	Domains []TenantDomain `gorm:"foreignKey:Tenant;references:Name;constraint:OnDelete:CASCADE"`
}

// TableName implements gorm's Tabler.
func (TenantRecord) TableName() string { return "tenantplugin_tenants" }

// TenantDomain maps a host name to a tenant: the table tenantplugin_domains in
// the shared schema. A tenant may have several domains.
type TenantDomain struct {
	// Host is a lower-case host name without port.
	Host   string `gorm:"primaryKey;size:253"`
	Tenant string `gorm:"size:63;not null;index"`
}

// TableName implements gorm's Tabler.
func (TenantDomain) TableName() string { return "tenantplugin_domains" }

// libraryModels are the shared tables the library itself owns.
var libraryModels = []any{&TenantRecord{}, &TenantDomain{}}

const migrationsTable = "tenantplugin_migrations"
