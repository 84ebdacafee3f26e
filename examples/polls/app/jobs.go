package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/gorm-tenancy/tenantplugin"
	"gorm.io/gorm"
)

// Job is a background job's payload. The tenant travels as a plain name in
// the serialized payload, like any real queue would carry it, and is
// validated again where the job runs.
type Job struct {
	Tenant string `json:"tenant"`
	Kind   string `json:"kind"`
	PollID int64  `json:"poll_id,omitempty"`
}

// Queue is a small in-process job queue: payloads are serialized to JSON on
// Enqueue and decoded by the worker, as with an external broker.
type Queue struct {
	db   *gorm.DB
	p    *tenantplugin.Plugin
	log  *slog.Logger
	ch   chan []byte
	wg   sync.WaitGroup
	once sync.Once
}

// NewQueue starts workers goroutines consuming the queue.
func NewQueue(db *gorm.DB, plugin *tenantplugin.Plugin, log *slog.Logger, workers int) *Queue {
	q := &Queue{db: db, p: plugin, log: log, ch: make(chan []byte, 1024)}
	for i := 0; i < workers; i++ {
		q.wg.Add(1)
		go q.work()
	}
	return q
}

// Enqueue serializes and queues a job.
func (q *Queue) Enqueue(j Job) {
	b, err := json.Marshal(j)
	if err != nil {
		q.log.Error("job not queued", "err", err)
		return
	}
	q.ch <- b
}

// Close stops accepting jobs and waits for the queued ones to finish.
func (q *Queue) Close() {
	q.once.Do(func() { close(q.ch) })
	q.wg.Wait()
}

func (q *Queue) work() {
	defer q.wg.Done()
	for payload := range q.ch {
		if err := q.Run(context.Background(), payload); err != nil {
			q.log.Error("job failed", "payload", string(payload), "err", err)
		}
	}
}

// Run executes one serialized job.
func (q *Queue) Run(ctx context.Context, payload []byte) error {
	var j Job
	if err := json.Unmarshal(payload, &j); err != nil {
		return fmt.Errorf("decode job: %w", err)
	}
	tctx, err := q.p.ContextFor(ctx, j.Tenant) // checked again here: valid and registered
	if err != nil {
		return err
	}
	db := q.db.WithContext(tctx)
	switch j.Kind {
	case "poll_created":
		var p Poll
		if err := db.First(&p, j.PollID).Error; err != nil {
			return err
		}
		if err := db.Create(&Event{Kind: "poll_created", Detail: p.Question}).Error; err != nil {
			return err
		}
		q.log.InfoContext(tctx, "job done", "kind", j.Kind, "poll_id", j.PollID) // names the tenant (LogHandler)
		return nil
	}
	return fmt.Errorf("unknown job kind %q", j.Kind)
}
