// Package app is the polls example: a multi-tenant polls service where each
// tenant (thor, potter, ...) owns a PostgreSQL schema, found from the
// request's host (NAME.polls.localhost or a registered domain).
package app

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"gorm.io/gorm"
)

// Poll, Choice, Vote and Event are tenant models: every tenant schema has
// its own copy of their tables. IDs are 64-bit everywhere (models, JSON,
// URLs): on a Citus cluster, rows written through a worker get IDs above
// 2^48 from their bigserial columns.
type Poll struct {
	ID        int64     `gorm:"primaryKey" json:"id"`
	Question  string    `gorm:"not null" json:"question"`
	CreatedAt time.Time `json:"-"`
	Choices   []Choice  `json:"choices"`
}

// Choice is one answer of a poll; Votes counts the votes cast for it.
type Choice struct {
	ID     int64  `gorm:"primaryKey" json:"id"`
	PollID int64  `gorm:"not null;index" json:"-"`
	Text   string `gorm:"not null" json:"text"`
	Votes  int    `gorm:"not null;default:0" json:"votes"`
}

// Vote is one vote cast.
type Vote struct {
	ID        int64 `gorm:"primaryKey"`
	ChoiceID  int64 `gorm:"not null;index"`
	Choice    *Choice
	CreatedAt time.Time
}

// Event is written by background jobs, so that their work can be seen.
type Event struct {
	ID        int64     `gorm:"primaryKey" json:"id"`
	Kind      string    `gorm:"not null" json:"kind"`
	Detail    string    `json:"detail"`
	CreatedAt time.Time `json:"created_at"`
}

// BaseDomain is where tenants live as subdomains: thor.polls.localhost.
const BaseDomain = "polls.localhost"

// NewPlugin declares the example's models; opts may add more (tests give
// each run a shared schema of its own with WithSharedSchema).
func NewPlugin(opts ...tenantplugin.Option) *tenantplugin.Plugin {
	return tenantplugin.New(append([]tenantplugin.Option{
		tenantplugin.WithTenantModels(&Poll{}, &Choice{}, &Vote{}, &Event{}),
	}, opts...)...)
}

// App serves the JSON API.
type App struct {
	DB     *gorm.DB
	Plugin *tenantplugin.Plugin
	Jobs   *Queue
	Log    *slog.Logger
}

// Handler is the API behind the tenant middleware.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/polls", a.listPolls)
	mux.HandleFunc("POST /api/polls", a.createPoll)
	mux.HandleFunc("GET /api/polls/{id}", a.getPoll)
	mux.HandleFunc("POST /api/polls/{id}/votes", a.vote)
	mux.HandleFunc("GET /api/events", a.listEvents)
	dir := a.Plugin.Directory()
	// The request's log line names its tenant through the log handler
	// (tenantplugin.LogHandler in main): it runs after the middleware.
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		mux.ServeHTTP(sw, r)
		a.Log.InfoContext(r.Context(), "request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"took", time.Since(start).Round(time.Microsecond))
	})
	mw := tenanthttp.Middleware(
		tenanthttp.WithResolvers(
			tenanthttp.Subdomain(BaseDomain, dir),
			tenanthttp.Host(dir),
		),
		tenanthttp.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, status int, err error) {
			if status >= 500 {
				a.Log.Error("tenant resolution failed", "host", r.Host, "err", err)
			}
			writeError(w, status, http.StatusText(status))
		}),
	)
	return mw(logged)
}

// statusWriter remembers the status a handler wrote, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// fail maps a database error to a response; it never shows internals.
func (a *App) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, tenantplugin.ErrUnknownTenant):
		writeError(w, http.StatusNotFound, "unknown tenant")
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "request cancelled")
	default:
		a.Log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func (a *App) db(r *http.Request) *gorm.DB { return a.DB.WithContext(r.Context()) }

func (a *App) listPolls(w http.ResponseWriter, r *http.Request) {
	polls := []Poll{}
	err := a.db(r).Preload("Choices", func(db *gorm.DB) *gorm.DB { return db.Order("id") }).Order("id").Find(&polls).Error
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, polls)
}

type newPoll struct {
	Question string   `json:"question"`
	Choices  []string `json:"choices"`
}

func (a *App) createPoll(w http.ResponseWriter, r *http.Request) {
	var in newPoll
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	if in.Question == "" || len(in.Choices) < 2 {
		writeError(w, http.StatusBadRequest, "a poll needs a question and at least two choices")
		return
	}
	p := Poll{Question: in.Question}
	for _, c := range in.Choices {
		if c == "" {
			writeError(w, http.StatusBadRequest, "empty choice")
			return
		}
		p.Choices = append(p.Choices, Choice{Text: c})
	}
	if err := a.db(r).Create(&p).Error; err != nil {
		a.fail(w, r, err)
		return
	}
	tenant, _ := tenantplugin.FromContext(r.Context())
	a.Jobs.Enqueue(Job{Tenant: tenant, Kind: "poll_created", PollID: p.ID})
	writeJSON(w, http.StatusCreated, p)
}

// pollID parses the {id} of the URL as a positive 64-bit integer.
func pollID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

func (a *App) getPoll(w http.ResponseWriter, r *http.Request) {
	id, ok := pollID(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "bad poll id")
		return
	}
	var p Poll
	if err := a.db(r).Preload("Choices", func(db *gorm.DB) *gorm.DB { return db.Order("id") }).First(&p, id).Error; err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *App) vote(w http.ResponseWriter, r *http.Request) {
	id, ok := pollID(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "bad poll id")
		return
	}
	var in struct {
		ChoiceID int64 `json:"choice_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<12)).Decode(&in); err != nil || in.ChoiceID <= 0 {
		writeError(w, http.StatusBadRequest, "bad JSON: want {\"choice_id\": N}")
		return
	}
	var choice Choice
	err := a.db(r).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("id = ? AND poll_id = ?", in.ChoiceID, id).First(&choice).Error; err != nil {
			return err
		}
		if err := tx.Create(&Vote{ChoiceID: choice.ID}).Error; err != nil {
			return err
		}
		return tx.Model(&choice).Update("votes", gorm.Expr("votes + 1")).Error
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.db(r).First(&choice, choice.ID).Error; err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"poll_id": id, "choice_id": choice.ID, "votes": choice.Votes})
}

func (a *App) listEvents(w http.ResponseWriter, r *http.Request) {
	events := []Event{}
	if err := a.db(r).Order("id").Find(&events).Error; err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, events)
}

// Digest is the job run for all tenants ("report"): it writes one digest
// event in each tenant with its poll and vote counts.
func Digest(ctx context.Context, db *gorm.DB) error {
	var polls, votes int64
	if err := db.Model(&Poll{}).Count(&polls).Error; err != nil {
		return err
	}
	if err := db.Model(&Vote{}).Count(&votes).Error; err != nil {
		return err
	}
	return db.Create(&Event{Kind: "digest", Detail: strconv.FormatInt(polls, 10) + " polls, " + strconv.FormatInt(votes, 10) + " votes"}).Error
}
