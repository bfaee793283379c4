package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoalhq/shoal/kernel/dashboard"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// registerMetrics adds the manager's metrics to reg. They are read at
// scrape time from the parts that own the numbers, so nothing is counted
// twice or on a hot path.
func (m *Manager) registerMetrics(reg *prometheus.Registry) {
	stats := func(f func() float64) func() float64 { return f }
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_raft_leader", Help: "1 if this manager is the Raft leader."},
			stats(func() float64 {
				if m.raft.IsLeader() {
					return 1
				}
				return 0
			})),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_raft_applied_index", Help: "Raft index last applied to the local state."},
			stats(func() float64 { return float64(m.raft.Stats().AppliedIndex) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shoal_raft_proposed_entries_total", Help: "Log entries proposed by the batched proposer."},
			stats(func() float64 { return float64(m.raft.Stats().Entries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shoal_raft_proposed_transactions_total", Help: "Writers' transactions packed into those entries."},
			stats(func() float64 { return float64(m.raft.Stats().Transactions) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shoal_raft_proposed_bytes_total", Help: "Encoded size of the proposed entries."},
			stats(func() float64 { return float64(m.raft.Stats().Bytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shoal_dispatch_status_updates_total", Help: "Task status reports from workers committed while this manager led."},
			stats(func() float64 { return float64(m.statusWritten.Load()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shoal_leader_stage_restarts_total", Help: "Leader stage failures after which this manager, still leading, restarted its stages (or handed leadership over)."},
			stats(func() float64 { return float64(m.stageRestarts.Load()) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_dispatch_sessions", Help: "Worker sessions served by this manager's dispatcher (0 on followers)."},
			stats(func() float64 { return float64(m.workers.Sessions()) })),
	)
	tasks := prometheus.NewDesc("shoal_state_tasks", "Tasks in the local state, by observed state.", []string{"state"}, nil)
	reg.MustRegister(collectorFunc{desc: tasks, collect: func(ch chan<- prometheus.Metric) {
		counts := map[objectv1.TaskState]int{}
		m.st.View(func(tx *state.ReadTx) {
			for st := range objectv1.TaskState_name {
				if st > 0 {
					counts[objectv1.TaskState(st)] = tx.CountTasksByState(objectv1.TaskState(st))
				}
			}
		})
		for st, n := range counts {
			name := strings.ToLower(strings.TrimPrefix(st.String(), "TASK_STATE_"))
			ch <- prometheus.MustNewConstMetric(tasks, prometheus.GaugeValue, float64(n), name)
		}
	}})
	entered := prometheus.NewDesc("shoal_state_task_state_entered_timestamp_seconds",
		"Unix time this manager last applied a change moving a task into the observed state (placements: assigned; starts: running).", []string{"state"}, nil)
	reg.MustRegister(collectorFunc{desc: entered, collect: func(ch chan<- prometheus.Metric) {
		for st := range objectv1.TaskState_name {
			at := m.st.TaskStateEntered(objectv1.TaskState(st))
			if st == 0 || at.IsZero() {
				continue
			}
			name := strings.ToLower(strings.TrimPrefix(objectv1.TaskState(st).String(), "TASK_STATE_"))
			ch <- prometheus.MustNewConstMetric(entered, prometheus.GaugeValue, float64(at.UnixNano())/1e9, name)
		}
	}})
	objects := prometheus.NewDesc("shoal_state_objects", "Objects in the local state, by kind.", []string{"kind"}, nil)
	reg.MustRegister(collectorFunc{desc: objects, collect: func(ch chan<- prometheus.Metric) {
		var nodes, services, tasks, running int
		m.st.View(func(tx *state.ReadTx) {
			nodes, services = tx.CountNodes(), len(tx.Services())
			for st := range objectv1.TaskState_name {
				tasks += tx.CountTasksByState(objectv1.TaskState(st))
			}
			running = tx.CountTasksByState(objectv1.TaskState_TASK_STATE_RUNNING)
		})
		ch <- prometheus.MustNewConstMetric(objects, prometheus.GaugeValue, float64(nodes), "node")
		ch <- prometheus.MustNewConstMetric(objects, prometheus.GaugeValue, float64(services), "service")
		ch <- prometheus.MustNewConstMetric(objects, prometheus.GaugeValue, float64(tasks), "task")
		ch <- prometheus.MustNewConstMetric(objects, prometheus.GaugeValue, float64(running), "task_running")
	}})
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// serveMetrics serves /metrics, the profiler and the dashboard on lis
// until ctx ends.
func (m *Manager) serveMetrics(ctx context.Context, lis net.Listener) error {
	reg := prometheus.NewRegistry()
	m.registerMetrics(reg)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Go's profiler, on the same loopback-by-default listener: what an
	// operator needs to tell why a manager is slow.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// The dashboard acts through the manager's own control socket, as the
	// local CLI does: logs and writes reach the leader from a follower.
	conn, err := grpc.NewClient("unix://"+m.cfg.Manager.ControlSocket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)))
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	defer conn.Close()
	dash, err := dashboard.New(dashboard.Config{Token: m.dashboardToken}, dashboard.Deps{
		Store:   m.st,
		Hub:     m.hub,
		Control: controlv1.NewControlClient(conn),
		Leader:  func() string { id, _ := m.raft.Leader(); return id },
		Self:    m.NodeID(),
	}, m.log.With("part", "dashboard"))
	if err != nil {
		return err
	}
	mux.Handle("/", dash)
	// Requests live in ctx: the dashboard's streams end with the manager
	// rather than hold its shutdown.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
