package manager

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// TestTaskLogsCallers: the TaskLogs stream is the control API's like any
// call: a manager certificate may open it on the TLS port, a worker's may
// not. (kernel/clustertest reads real logs through it.)
func TestTaskLogsCallers(t *testing.T) {
	dir := t.TempDir()
	m := start(t, testConfig(t, filepath.Join(dir, "m1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := m.client(t).GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	worker, err := ca.Join(ctx, []string{m.cfg.Manager.ListenAddr}, cl.GetCluster().GetRootCa().GetJoinTokens().GetWorker(), "w1", "linux/amd64", filepath.Join(dir, "w1"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(c controlv1.ControlClient, service string) error {
		stream, err := c.TaskLogs(ctx, &controlv1.TaskLogsRequest{Service: service})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}
	if err := read(tlsClient(t, m.cfg.Manager.ListenAddr, worker), "web"); !errors.Is(sdk.FromGRPC(err), sdk.ErrPermissionDenied) {
		t.Errorf("TaskLogs with a worker certificate = %v, want PermissionDenied", err)
	}
	// A manager's certificate passes the policy; the unknown service is
	// the server's answer.
	if err := read(tlsClient(t, m.cfg.Manager.ListenAddr, m.m.Identity()), "nope"); !errors.Is(sdk.FromGRPC(err), sdk.ErrNotFound) {
		t.Errorf("TaskLogs of an unknown service with a manager certificate = %v, want NotFound", err)
	}
	if err := read(m.client(t), ""); !errors.Is(sdk.FromGRPC(err), sdk.ErrInvalidArgument) {
		t.Errorf("TaskLogs naming nothing = %v, want InvalidArgument", err)
	}
}
