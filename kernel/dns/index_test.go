package dns

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
)

func TestIndexValidation(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.5")
	ok := Task{NetworkID: "n", TaskID: "t", Name: "web.1", ServiceName: "web", Addr: a}
	for _, tc := range []struct {
		name  string
		task  func(*Task)
		field string
	}{
		{"no network", func(t *Task) { t.NetworkID = "" }, "network_id"},
		{"no task ID", func(t *Task) { t.TaskID = "" }, "task_id"},
		{"no name", func(t *Task) { t.Name = "" }, "name"},
		{"name with a space", func(t *Task) { t.Name = "web 1" }, "name"},
		{"empty label", func(t *Task) { t.Name = "web..1" }, "name"},
		{"long label", func(t *Task) { t.Name = strings.Repeat("a", 64) }, "name"},
		{"long name", func(t *Task) { t.Name = strings.Repeat("a.", 127) }, "name"},
		{"no service", func(t *Task) { t.ServiceName = "" }, "service_name"},
		{"no address", func(t *Task) { t.Addr = netip.Addr{} }, "addr"},
		{"bad alias", func(t *Task) { t.Aliases = []string{"db", "d b"} }, "aliases[1]"},
		{"too many aliases", func(t *Task) { t.Aliases = make([]string, 65) }, "aliases"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := NewIndex()
			task := ok
			tc.task(&task)
			err := ix.SetTask(task)
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) || fe[0].Field != tc.field {
				t.Fatalf("SetTask: %v, want an invalid argument naming %s", err, tc.field)
			}
			if len(ix.nets) != 0 || len(ix.clients) != 0 {
				t.Error("the index changed")
			}
		})
	}
	if err := NewIndex().SetTask(ok); err != nil {
		t.Errorf("valid task: %v", err)
	}

	for _, tc := range []struct {
		name  string
		svc   Service
		field string
	}{
		{"no network", Service{Name: "web"}, "network_id"},
		{"no name", Service{NetworkID: "n"}, "name"},
		{"bad mode", Service{NetworkID: "n", Name: "web", Mode: "ingress"}, "mode"},
		{"bad alias", Service{NetworkID: "n", Name: "web", Aliases: []string{""}}, "aliases[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewIndex().SetService(tc.svc)
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) || fe[0].Field != tc.field {
				t.Fatalf("SetService: %v, want an invalid argument naming %s", err, tc.field)
			}
		})
	}
}

func TestIndexLookup(t *testing.T) {
	ix := testIndex(t)
	for _, tc := range []struct {
		client string
		name   string
		res    lookupResult
		want   []string
	}{
		{clientA, "web", found, []string{"10.0.1.2"}},
		{clientA, "tasks.web", found, []string{"10.0.1.10", "10.0.1.11"}},
		{clientA, "secret", elsewhere, nil},
		{clientA, "example.org", unknown, nil},
		{clientC, "both", found, []string{"10.0.1.3", "10.0.2.3"}},
		{"10.0.2.40", "web", found, []string{"10.0.1.2"}}, // multi's net-b address sees its net-a too
	} {
		addrs, res := ix.lookup(netip.MustParseAddr(tc.client), tc.name, nil)
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		slices.Sort(got)
		if res != tc.res || !slices.Equal(got, tc.want) {
			t.Errorf("lookup %s from %s: %v %v, want %v %v", tc.name, tc.client, res, got, tc.res, tc.want)
		}
	}

	if got := ix.Networks(netip.MustParseAddr(clientC)); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"net-a", "net-b"}) {
		t.Errorf("Networks(%s) = %v", clientC, got)
	}

	// A replaced task keeps the short name answering while both exist.
	a := netip.MustParseAddr
	if err := ix.SetTask(Task{NetworkID: "net-a", TaskID: "t1b", Name: "web.1", ServiceName: "web", Addr: a("10.0.1.12"), Backend: true}); err != nil {
		t.Fatal(err)
	}
	ix.RemoveTask("net-a", "t1")
	if addrs, _ := ix.lookup(a(clientA), "web.1", nil); !slices.Equal(addrs, []netip.Addr{a("10.0.1.12")}) {
		t.Errorf("web.1 after its replacement: %v", addrs)
	}

	// Removing everything leaves nothing behind.
	for id, n := range ix.nets {
		for task := range n.tasks {
			ix.RemoveTask(id, task)
		}
		for svc := range n.services {
			ix.RemoveService(id, svc)
		}
	}
	if len(ix.nets) != 0 || len(ix.clients) != 0 || len(ix.taskNets) != 0 {
		t.Errorf("left behind: %d networks, %d clients, %d tasks", len(ix.nets), len(ix.clients), len(ix.taskNets))
	}
}
