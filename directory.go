package tenantplugin

import (
	"context"
	"errors"
	"sync"
	"time"

	"gorm.io/gorm"
)

// Directory answers "which tenant is this host?" and "does this tenant
// exist?" from the tenant registry, through a bounded cache with expiry, so
// that a steady stream of requests costs no query per request. Creating or
// dropping a tenant and changing a domain through this process's Migrator
// clears the cache at once; changes made by other processes are seen when
// entries expire (TTL, 30 s by default).
type Directory struct {
	p   *Plugin
	ttl time.Duration
	max int

	mu    sync.Mutex
	gen   uint64 // bumped by every invalidation
	hosts map[string]dirEntry
	names map[string]dirEntry
}

type dirEntry struct {
	tenant  string // hosts: tenant of the host, "" for none; names: unused
	exists  bool
	expires time.Time
}

// Directory returns the plugin's tenant directory (one per Plugin).
func (p *Plugin) Directory() *Directory {
	p.dirOnce.Do(func() {
		p.dir = &Directory{p: p, ttl: 30 * time.Second, max: 10000,
			hosts: map[string]dirEntry{}, names: map[string]dirEntry{}}
	})
	return p.dir
}

// SetCache sets the entry lifetime and the bound on cached entries (each of
// hosts and names). Zero ttl disables caching.
func (d *Directory) SetCache(ttl time.Duration, maxEntries int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ttl, d.max = ttl, maxEntries
	d.invalidateLocked()
}

// Invalidate drops every cached answer.
func (d *Directory) Invalidate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.invalidateLocked()
}

func (d *Directory) invalidateLocked() {
	d.gen++
	clear(d.hosts)
	clear(d.names)
}

func (d *Directory) get(m map[string]dirEntry, key string) (dirEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := m[key]
	if ok && time.Now().After(e.expires) {
		delete(m, key)
		ok = false
	}
	return e, ok
}

func (d *Directory) generation() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

func (d *Directory) put(m map[string]dirEntry, key string, e dirEntry, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ttl <= 0 || gen != d.gen { // invalidated while we were asking
		return
	}
	if len(m) >= d.max {
		// Bounded: drop expired entries, then arbitrary ones down to 90%.
		now := time.Now()
		for k, v := range m {
			if now.After(v.expires) {
				delete(m, k)
			}
		}
		for k := range m {
			if len(m) < d.max*9/10 {
				break
			}
			delete(m, k)
		}
	}
	e.expires = time.Now().Add(d.ttl)
	m[key] = e
}

// TenantForHost returns the tenant registered for host (a normalized host
// name, see NormalizeHost), or ErrUnknownTenant.
func (d *Directory) TenantForHost(ctx context.Context, host string) (string, error) {
	if d.p.db == nil {
		return "", &RegistryError{Err: errNotRegistered}
	}
	if e, ok := d.get(d.hosts, host); ok {
		if e.tenant == "" {
			return "", &unknownHostError{host: host}
		}
		return e.tenant, nil
	}
	gen := d.generation()
	var rec TenantDomain
	err := d.p.db.WithContext(SharedOnly(ctx)).Where("host = ?", host).Limit(1).Find(&rec).Error
	if err != nil {
		return "", &RegistryError{Err: err}
	}
	d.put(d.hosts, host, dirEntry{tenant: rec.Tenant}, gen)
	if rec.Tenant == "" {
		return "", &unknownHostError{host: host}
	}
	return rec.Tenant, nil
}

// Exists reports whether tenant name is registered.
func (d *Directory) Exists(ctx context.Context, name string) (bool, error) {
	if d.p.db == nil {
		return false, &RegistryError{Err: errNotRegistered}
	}
	if e, ok := d.get(d.names, name); ok {
		return e.exists, nil
	}
	gen := d.generation()
	var n int64
	err := d.p.db.WithContext(SharedOnly(ctx)).Model(&TenantRecord{}).Where("name = ?", name).Limit(1).Count(&n).Error
	if err != nil {
		return false, &RegistryError{Err: err}
	}
	d.put(d.names, name, dirEntry{exists: n > 0}, gen)
	return n > 0, nil
}

// RegistryError reports that the tenant registry could not be read (the
// database is unreachable, say): the middleware answers 503.
type RegistryError struct{ Err error }

// Error implements error.
func (e *RegistryError) Error() string {
	return "tenantplugin: tenant registry unavailable: " + e.Err.Error()
}

// Unwrap gives errors.Is and errors.As the cause.
func (e *RegistryError) Unwrap() error { return e.Err }

type unknownHostError struct{ host string }

// Error implements error.
func (e *unknownHostError) Error() string {
	return "tenantplugin: unknown tenant: no tenant for host " + quoteForMessage(e.host)
}
func (e *unknownHostError) Is(target error) bool { return target == ErrUnknownTenant }

func quoteForMessage(s string) string { return `"` + truncateForMessage(s) + `"` }

// AddDomain maps host to tenant (a tenant may have several domains).
func (m *Migrator) AddDomain(ctx context.Context, tenant, host string) error {
	if m.err != nil {
		return m.err
	}
	h, err := NormalizeHost(host)
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
	if m.err != nil {
		return m.err
	}
	h, err := NormalizeHost(host)
	if err != nil {
		return err
	}
	res := m.p.db.WithContext(SharedOnly(ctx)).Where("host = ?", h).Delete(&TenantDomain{})
	m.p.Directory().Invalidate()
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return &unknownHostError{host: h}
	}
	return nil
}

// Domains lists the hosts of tenant.
func (m *Migrator) Domains(ctx context.Context, tenant string) ([]string, error) {
	if m.err != nil {
		return nil, m.err
	}
	var hosts []string
	err := m.p.db.WithContext(SharedOnly(ctx)).Model(&TenantDomain{}).Where("tenant = ?", tenant).Order("host").Pluck("host", &hosts).Error
	return hosts, err
}
