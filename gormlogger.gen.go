package tenantplugin

// This file is hand-written. Its name ends in .gen.go on purpose: GORM's
// loggers print the file and line of the statement's caller, found by
// walking the stack past GORM's own files and past files named *.gen.go
// (gorm.io/gorm/utils.CallerFrame, which skips go-gorm/gen's generated
// code). The methods below sit on that stack between GORM and the logger
// they wrap, so they live here: log lines keep naming the application's
// file and line rather than this wrapper's (tested).

import (
	"context"
	"time"
)

// Info implements logger.Interface: msg starts with the tenant.
func (l gormLogger) Info(ctx context.Context, msg string, data ...any) {
	l.next.Info(ctx, logPrefix(ctx)+msg, data...)
}

// Warn implements logger.Interface: msg starts with the tenant.
func (l gormLogger) Warn(ctx context.Context, msg string, data ...any) {
	l.next.Warn(ctx, logPrefix(ctx)+msg, data...)
}

// Error implements logger.Interface: msg starts with the tenant.
func (l gormLogger) Error(ctx context.Context, msg string, data ...any) {
	l.next.Error(ctx, logPrefix(ctx)+msg, data...)
}

// Trace implements logger.Interface: the statement's SQL starts with the
// tenant. The SQL is built only if the wrapped logger asks for it.
func (l gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (sql string, rowsAffected int64), err error) {
	prefix := logPrefix(ctx)
	if prefix == "" {
		l.next.Trace(ctx, begin, fc, err)
		return
	}
	l.next.Trace(ctx, begin, func() (string, int64) {
		sql, rows := fc()
		return prefix + sql, rows
	}, err)
}
