package clustertest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/shoalhq/shoal/kernel/ca"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// floodWorker is a worker reduced to its wire protocol: it holds a session,
// answers heartbeats, collects its assignments and reports statuses when
// told, at the pace the benchmark sets.
type floodWorker struct {
	stream workerv1.Dispatcher_ConnectClient
	sendMu sync.Mutex

	mu    sync.Mutex
	tasks []string
}

func (w *floodWorker) send(m *workerv1.WorkerMessage) error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	return w.stream.Send(m)
}

func (w *floodWorker) recvLoop(ctx context.Context) {
	for {
		msg, err := w.stream.Recv()
		if err != nil {
			return
		}
		if hb := msg.GetHeartbeat(); hb != nil {
			period := hb.GetPeriod().AsDuration()
			go func() {
				select {
				case <-ctx.Done():
				case <-time.After(period):
					_ = w.send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Heartbeat{Heartbeat: &workerv1.Heartbeat{}}})
				}
			}()
		}
		if a := msg.GetAssignments(); a != nil {
			w.mu.Lock()
			for _, ch := range a.GetChanges() {
				if ch.GetAction() == workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE {
					w.tasks = append(w.tasks, ch.GetTask().GetId())
				}
			}
			w.mu.Unlock()
		}
	}
}

// BenchmarkStatusFlood measures how the kernel turns a flood of task status
// changes into Raft entries, on 3 manager processes. SHOAL_BENCH_FLOOD_WORKERS
// wire-level workers (default 100, a third on each manager, so two thirds
// come through followers' relays) hold SHOAL_BENCH_FLOOD_TASKS tasks
// (default 20,000) and report each through its five start states (accepted,
// preparing, ready, starting, running): 100,000 status changes, paced at
// SHOAL_BENCH_FLOOD_RATE changes per second (default 10,000). Reported:
// the offered and committed rates, Raft entries per second on the leader,
// changes per entry, and how long after the last report the last change
// was committed.
func BenchmarkStatusFlood(b *testing.B) {
	nWorkers := envInt("SHOAL_BENCH_FLOOD_WORKERS", 100)
	nTasks := envInt("SHOAL_BENCH_FLOOD_TASKS", 20000)
	rate := envInt("SHOAL_BENCH_FLOOD_RATE", 10000)
	c := Start(b, 3, Options{Metrics: true})
	leader := c.Leader(b, 30*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	workers := joinFloodWorkers(ctx, b, c, nWorkers)
	cl := leader.Client(b)
	if _, err := cl.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "flood"},
		Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "example.local/flood:1"}},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: int64(nTasks)}},
	}}); err != nil {
		b.Fatal(err)
	}
	waitFloodTasks(b, workers, nTasks)

	states := []objectv1.TaskState{
		objectv1.TaskState_TASK_STATE_ACCEPTED, objectv1.TaskState_TASK_STATE_PREPARING,
		objectv1.TaskState_TASK_STATE_READY, objectv1.TaskState_TASK_STATE_STARTING,
		objectv1.TaskState_TASK_STATE_RUNNING,
	}
	total := nTasks * len(states)
	committed0 := metric(b, leader, "shoal_dispatch_status_updates_total")
	entries0 := metric(b, leader, "shoal_raft_proposed_entries_total")
	b.ResetTimer()
	start := time.Now()

	// Each worker walks its tasks through the states, in ticks of 10 ms,
	// sending its share of the rate per tick in one report (as an agent
	// batches its reports).
	const tick = 10 * time.Millisecond
	perTick := max(1, rate/nWorkers/int(time.Second/tick))
	sent := floodStatuses(workers, states, tick, perTick)
	sendTime := time.Since(start)
	deadline := time.Now().Add(2 * time.Minute)
	var committed float64
	for {
		committed = metric(b, leader, "shoal_dispatch_status_updates_total") - committed0
		if committed >= float64(total) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%v of %d status changes committed", committed, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	entries := metric(b, leader, "shoal_raft_proposed_entries_total") - entries0
	b.ReportMetric(float64(sent)/sendTime.Seconds(), "offered-changes/s")
	b.ReportMetric(committed/elapsed.Seconds(), "committed-changes/s")
	b.ReportMetric(entries/elapsed.Seconds(), "entries/s")
	b.ReportMetric(committed/entries, "changes/entry")
	b.ReportMetric(float64((elapsed - sendTime).Milliseconds()), "drain-ms")
}

// joinFloodWorkers joins n flood workers to c, 16 at a time, and says hello
// on each one's dispatcher stream.
func joinFloodWorkers(ctx context.Context, b *testing.B, c *Cluster, n int) []*floodWorker {
	b.Helper()
	token := c.JoinToken(b, "worker")
	dir := b.TempDir()
	workers := make([]*floodWorker, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("f%04d", i)
			addr := c.Managers[i%len(c.Managers)].APIAddr
			id, err := ca.Join(ctx, []string{addr}, token, name, "linux/amd64", filepath.Join(dir, name))
			if err != nil {
				errs <- err
				return
			}
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(id.ClientTLS())))
			if err != nil {
				errs <- err
				return
			}
			b.Cleanup(func() { conn.Close() })
			stream, err := workerv1.NewDispatcherClient(conn).Connect(ctx)
			if err != nil {
				errs <- err
				return
			}
			w := &floodWorker{stream: stream}
			if err := w.send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Hello{Hello: &workerv1.Hello{Description: &objectv1.NodeDescription{
				Hostname: name, Platform: "linux/amd64", Executor: "simulated", EngineVersion: "test",
				Resources: &objectv1.Resources{NanoCpus: 64e9, MemoryBytes: 256 << 30},
			}}}}); err != nil {
				errs <- err
				return
			}
			go w.recvLoop(ctx)
			workers[i] = w
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return workers
}

// waitFloodTasks waits until every one of the nTasks tasks reached a worker.
func waitFloodTasks(b *testing.B, workers []*floodWorker, nTasks int) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := 0
		for _, w := range workers {
			w.mu.Lock()
			n += len(w.tasks)
			w.mu.Unlock()
		}
		if n >= nTasks {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d tasks reached the workers", n, nTasks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// floodStatuses has each worker walk its tasks through states, sending
// perTick updates in one report every tick, and returns how many it sent.
func floodStatuses(workers []*floodWorker, states []objectv1.TaskState, tick time.Duration, perTick int) int64 {
	var sent atomic.Int64
	var sendWG sync.WaitGroup
	for _, w := range workers {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			w.mu.Lock()
			tasks := append([]string(nil), w.tasks...)
			w.mu.Unlock()
			var queue []*workerv1.TaskStatusUpdate
			for _, st := range states {
				for _, id := range tasks {
					queue = append(queue, &workerv1.TaskStatusUpdate{TaskId: id, Status: &objectv1.TaskStatus{State: st, Message: st.String()}})
				}
			}
			t := time.NewTicker(tick)
			defer t.Stop()
			for len(queue) > 0 {
				<-t.C
				n := min(perTick, len(queue))
				if err := w.send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Status{Status: &workerv1.StatusReport{Updates: queue[:n]}}}); err != nil {
					return
				}
				sent.Add(int64(n))
				queue = queue[n:]
			}
		}()
	}
	sendWG.Wait()
	return sent.Load()
}
