package ctrexec

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/netattach"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestTasksReachEachOther puts two tasks on one network with the node's
// real task networking (sdk/netattach, Debian's CNI plugins): one serves
// on its address, the other connects to it.
func TestTasksReachEachOther(t *testing.T) {
	if _, err := os.Stat(netattach.DefaultCNIBinDir + "/bridge"); err != nil {
		t.Skipf("the CNI plugins are not installed (%v): run scripts/deps.sh", err)
	}
	address := startContainerd(t)
	e := New(Options{LogDriver: env.driver, NewNetwork: func(dir string) (Network, error) {
		return netattach.New(netattach.Config{StateDir: dir})
	}})
	t.Cleanup(func() { e.Close() })
	if err := e.Configure(ctxT(t), executor.NodeInfo{StateDir: t.TempDir(), ContainerdAddress: address}, []byte(`namespace = "`+testNamespace+`"`)); err != nil {
		t.Fatal(err)
	}
	// A network ID and subnet of this test's own, so that it shares no
	// bridge with other tests on the machine.
	attach := func(addr string) []*objectv1.NetworkAttachment {
		return []*objectv1.NetworkAttachment{{
			NetworkId: fmt.Sprintf("ctrexec%d", os.Getpid()), NetworkName: "front",
			Addr: addr, Subnet: "10.231.0.0/16", NodeSubnet: "10.231.7.0/24", Gateway: "10.231.7.1",
		}}
	}
	server := newTask(t, "listen:0.0.0.0:8080", "out:listening", "sleep:inf")
	server.Networks = attach("10.231.7.10/16")
	run(t, e, server)
	waitForLine(t, e, server.Id, "stdout: listening")

	client := newTask(t, "connect:10.231.7.10:8080")
	client.Networks = attach("10.231.7.11/16")
	run(t, e, client)
	st := wait(t, e, client.Id)
	out := logs(t, e, client.Id, executor.LogOptions{Tail: -1})
	if want := "stdout: hello from " + server.Id; st.ExitCode != 0 || !slices.Contains(out, want) {
		t.Errorf("client exit %d, logs %q; want 0 and %q", st.ExitCode, out, want)
	}
}
