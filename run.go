package tenantplugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// State is the outcome for one tenant in a Report.
type State int

const (
	// StateMigrated: the tenant's schema was created or changed.
	StateMigrated State = iota + 1
	// StateUpToDate: nothing needed doing.
	StateUpToDate
	// StateFailed: the tenant's transaction failed and was rolled back; its
	// schema is as it was before the run.
	StateFailed
	// StateSkipped: not attempted (context cancelled or stop on error).
	StateSkipped
	// StateDone: ForEachTenant ran its function for the tenant.
	StateDone
	// StateAhead: the tenant has migrations this Migrator does not know (a
	// newer version of the app migrated it, during a rolling deploy): it
	// was left untouched, and its fingerprint was not overwritten.
	StateAhead
)

// String implements fmt.Stringer.
func (s State) String() string {
	switch s {
	case StateMigrated:
		return "migrated"
	case StateUpToDate:
		return "up-to-date"
	case StateFailed:
		return "failed"
	case StateSkipped:
		return "skipped"
	case StateDone:
		return "done"
	case StateAhead:
		return "ahead"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// TenantResult is one tenant's line in a Report.
type TenantResult struct {
	Tenant   string
	State    State
	Err      error
	Duration time.Duration
}

// Report is the outcome of a run over many tenants.
type Report struct {
	Results []TenantResult // in the order of the tenant names given
	// Migrated counts tenants migrated, created or rolled back (or, for
	// ForEachTenant, done); the others count their states.
	Migrated, UpToDate, Failed, Skipped, Ahead int
	Elapsed                                    time.Duration

	op string // what the run did: "migrate", "create", "rollback", "job", "run"
}

// Failures returns the failed tenants' results.
func (r *Report) Failures() []TenantResult {
	var out []TenantResult
	for _, t := range r.Results {
		if t.State == StateFailed {
			out = append(out, t)
		}
	}
	return out
}

// String implements fmt.Stringer.
func (r *Report) String() string {
	switch r.op {
	case "create":
		return fmt.Sprintf("%d tenants: %d created, %d failed, %d skipped in %s",
			len(r.Results), r.Migrated, r.Failed, r.Skipped, r.Elapsed.Round(time.Millisecond))
	case "rollback":
		return fmt.Sprintf("%d tenants: %d rolled back, %d with nothing to roll back, %d failed, %d skipped in %s",
			len(r.Results), r.Migrated, r.UpToDate, r.Failed, r.Skipped, r.Elapsed.Round(time.Millisecond))
	case "job", "run":
		return fmt.Sprintf("%d tenants: %d done, %d failed, %d skipped in %s",
			len(r.Results), r.Migrated, r.Failed, r.Skipped, r.Elapsed.Round(time.Millisecond))
	}
	ahead := ""
	if r.Ahead > 0 {
		ahead = fmt.Sprintf(", %d ahead of this version (left untouched)", r.Ahead)
	}
	return fmt.Sprintf("%d tenants: %d migrated, %d up to date%s, %d failed, %d skipped in %s",
		len(r.Results), r.Migrated, r.UpToDate, ahead, r.Failed, r.Skipped, r.Elapsed.Round(time.Millisecond))
}

// Progress is one event of a long run.
type Progress struct {
	Tenant  string
	State   State
	Err     error
	Done    int           // tenants finished so far, this one included
	Total   int           // tenants in the run
	Took    time.Duration // this tenant
	Elapsed time.Duration // since the run started
}

// run applies fn to every name with bounded concurrency, recovering panics,
// honouring cancellation and reporting progress.
func (m *Migrator) run(ctx context.Context, op string, names []string, fn func(context.Context, string) (State, error)) (*Report, error) {
	start := time.Now()
	rep := &Report{Results: make([]TenantResult, len(names)), op: op}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex // guards done, rep counters and progress calls
	done := 0
	finish := func(i int, res TenantResult) {
		mu.Lock()
		defer mu.Unlock()
		rep.Results[i] = res
		done++
		switch res.State {
		case StateMigrated, StateDone:
			rep.Migrated++
		case StateUpToDate:
			rep.UpToDate++
		case StateFailed:
			rep.Failed++
			if m.stopOnError {
				cancel()
			}
		case StateSkipped:
			rep.Skipped++
		case StateAhead:
			rep.Ahead++
		}
		if m.progress != nil {
			m.progress(Progress{Tenant: res.Tenant, State: res.State, Err: res.Err, Done: done, Total: len(names),
				Took: res.Duration, Elapsed: time.Since(start)})
		}
	}

	work := make(chan int)
	var wg sync.WaitGroup
	workers := min(m.workers(), len(names))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := names[i]
				if runCtx.Err() != nil {
					finish(i, TenantResult{Tenant: name, State: StateSkipped, Err: runCtx.Err()})
					continue
				}
				t0 := time.Now()
				st, err := safeCall(runCtx, name, fn)
				if err != nil {
					var te *TenantError
					if !errors.As(err, &te) || te.Tenant != name {
						err = &TenantError{Tenant: name, Op: op, Err: err}
					}
					st = StateFailed
					if runCtx.Err() != nil && errors.Is(err, runCtx.Err()) {
						st = StateSkipped
					}
				}
				finish(i, TenantResult{Tenant: name, State: st, Err: err, Duration: time.Since(t0)})
			}
		}()
	}
	for i := range names {
		work <- i
	}
	close(work)
	wg.Wait()
	rep.Elapsed = time.Since(start)

	var errs []error
	for _, r := range rep.Results {
		if r.State == StateFailed {
			errs = append(errs, r.Err)
		}
	}
	if rep.Skipped > 0 && ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	if len(errs) > 0 || rep.Skipped > 0 {
		return rep, &RunError{Report: rep, errs: errs}
	}
	return rep, nil
}

func safeCall(ctx context.Context, name string, fn func(context.Context, string) (State, error)) (st State, err error) {
	defer func() {
		if r := recover(); r != nil {
			st, err = StateFailed, fmt.Errorf("panic: %v", r)
		}
	}()
	return fn(ctx, name)
}
