package netattach

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const testNetID = "n0test0network0id0000000a" // 25 characters, like an object ID

// attachment is task host of slice 10.200.<slice>.0/24 of 10.200.0.0/16.
func attachment(slice, host int) *objectv1.NetworkAttachment {
	return &objectv1.NetworkAttachment{
		NetworkId:   testNetID,
		NetworkName: "backend",
		Addr:        fmt.Sprintf("10.200.%d.%d/16", slice, host),
		Subnet:      "10.200.0.0/16",
		NodeSubnet:  fmt.Sprintf("10.200.%d.0/24", slice),
		Gateway:     fmt.Sprintf("10.200.%d.1", slice),
	}
}

func TestPlanValid(t *testing.T) {
	second := attachment(3, 9)
	second.NetworkId, second.Subnet, second.NodeSubnet, second.Gateway, second.Addr = "other", "10.201.0.0/16", "10.201.3.0/24", "10.201.3.1", "10.201.3.9/16"
	nets, ports, err := plan("t1", []*objectv1.NetworkAttachment{attachment(3, 7), second},
		[]*objectv1.PortConfig{{TargetPort: 80, PublishedPort: 8080}, {Protocol: "udp", TargetPort: 53, PublishedPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	want := netPlan{
		NetworkID:  testNetID,
		Addr:       netip.MustParseAddr("10.200.3.7"),
		Subnet:     netip.MustParsePrefix("10.200.0.0/16"),
		NodeSubnet: netip.MustParsePrefix("10.200.3.0/24"),
		Gateway:    netip.MustParseAddr("10.200.3.1"),
		Bridge:     "sh-n0test0netwo",
		IfName:     "eth0",
	}
	if nets[0] != want {
		t.Errorf("plan: networks[0] = %+v, want %+v", nets[0], want)
	}
	if nets[1].IfName != "eth1" || nets[1].Bridge != "sh-other" {
		t.Errorf("plan: networks[1] = %+v, want eth1 on sh-other", nets[1])
	}
	if len(ports) != 2 || ports[0] != (portPlan{"tcp", 80, 8080}) || ports[1] != (portPlan{"udp", 53, 8080}) {
		t.Errorf("plan: ports = %+v", ports)
	}
	if n := len(BridgeName(testNetID)); n > 15 {
		t.Errorf("bridge name %q is %d characters, the kernel allows 15", BridgeName(testNetID), n)
	}
}

func TestPlanInvalid(t *testing.T) {
	with := func(f func(a *objectv1.NetworkAttachment)) []*objectv1.NetworkAttachment {
		a := attachment(3, 7)
		f(a)
		return []*objectv1.NetworkAttachment{a}
	}
	ok := []*objectv1.NetworkAttachment{attachment(3, 7)}
	for _, c := range []struct {
		name   string
		task   string
		nets   []*objectv1.NetworkAttachment
		ports  []*objectv1.PortConfig
		fields []string
	}{
		{"no task id", "", ok, nil, []string{"task_id"}},
		{"task id with a slash", "../x", ok, nil, []string{"task_id"}},
		{"null network", "t", []*objectv1.NetworkAttachment{nil}, nil, []string{"networks[0]"}},
		{"no network id", "t", with(func(a *objectv1.NetworkAttachment) { a.NetworkId = "" }), nil, []string{"networks[0].network_id"}},
		{"bad subnet", "t", with(func(a *objectv1.NetworkAttachment) { a.Subnet = "10.200.0.1/16" }), nil, []string{"networks[0].subnet"}},
		{"ipv6", "t", with(func(a *objectv1.NetworkAttachment) { a.Subnet = "fd00::/64" }), nil, []string{"networks[0].subnet"}},
		{"slice outside", "t", with(func(a *objectv1.NetworkAttachment) { a.NodeSubnet = "10.9.3.0/24" }), nil, []string{"networks[0].node_subnet"}},
		{"addr outside slice", "t", with(func(a *objectv1.NetworkAttachment) { a.Addr = "10.200.4.7/16" }), nil, []string{"networks[0].addr"}},
		{"addr is broadcast", "t", with(func(a *objectv1.NetworkAttachment) { a.Addr = "10.200.3.255/16" }), nil, []string{"networks[0].addr"}},
		{"addr not cidr", "t", with(func(a *objectv1.NetworkAttachment) { a.Addr = "10.200.3.7" }), nil, []string{"networks[0].addr"}},
		{"gateway is addr", "t", with(func(a *objectv1.NetworkAttachment) { a.Gateway = "10.200.3.7" }), nil, []string{"networks[0].gateway"}},
		{"gateway outside", "t", with(func(a *objectv1.NetworkAttachment) { a.Gateway = "10.200.4.1" }), nil, []string{"networks[0].gateway"}},
		{"same network twice", "t", []*objectv1.NetworkAttachment{attachment(3, 7), attachment(3, 8)}, nil, []string{"networks[1].network_id"}},
		{"ports without networks", "t", nil, []*objectv1.PortConfig{{TargetPort: 80, PublishedPort: 80}}, []string{"ports"}},
		{"bad ports", "t", ok, []*objectv1.PortConfig{
			{Protocol: "sctp", TargetPort: 0, PublishedPort: 70000},
			{TargetPort: 80, PublishedPort: 8080},
			{Protocol: "tcp", TargetPort: 81, PublishedPort: 8080},
		}, []string{"ports[0].protocol", "ports[0].target_port", "ports[0].published_port", "ports[2].published_port"}},
	} {
		_, _, err := plan(c.task, c.nets, c.ports)
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("%s: plan = %v, want field errors", c.name, err)
			continue
		}
		var got []string
		for _, f := range fe {
			got = append(got, f.Field)
		}
		if strings.Join(got, " ") != strings.Join(c.fields, " ") {
			t.Errorf("%s: plan names fields %v, want %v (%v)", c.name, got, c.fields, err)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.200.3.0/24": "10.200.3.255",
		"10.200.0.0/16": "10.200.255.255",
		"10.200.3.0/30": "10.200.3.3",
		"10.0.0.0/9":    "10.127.255.255",
	} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
