package tenantplugin

import (
	"context"
	"sync"
	"time"
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
		return "", &RegistryError{Err: ErrNotRegistered}
	}
	if e, ok := d.get(d.hosts, host); ok {
		if e.tenant == "" {
			return "", &UnknownTenantError{Host: host}
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
		return "", &UnknownTenantError{Host: host}
	}
	return rec.Tenant, nil
}

// Exists reports whether tenant name is registered.
func (d *Directory) Exists(ctx context.Context, name string) (bool, error) {
	if d.p.db == nil {
		return false, &RegistryError{Err: ErrNotRegistered}
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
