// Package testdb gives tests and benchmarks a PostgreSQL database of their
// own: it creates a uniquely named database on the server named by
// DATABASE_URL (default: the local server) and drops it when done.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DefaultURL is used when DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns DATABASE_URL or DefaultURL.
func ServerURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// DB is a scratch database.
type DB struct {
	Name string
	URL  string // DSN of the scratch database
	// Counter counts every statement sent by connections opened with Open.
	Counter *Counter
	admin   *sql.DB
}

// Counter is a pgx tracer that counts and remembers the statements sent.
type Counter struct {
	n    atomic.Int64
	mu   sync.Mutex
	last []string
	keep bool
}

// Count returns how many statements were sent.
func (c *Counter) Count() int64 { return c.n.Load() }

// Record makes the counter remember statement texts until Take.
func (c *Counter) Record() { c.mu.Lock(); c.keep = true; c.last = nil; c.mu.Unlock() }

// Take returns the remembered statements and stops remembering.
func (c *Counter) Take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.last
	c.last, c.keep = nil, false
	return out
}

// TraceQueryStart implements pgx.QueryTracer.
func (c *Counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	c.mu.Lock()
	if c.keep {
		c.last = append(c.last, d.SQL)
	}
	c.mu.Unlock()
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *Counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Create makes a new database named prefix_<random>.
func Create(prefix string) (*DB, error) {
	server := ServerURL()
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("testdb: cannot reach PostgreSQL at %s: %w", Redact(server), err)
	}
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	name := prefix + "_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		admin.Close()
		return nil, fmt.Errorf("testdb: create database %s: %w", name, err)
	}
	u, err := url.Parse(server)
	if err != nil {
		admin.Close()
		return nil, err
	}
	u.Path = "/" + name
	return &DB{Name: name, URL: u.String(), Counter: &Counter{}, admin: admin}, nil
}

// Open opens GORM on the scratch database the way the README recommends
// (tenantplugin.Open), counting statements.
func (d *DB) Open(maxConns int, cfg *gorm.Config) (*gorm.DB, error) {
	if cfg == nil {
		cfg = &gorm.Config{}
	}
	if cfg.Logger == nil {
		cfg.Logger = logger.Discard
	}
	db, err := gorm.Open(tenantplugin.Open(d.URL, tenantplugin.WithPgxConfig(func(c *pgx.ConnConfig) {
		c.Tracer = d.Counter
	})), cfg)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(maxConns)
		sqlDB.SetMaxIdleConns(maxConns)
	}
	return db, nil
}

// Drop removes the database, closing any connection still open to it.
func (d *DB) Drop() error {
	defer d.admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := d.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+d.Name+`" WITH (FORCE)`)
	return err
}

// Redact hides the password of a DSN for messages.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		if i := strings.Index(dsn, "password="); i >= 0 {
			return dsn[:i] + "password=xxxxx"
		}
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
