package tenantcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
)

// migrate runs the migrate command: the shared schema, then every tenant,
// with its progress shown on c.ProgressOut (see Commands).
func (c *Commands) migrate(ctx context.Context) (*tenantplugin.Report, error) {
	m := c.Migrator
	if c.NoProgress {
		return m.Migrate(ctx)
	}
	w := c.ProgressOut
	if w == nil {
		w = os.Stderr
	}
	line := newProgressLine(w, isTerminal(w), "migrate", time.Now)
	defer line.finish()
	return m.With(tenantplugin.WithProgress(line.update)).Migrate(ctx)
}

// isTerminal reports whether w is a terminal (a character device) that can
// redraw a line: the standard library's file mode, no dependency.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressLine shows a run's progress: on a terminal one line redrawn in
// place at most every redraw interval (done/total, failed, rate, remaining
// time); elsewhere a plain line each time another 5% is done (each tenant
// for runs of 20 or fewer). Failures are printed on a line of their own as
// they happen. A run in which every tenant so far was up to date prints
// nothing: the command's summary says it. The Migrator calls update one
// event at a time.
type progressLine struct {
	w      io.Writer
	live   bool
	op     string
	now    func() time.Time
	redraw time.Duration

	start    time.Time
	lastDraw time.Time
	drawn    bool // a live line is on screen
	worked   bool // some tenant was not up to date
	failed   int
	nextStep int
}

func newProgressLine(w io.Writer, live bool, op string, now func() time.Time) *progressLine {
	t := now()
	return &progressLine{w: w, live: live, op: op, now: now, redraw: 100 * time.Millisecond, start: t, lastDraw: t}
}

func (p *progressLine) update(ev tenantplugin.Progress) {
	if ev.State != tenantplugin.StateUpToDate {
		p.worked = true
	}
	if ev.State == tenantplugin.StateFailed {
		p.failed++
		p.clear()
		fmt.Fprintf(p.w, "%s: %v\n", p.op, ev.Err)
	}
	if !p.worked {
		return
	}
	if p.live {
		if now := p.now(); now.Sub(p.lastDraw) >= p.redraw || ev.Done == ev.Total {
			p.lastDraw = now
			fmt.Fprintf(p.w, "\r\033[K%s", p.text(ev))
			p.drawn = true
		}
		return
	}
	step := max(ev.Total/20, 1)
	if ev.Done >= p.nextStep || ev.Done == ev.Total {
		fmt.Fprintln(p.w, p.text(ev))
		p.nextStep = (ev.Done/step + 1) * step
	}
}

// text is the progress line for ev.
func (p *progressLine) text(ev tenantplugin.Progress) string {
	s := fmt.Sprintf("%s: %d/%d tenants, %d failed", p.op, ev.Done, ev.Total, p.failed)
	elapsed := ev.Elapsed
	if elapsed <= 0 {
		elapsed = p.now().Sub(p.start)
	}
	if elapsed <= 0 || ev.Done == 0 {
		return s
	}
	rate := float64(ev.Done) / elapsed.Seconds()
	s += fmt.Sprintf(", %.0f tenants/s", rate)
	if left := ev.Total - ev.Done; left > 0 {
		s += ", about " + roundDuration(time.Duration(float64(left)/rate*float64(time.Second))).String() + " left"
	} else {
		s += " in " + roundDuration(elapsed).String()
	}
	return s
}

// clear removes a live line before other output.
func (p *progressLine) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// finish ends a live line so that the next output starts on a line of its
// own.
func (p *progressLine) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
