package tenantplugin

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// SlogProgress returns a progress callback (for WithProgress) that logs to
// logger: every failure at Error, every tenant at Debug, and a summary line at
// Info each time another 5% of the run is done (each tenant when the run has
// 20 or fewer), so a run over 5,000 tenants shows where it is without 5,000
// Info lines. A run in which every tenant is up to date (the usual start-up)
// logs one Info line at its end, "tenantplugin: every tenant up to date",
// and nothing before it; summary lines start with the first tenant that had
// work. A run is recognized by its events (Done counts from 1), so give each
// concurrent run a callback of its own.
func SlogProgress(logger *slog.Logger) func(Progress) {
	var mu sync.Mutex
	busy := false // this run had a tenant that was not up to date
	return func(ev Progress) {
		mu.Lock()
		defer mu.Unlock()
		ctx := context.Background()
		if ev.Done <= 1 {
			busy = false
		}
		if ev.State != StateUpToDate {
			busy = true
		}
		attrs := []any{"tenant", ev.Tenant, "state", ev.State.String(), "done", ev.Done, "total", ev.Total,
			"took", ev.Took.Round(time.Microsecond)}
		if ev.State == StateFailed {
			logger.ErrorContext(ctx, "tenantplugin: tenant failed", append(attrs, "err", ev.Err)...)
		} else {
			logger.DebugContext(ctx, "tenantplugin: tenant done", attrs...)
		}
		if !busy {
			if ev.Done == ev.Total {
				logger.InfoContext(ctx, "tenantplugin: every tenant up to date",
					"total", ev.Total, "elapsed", ev.Elapsed.Round(time.Millisecond))
			}
			return
		}
		step := ev.Total / 20
		if step < 1 {
			step = 1
		}
		if ev.Done%step == 0 || ev.Done == ev.Total {
			rate := 0.0
			if s := ev.Elapsed.Seconds(); s > 0 {
				rate = float64(ev.Done) / s
			}
			logger.InfoContext(ctx, "tenantplugin: progress",
				"done", ev.Done, "total", ev.Total, "elapsed", ev.Elapsed.Round(time.Millisecond),
				"tenants_per_second", int(rate))
		}
	}
}
