// Command polls is the multi-tenant polls example:
//
//	go run ./examples/polls migrate
//	go run ./examples/polls tenants create thor --domain polls.thor.com
//	go run ./examples/polls tenants list
//	go run ./examples/polls tenants clone thor loki     # thor's polls, copied
//	go run ./examples/polls tenants rename loki asgard
//	go run ./examples/polls tenants stats               # sizes, largest first
//	go run ./examples/polls serve --addr 127.0.0.1:8080
//	go run ./examples/polls report      # a job run for every tenant
//
// Every command reads DATABASE_URL (default: the local server's
// tenantplugin_demo database, created if missing). It may name a database on
// a Citus coordinator: tenants are then spread over the workers, and
// "tenants distribute" and "tenants move NAME --node HOST:PORT" place them
// (see the README, Scaling out on Citus). Log lines name their tenant: the
// slog handler is wrapped in tenantplugin.LogHandler and GORM's logger (slow
// statements and errors) in tenantplugin.Logger.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/examples/polls/app"
	"github.com/gorm-tenancy/tenantplugin/tenantcmd"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/tenantplugin_demo?sslmode=disable"

func main() {
	// Every record logged with a context that carries a tenant gets
	// tenant=NAME, with no code in the handlers.
	log := slog.New(tenantplugin.LogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "polls:", err)
		if errors.Is(err, tenantcmd.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: polls (migrate | tenants ... | serve [--addr HOST:PORT] | report)\n%s", tenantcmd.ErrUsage, tenantcmd.Usage)
	}
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultURL
		if err := ensureDatabase(ctx, dsn); err != nil {
			return err
		}
	}
	// GORM logs slow statements and errors, each naming its tenant:
	//   [212.410ms] [rows:1] [tenant=thor] SELECT * FROM "thor"."polls" ...
	gormLog := tenantplugin.Logger(logger.New(stdlog.New(os.Stderr, "", stdlog.LstdFlags), logger.Config{
		SlowThreshold:             200 * time.Millisecond,
		LogLevel:                  logger.Warn,
		IgnoreRecordNotFoundError: true, // a 404, not an error
		ParameterizedQueries:      true, // no values in the log
	}))
	db, err := gorm.Open(tenantplugin.Open(dsn), &gorm.Config{Logger: gormLog})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(16)
	plugin := app.NewPlugin()
	if err := db.Use(plugin); err != nil {
		return err
	}
	m := plugin.Migrator(tenantplugin.WithProgress(tenantplugin.SlogProgress(log)))

	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:8080", "listen address")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("%w: %v", tenantcmd.ErrUsage, err)
		}
		return serve(ctx, log, db, plugin, *addr)
	case "report":
		rep, err := plugin.ForEachTenant(ctx, 4, app.Digest)
		if rep != nil {
			fmt.Println("digest:", rep.String())
		}
		return err
	}
	cmds := &tenantcmd.Commands{Migrator: m, Funcs: map[string]func(context.Context, *gorm.DB) error{"digest": app.Digest}}
	return cmds.Run(ctx, args)
}

func serve(ctx context.Context, log *slog.Logger, db *gorm.DB, plugin *tenantplugin.Plugin, addr string) error {
	q := app.NewQueue(db, plugin, log, 2)
	defer q.Close()
	a := &app.App{DB: db, Plugin: plugin, Jobs: q, Log: log}
	srv := &http.Server{Addr: addr, Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("serving", "addr", addr, "try", "curl -H 'Host: thor."+app.BaseDomain+"' http://"+addr+"/api/polls")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// ensureDatabase creates the default demo database when it does not exist.
func ensureDatabase(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	name := u.Path[1:]
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL (start it with scripts/pg.sh): %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}
