package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPollsExample64BitIDs: the example serves IDs past 32 bits (on Citus,
// rows written through a worker get IDs above 2^48) through JSON and URLs.
func TestPollsExample64BitIDs(t *testing.T) {
	s := newPollsServer(t)
	ctx := context.Background()
	tenant := fmt.Sprintf("big%d", tenantN.Add(1))
	require.NoError(t, s.m.CreateTenant(ctx, tenant))
	const start = int64(1)<<48 + 1
	for _, seq := range []string{"polls_id_seq", "choices_id_seq"} {
		require.NoError(t, s.app.DB.WithContext(tenantplugin.WithTenant(ctx, tenant)).
			Exec(fmt.Sprintf("SELECT setval('%s', %d, false)", seq, start)).Error)
	}
	host := tenant + ".polls.localhost"
	code, body := s.do("POST", host, "/api/polls", `{"question":"Big?","choices":["yes","no"]}`)
	require.Equal(t, http.StatusCreated, code, string(body))
	var created struct {
		ID      int64 `json:"id"`
		Choices []struct {
			ID int64 `json:"id"`
		} `json:"choices"`
	}
	require.NoError(t, json.Unmarshal(body, &created))
	require.Equal(t, start, created.ID)
	require.Len(t, created.Choices, 2)
	assert.Equal(t, start+1, created.Choices[1].ID)
	code, body = s.do("GET", host, fmt.Sprintf("/api/polls/%d", created.ID), "")
	require.Equal(t, http.StatusOK, code, string(body))
	code, body = s.do("POST", host, fmt.Sprintf("/api/polls/%d/votes", created.ID), fmt.Sprintf(`{"choice_id": %d}`, created.Choices[1].ID))
	require.Equal(t, http.StatusCreated, code, string(body))
	assert.Contains(t, string(body), fmt.Sprintf(`"choice_id":%d`, start+1))
	// Past 64 bits, or negative: a bad id, not a lookup.
	for _, id := range []string{"9223372036854775808", "-1", "0"} {
		code, _ = s.do("GET", host, "/api/polls/"+id, "")
		assert.Equal(t, http.StatusBadRequest, code, id)
	}
}
