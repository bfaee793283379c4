package simexec

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoalhq/shoal/sdk/executor"
	executorv1 "github.com/shoalhq/shoal/sdk/proto/shoal/executor/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// BenchmarkLifecycleOverGRPC is BenchmarkLifecycle through the executor
// plugin's wire (executor.Client to executor.NewServer over a unix
// socket, as the agent reaches a plugin process): what the plugin boundary
// adds to a task's life, five calls and a Prepare stream.
func BenchmarkLifecycleOverGRPC(b *testing.B) {
	lis, err := net.Listen("unix", filepath.Join(b.TempDir(), "executor.sock"))
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	executorv1.RegisterExecutorServer(srv, executor.NewServer(New(Config{})))
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	e := executor.NewClient(conn)
	ctx := context.Background()
	tasks := make([]*objectv1.Task, 1024)
	for i := range tasks {
		tasks[i] = newTask(fmt.Sprintf("task-%d", i), "SHOAL_SIM_EXIT_AFTER=1h")
	}
	i := 0
	for b.Loop() {
		t := tasks[i%len(tasks)]
		i++
		if err := e.Prepare(ctx, t, nil, nil); err != nil {
			b.Fatal(err)
		}
		if err := e.Start(ctx, t.Id); err != nil {
			b.Fatal(err)
		}
		if err := e.Stop(ctx, t.Id, "", 0); err != nil {
			b.Fatal(err)
		}
		if _, err := e.Wait(ctx, t.Id); err != nil {
			b.Fatal(err)
		}
		if err := e.Remove(ctx, t.Id); err != nil {
			b.Fatal(err)
		}
	}
}
