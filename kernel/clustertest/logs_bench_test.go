package clustertest

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/kernel/simexec"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// BenchmarkTaskLogs reads one task's whole log (SHOAL_BENCH_LOG_LINES,
// default 200,000 lines of ~11 bytes) on the longest path there is: the
// worker's session is relayed by one follower, and the client calls the
// other follower, which forwards the stream to the leader. It reports the
// throughput and the longest heartbeat round trip the worker saw meanwhile
// (heartbeats every second share the session with the log batches).
func BenchmarkTaskLogs(b *testing.B) {
	lines := envInt("SHOAL_BENCH_LOG_LINES", 200_000)
	c := Start(b, 3, Options{})
	client := c.Managers[0].Client(b)
	ctx := context.Background()
	cl, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		b.Fatal(err)
	}
	spec := proto.Clone(cl.GetCluster().GetSpec()).(*objectv1.ClusterSpec)
	spec.Dispatcher = &objectv1.DispatcherConfig{HeartbeatPeriod: durationpb.New(time.Second)}
	if _, err := client.UpdateCluster(ctx, &controlv1.UpdateClusterRequest{Version: cl.GetCluster().GetMeta().GetVersion(), Spec: spec}); err != nil {
		b.Fatal(err)
	}
	var (
		mu      sync.Mutex
		maxBeat time.Duration
		beats   int
	)
	observe := func(rtt time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		beats++
		maxBeat = max(maxBeat, rtt)
	}
	// Worker 1 starts with manager 1, a follower (manager 0 bootstrapped
	// and leads).
	ws := StartWorkers(b, c, 2, WorkerOptions{HeartbeatObserver: observe})
	svc := serviceSpec("chatty")
	svc.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}}
	svc.Task.Container.Env = []string{simexec.EnvLogLines + "=" + strconv.Itoa(lines)}
	svc.Task.Placement = &objectv1.Placement{Constraints: []string{"node.id==" + ws[1].NodeID}}
	created, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: svc})
	if err != nil {
		b.Fatal(err)
	}
	c.eventually(b, 60*time.Second, func(ctx context.Context) error {
		tasks, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{created.GetService().GetId()}})
		if err != nil {
			return err
		}
		for _, t := range tasks.GetTasks() {
			if t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
				return nil
			}
		}
		return errors.New("the task does not run yet")
	})
	if leader := c.Leader(b, 30*time.Second); leader != c.Managers[0] {
		b.Fatalf("leader is %s; the benchmark wants the worker and the client on followers", leader.Name)
	}
	reader := c.Managers[2].Client(b)
	mu.Lock()
	maxBeat, beats = 0, 0
	mu.Unlock()

	var bytes int64
	start := time.Now()
	for b.Loop() {
		stream, err := reader.TaskLogs(ctx, &controlv1.TaskLogsRequest{Service: "chatty"})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if len(resp.GetErrors()) > 0 {
				b.Fatalf("errors: %v", resp.GetErrors())
			}
			for _, l := range resp.GetLines() {
				bytes += int64(len(l.GetData()))
			}
			n += len(resp.GetLines())
		}
		if n != lines {
			b.Fatalf("%d lines, want %d", n, lines)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(lines)*float64(b.N)/elapsed.Seconds(), "lines/s")
	b.ReportMetric(float64(bytes)/elapsed.Seconds()/1e6, "MB/s")
	mu.Lock()
	defer mu.Unlock()
	b.ReportMetric(float64(maxBeat.Microseconds())/1000, "max-heartbeat-rtt-ms")
	b.Logf("%d heartbeats during %s of reading; longest round trip %s", beats, elapsed.Round(time.Millisecond), maxBeat)
}
