package netfiles

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestTaskNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		task *objectv1.Task
		want []string
	}{
		{"replicated", &objectv1.Task{Id: "Tk3f2a", Slot: 3, NodeId: "n1", ServiceAnnotations: &objectv1.Annotations{Name: "Web"}},
			[]string{"web.3", "web.3.tk3f2a"}},
		{"global", &objectv1.Task{Id: "tk1", NodeId: "node7", ServiceAnnotations: &objectv1.Annotations{Name: "agent"}},
			[]string{"agent.node7", "agent.node7.tk1"}},
		{"global without a node", &objectv1.Task{Id: "tk1", ServiceAnnotations: &objectv1.Annotations{Name: "agent"}}, nil},
		{"no service name", &objectv1.Task{Id: "tk1", Slot: 1}, nil},
		{"no ID", &objectv1.Task{Slot: 1, ServiceAnnotations: &objectv1.Annotations{Name: "web"}}, nil},
		{"nil", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TaskNames(tc.task); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("TaskNames = %q, want %q", got, tc.want)
			}
		})
	}
}

const localhostLines = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

// netTask is a replicated task of service web, slot 1, on networks with
// these addresses; the first network's gateway is 10.200.3.1.
func netTask(addrs ...string) *objectv1.Task {
	t := &objectv1.Task{Id: "tk9", Slot: 1, NodeId: "n1", ServiceAnnotations: &objectv1.Annotations{Name: "web"}}
	for i, a := range addrs {
		t.Networks = append(t.Networks, &objectv1.NetworkAttachment{
			NetworkId: "net" + string(rune('a'+i)), Addr: a, Gateway: "10.200." + string(rune('3'+i)) + ".1",
		})
	}
	return t
}

func TestTaskFiles(t *testing.T) {
	host := HostConfig{Servers: []string{"192.0.2.53:53"}, Search: []string{"example.com", "corp.example.com"}, Options: []string{"ndots:2"}}
	for _, tc := range []struct {
		name      string
		task      *objectv1.Task
		hostname  string
		wantHosts string
	}{
		{"one network", netTask("10.200.3.7/16"), "tk9",
			localhostLines + "10.200.3.7\ttk9 web.1 web.1.tk9\n"},
		{"two networks, a bare address", netTask("10.200.3.7/16", "10.201.4.9"), "tk9",
			localhostLines + "10.200.3.7\ttk9 web.1 web.1.tk9\n10.201.4.9\ttk9 web.1 web.1.tk9\n"},
		{"one address on two networks is one line", netTask("10.200.3.7/16", "10.200.3.7/24"), "tk9",
			localhostLines + "10.200.3.7\ttk9 web.1 web.1.tk9\n"},
		{"no hostname", netTask("10.200.3.7/16"), "",
			localhostLines + "10.200.3.7\tweb.1 web.1.tk9\n"},
		{"a task without a name", &objectv1.Task{Id: "tk9", Networks: netTask("10.200.3.7/16").Networks}, "tk9",
			localhostLines + "10.200.3.7\ttk9\n"},
		{"nothing to name", &objectv1.Task{Id: "tk9", Networks: netTask("10.200.3.7/16").Networks}, "",
			localhostLines},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, hosts, err := TaskFiles(tc.task, host, tc.hostname)
			if err != nil {
				t.Fatal(err)
			}
			if want := "nameserver 10.200.3.1\nsearch example.com corp.example.com\noptions ndots:2\n"; stripComments(string(rc)) != want {
				t.Errorf("resolv.conf:\n%s\nwant\n%s", rc, want)
			}
			if hc, err := ParseHostConfig(strings.NewReader(string(rc))); err != nil || !slices.Equal(hc.Servers, []string{"10.200.3.1:53"}) {
				t.Errorf("resolv.conf parsed back: %+v, %v; want the first network's gateway only", hc, err)
			}
			if string(hosts) != tc.wantHosts {
				t.Errorf("hosts:\n%s\nwant\n%s", hosts, tc.wantHosts)
			}
		})
	}
}

func TestTaskFilesRefuses(t *testing.T) {
	long := strings.Repeat("a", 250)
	for _, tc := range []struct {
		name     string
		task     func() *objectv1.Task
		hostname string
		fields   []string
	}{
		{"no networks", func() *objectv1.Task { return netTask() }, "tk9", []string{"networks"}},
		{"no gateway", func() *objectv1.Task {
			tk := netTask("10.200.3.7/16")
			tk.Networks[0].Gateway = ""
			return tk
		}, "tk9", []string{"networks[0].gateway"}},
		{"a bad gateway and a bad address", func() *objectv1.Task {
			tk := netTask("10.200.3.7/16", "10.201.4.9/16\n10.0.0.1 evil")
			tk.Networks[0].Gateway = "10.200.3.1/24"
			return tk
		}, "tk9", []string{"networks[0].gateway", "networks[1].addr"}},
		{"an unspecified address", func() *objectv1.Task { return netTask("0.0.0.0/0") }, "tk9", []string{"networks[0].addr"}},
		{"a hostname that breaks the line", func() *objectv1.Task { return netTask("10.200.3.7/16") }, "tk9 evil", []string{"hostname"}},
		{"a service name that breaks the line", func() *objectv1.Task {
			tk := netTask("10.200.3.7/16")
			tk.ServiceAnnotations.Name = "web#1"
			return tk
		}, "tk9", []string{"service_annotations.name"}},
		{"a global task's node ID that breaks the line", func() *objectv1.Task {
			tk := netTask("10.200.3.7/16")
			tk.Slot, tk.NodeId = 0, "n1\n10.0.0.1 evil"
			return tk
		}, "tk9", []string{"node_id"}},
		{"a name too long", func() *objectv1.Task {
			tk := netTask("10.200.3.7/16")
			tk.ServiceAnnotations.Name = long
			return tk
		}, "tk9", []string{"service_annotations.name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, hosts, err := TaskFiles(tc.task(), HostConfig{}, tc.hostname)
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("TaskFiles = %q, %q, %v; want field errors", rc, hosts, err)
			}
			var fields []string
			for _, f := range fe {
				fields = append(fields, f.Field)
			}
			if !slices.Equal(fields, tc.fields) {
				t.Errorf("error %v names %q, want %q", err, fields, tc.fields)
			}
		})
	}
}
