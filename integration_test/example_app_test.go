package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/examples/polls/app"
	"github.com/gorm-tenancy/tenantplugin/tenanttest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type apiPoll struct {
	ID       uint   `json:"id"`
	Question string `json:"question"`
	Choices  []struct {
		ID    uint   `json:"id"`
		Text  string `json:"text"`
		Votes int    `json:"votes"`
	} `json:"choices"`
}

type pollsServer struct {
	t   *testing.T
	srv *httptest.Server
	app *app.App
	p   *tenantplugin.Plugin
	m   *tenantplugin.Migrator
}

// newPollsServer runs the example app on its own database.
func newPollsServer(t *testing.T) *pollsServer {
	db, err := server.Open(8, nil)
	require.NoError(t, err)
	plugin := app.NewPlugin(tenantplugin.WithSharedSchema(fmt.Sprintf("polls_shared_%d", sharedN.Add(1))))
	require.NoError(t, db.Use(plugin))
	m := plugin.Migrator()
	require.NoError(t, m.MigrateShared(context.Background()))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q := app.NewQueue(db, plugin, log, 2)
	a := &app.App{DB: db, Plugin: plugin, Jobs: q, Log: log}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		q.Close()
		s, _ := db.DB()
		s.Close()
	})
	return &pollsServer{t: t, srv: srv, app: a, p: plugin, m: m}
}

func (s *pollsServer) do(method, host, path, body string) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.srv.URL+path, rd)
	require.NoError(s.t, err)
	req.Host = host
	resp, err := s.srv.Client().Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, b
}

func TestPollsExampleOverHTTP(t *testing.T) {
	s := newPollsServer(t)
	ctx := context.Background()
	thorT := tenanttest.New(t, s.m, tenanttest.WithPrefix("thor"), tenanttest.WithDomain("polls.example"))
	thor := thorT.Name
	potter := tenanttest.New(t, s.m, tenanttest.WithPrefix("potter")).Name
	thorHost := thor + ".polls.localhost:8080"
	potterHost := potter + ".polls.localhost"

	code, body := s.do("POST", thorHost, "/api/polls", `{"question":"Hammer?","choices":["Mjolnir","Stormbreaker"]}`)
	require.Equal(t, http.StatusCreated, code, string(body))
	var created apiPoll
	require.NoError(t, json.Unmarshal(body, &created))
	require.Len(t, created.Choices, 2)

	code, body = s.do("POST", thorHost, fmt.Sprintf("/api/polls/%d/votes", created.ID), fmt.Sprintf(`{"choice_id": %d}`, created.Choices[1].ID))
	require.Equal(t, http.StatusCreated, code, string(body))
	code, body = s.do("GET", thorT.Host(), fmt.Sprintf("/api/polls/%d", created.ID), "")
	require.Equal(t, http.StatusOK, code, string(body))
	var got apiPoll
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, "Hammer?", got.Question)
	assert.Equal(t, 1, got.Choices[1].Votes)

	// potter does not see thor's poll, by list or by id.
	code, body = s.do("GET", potterHost, "/api/polls", "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `[]`, string(body))
	code, _ = s.do("GET", potterHost, fmt.Sprintf("/api/polls/%d", created.ID), "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = s.do("POST", potterHost, fmt.Sprintf("/api/polls/%d/votes", created.ID), fmt.Sprintf(`{"choice_id": %d}`, created.Choices[0].ID))
	assert.Equal(t, http.StatusNotFound, code)

	// Errors.
	for _, c := range []struct {
		method, host, path, body string
		code                     int
	}{
		{"GET", "nobody.polls.localhost", "/api/polls", "", 404},
		{"GET", "unrelated.example.org", "/api/polls", "", 404},
		{"GET", "bad_host!", "/api/polls", "", 400},
		{"GET", "a..b", "/api/polls", "", 400},
		{"GET", `x";drop.polls.localhost`, "/api/polls", "", 400},
		{"GET", "pg-toast.polls.localhost", "/api/polls", "", 404},
		{"POST", thorHost, "/api/polls", `{"question":`, 400},
		{"POST", thorHost, "/api/polls", `{"question":"one choice","choices":["a"]}`, 400},
		{"POST", thorHost, "/api/polls/999999/votes", `{"choice_id": 1}`, 404},
		{"POST", thorHost, "/api/polls/abc/votes", `{"choice_id": 1}`, 400},
		{"GET", thorHost, "/api/polls/424242", "", 404},
	} {
		code, body := s.do(c.method, c.host, c.path, c.body)
		assert.Equal(t, c.code, code, "%s %s %s: %s", c.method, c.host, c.path, body)
		var e map[string]string
		assert.NoError(t, json.Unmarshal(body, &e), "error body is JSON: %s", body)
		assert.NotEmpty(t, e["error"])
	}

	// The background job ran for thor only.
	s.app.Jobs.Close()
	var events []app.Event
	require.NoError(t, s.app.DB.WithContext(tenantplugin.WithTenant(ctx, thor)).Find(&events).Error)
	require.Len(t, events, 1)
	assert.Equal(t, "poll_created", events[0].Kind)
	require.NoError(t, s.app.DB.WithContext(tenantplugin.WithTenant(ctx, potter)).Find(&events).Error)
	assert.Empty(t, events)
	// A tampered payload is refused where the job runs.
	err := s.app.Jobs.Run(ctx, []byte(`{"tenant":"\"; DROP SCHEMA public; --","kind":"poll_created","poll_id":1}`))
	require.ErrorIs(t, err, tenantplugin.ErrInvalidTenantName)
}

// TestPollsTenantsNeverSeeEachOther hammers two tenants concurrently over
// HTTP; every response must hold only the requesting tenant's polls.
func TestPollsTenantsNeverSeeEachOther(t *testing.T) {
	s := newPollsServer(t)
	ctx := context.Background()
	var tenants []string
	for i := 0; i < 3; i++ {
		tenants = append(tenants, tenanttest.New(t, s.m, tenanttest.WithPrefix("conc_http")).Name)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	leaks, requests := 0, 0
	for g := 0; g < 12; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			tn := tenants[g%len(tenants)]
			host := tn + ".polls.localhost"
			for i := 0; i < 15; i++ {
				body := fmt.Sprintf(`{"question":"%s %d","choices":["a","b"]}`, tn, i)
				req, _ := http.NewRequest("POST", s.srv.URL+"/api/polls", bytes.NewBufferString(body))
				req.Host = host
				resp, err := s.srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				req, _ = http.NewRequest("GET", s.srv.URL+"/api/polls", nil)
				req.Host = host
				resp, err = s.srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var polls []apiPoll
				err = json.NewDecoder(resp.Body).Decode(&polls)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				requests += 2
				for _, p := range polls {
					if !strings.HasPrefix(p.Question, tn+" ") {
						leaks++
					}
				}
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	t.Logf("requests: %d, leaks found: %d", requests, leaks)
	assert.Zero(t, leaks)
	assert.Equal(t, 12*15*2, requests)

	// A job run for all tenants touches each tenant exactly once.
	rep, err := s.p.ForEachTenant(ctx, 2, app.Digest)
	require.NoError(t, err)
	assert.Equal(t, len(tenants), rep.Migrated)
	for _, tn := range tenants {
		var digests []app.Event
		require.NoError(t, s.app.DB.WithContext(tenantplugin.WithTenant(ctx, tn)).Where("kind = ?", "digest").Find(&digests).Error)
		require.Len(t, digests, 1, tn)
		assert.Equal(t, "60 polls, 0 votes", digests[0].Detail)
	}
}
