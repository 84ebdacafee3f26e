package tenantplugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorm-tenancy/tenantplugin/internal/hostname"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
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

// AddDomain maps host to tenant (a tenant may have several domains).
func (m *Migrator) AddDomain(ctx context.Context, tenant, host string) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	h, err := normalizeHost(host)
	if err != nil {
		return err
	}
	if err := ValidateName(tenant); err != nil {
		return err
	}
	err = m.p.db.WithContext(SharedOnly(ctx)).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&TenantRecord{}).Where("name = ?", tenant).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return notRegistered(tenant)
		}
		return tx.Create(&TenantDomain{Host: h, Tenant: tenant}).Error
	})
	m.p.Directory().Invalidate()
	if err != nil && !errors.Is(err, ErrUnknownTenant) {
		return &TenantError{Tenant: tenant, Op: "add domain " + h, Err: err}
	}
	return err
}

// RemoveDomain removes a host mapping.
func (m *Migrator) RemoveDomain(ctx context.Context, host string) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	h, err := normalizeHost(host)
	if err != nil {
		return err
	}
	res := m.p.db.WithContext(SharedOnly(ctx)).Where("host = ?", h).Delete(&TenantDomain{})
	m.p.Directory().Invalidate()
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return &UnknownTenantError{Host: h}
	}
	return nil
}

// Domains lists the hosts of tenant.
func (m *Migrator) Domains(ctx context.Context, tenant string) ([]string, error) {
	if err := m.p.registered(); err != nil {
		return nil, err
	}
	var hosts []string
	err := m.p.db.WithContext(SharedOnly(ctx)).Model(&TenantDomain{}).Where("tenant = ?", tenant).Order("host").Pluck("host", &hosts).Error
	return hosts, err
}

// normalizeHosts normalizes every domain given to CreateTenant or
// CloneTenant.
func normalizeHosts(domains []string) ([]string, error) {
	hosts := make([]string, len(domains))
	for i, d := range domains {
		h, err := normalizeHost(d)
		if err != nil {
			return nil, err
		}
		hosts[i] = h
	}
	return hosts, nil
}

// normalizeHost is tenanthttp.NormalizeHost for the registry's own use.
func normalizeHost(host string) (string, error) {
	h, why, ok := hostname.Normalize(host)
	if !ok {
		return "", fmt.Errorf("%w %s: %s", ErrMalformedHost, quoteForMessage(host), why)
	}
	return h, nil
}

// registryMissing explains an undefined-table error on the registry: the
// shared schema was never migrated. Other errors pass unchanged.
func (p *Plugin) registryMissing(err error) error {
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) && pgErr.Code == "42P01" && strings.Contains(pgErr.Message, TenantRecord{}.TableName()) {
		return fmt.Errorf("tenantplugin: the tenant registry %s.%s does not exist: run Migrate (or MigrateShared) at start-up, before creating or using tenants: %w",
			p.sharedQuoted, QuoteIdentifier(TenantRecord{}.TableName()), err)
	}
	return err
}
