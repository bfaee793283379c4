package clustertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func serviceSpec(name string) *objectv1.ServiceSpec {
	return &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: name},
		Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "example.local/app:1"}},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 0}},
	}
}

// TestAckedWritesSurviveLeaderKills writes 1,000 services through all three
// managers (so most calls are forwarded by followers) while the leader is
// SIGKILLed five times and restarted from its data directory. Every create
// that was acknowledged must then be present, identically, on every manager.
func TestAckedWritesSurviveLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const (
		services = 1000
		kills    = 5
		writers  = 3
	)
	c := Start(t, 3, Options{})
	clients := make([]controlv1.ControlClient, len(c.Managers))
	for i, m := range c.Managers {
		clients[i] = m.Client(t)
	}

	var (
		acked   sync.Map // name -> id
		done    atomic.Int64
		wg      sync.WaitGroup
		errsMu  sync.Mutex
		lastErr error
	)
	stop := time.Now().Add(4 * time.Minute)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < services; i += writers {
				name := fmt.Sprintf("svc-%04d", i)
				for attempt := 0; time.Now().Before(stop); attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					resp, err := clients[(w+attempt)%len(clients)].CreateService(ctx, &controlv1.CreateServiceRequest{Spec: serviceSpec(name)})
					cancel()
					if err == nil {
						acked.Store(name, resp.GetService().GetId())
						break
					}
					if errors.Is(sdk.FromGRPC(err), sdk.ErrAlreadyExists) {
						// An earlier attempt committed but its reply was lost
						// with the leader: present, though never acknowledged.
						break
					}
					errsMu.Lock()
					lastErr = err
					errsMu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
				done.Add(1)
			}
		}()
	}

	for k := range kills {
		target := int64((k + 1) * services / (kills + 2))
		for done.Load() < target && time.Now().Before(stop) {
			time.Sleep(20 * time.Millisecond)
		}
		leader := c.Leader(t, 30*time.Second)
		t.Logf("kill %d: SIGKILL leader %s after %d writes", k+1, leader.Name, done.Load())
		leader.Kill()
		time.Sleep(300 * time.Millisecond)
		if err := leader.Start(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if done.Load() != services {
		t.Fatalf("writers finished %d of %d writes before the deadline; last error: %v", done.Load(), services, lastErr)
	}

	want := map[string]string{}
	acked.Range(func(k, v any) bool { want[k.(string)] = v.(string); return true })
	t.Logf("%d of %d creates acknowledged", len(want), services)
	if len(want) < services/2 {
		t.Fatalf("only %d creates acknowledged; last error: %v", len(want), lastErr)
	}

	checkServicesConverge(t, c, want, services)
}

// checkServicesConverge checks that every manager converges on the same
// services, holding every acknowledged one of want (name to ID), and no more
// than the services written.
func checkServicesConverge(t *testing.T, c *Cluster, want map[string]string, services int) {
	t.Helper()
	// Every manager must converge on the same services, holding every
	// acknowledged one.
	for _, m := range c.Managers {
		c.eventually(t, 60*time.Second, func(ctx context.Context) error {
			resp, err := m.Client(t).ListServices(LocalRead(ctx), &controlv1.ListServicesRequest{})
			if err != nil {
				return err
			}
			byName := map[string]*objectv1.Service{}
			for _, s := range resp.GetServices() {
				byName[s.GetSpec().GetAnnotations().GetName()] = s
			}
			for name, id := range want {
				s, ok := byName[name]
				if !ok {
					return fmt.Errorf("%s: acknowledged service %s missing", m.Name, name)
				}
				if s.Id != id {
					return fmt.Errorf("%s: service %s has ID %s, acknowledged %s", m.Name, name, s.Id, id)
				}
			}
			if len(resp.GetServices()) > services {
				return fmt.Errorf("%s: %d services, more than were written", m.Name, len(resp.GetServices()))
			}
			return nil
		})
	}
	// Allow the last entries to reach everyone, then require equality.
	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		var first []*objectv1.Service
		for i, m := range c.Managers {
			resp, err := m.Client(t).ListServices(LocalRead(ctx), &controlv1.ListServicesRequest{})
			if err != nil {
				return err
			}
			if i == 0 {
				first = resp.GetServices()
				continue
			}
			if len(first) != len(resp.GetServices()) {
				return fmt.Errorf("%s holds %d services, %s holds %d", c.Managers[0].Name, len(first), m.Name, len(resp.GetServices()))
			}
			for j := range first {
				if !proto.Equal(first[j], resp.GetServices()[j]) {
					return fmt.Errorf("%s and %s differ on %s", c.Managers[0].Name, m.Name, first[j].GetSpec().GetAnnotations().GetName())
				}
			}
		}
		return nil
	})
}
