package schedulertest

import (
	"strings"
	"testing"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

func TestMeets(t *testing.T) {
	n := newNode("n1", 4, 8*gib, "rack", "r1")
	n.Hostname = "Host-N1"
	n.Platform = "linux/arm64"
	n.Role = objectv1.NodeRole_NODE_ROLE_MANAGER
	cases := []struct {
		expr string
		want bool
		why  string // in the explanation when not met
	}{
		{"node.id==n1", true, ""},
		{"node.id!=n1", false, `node.id is "n1"`},
		{"node.id==N1", false, `node.id is "n1", not "N1"`},
		// The host name case rule the kit holds schedulers to.
		{"node.hostname==host-n1", true, ""},
		{"node.hostname==HOST-N1", true, ""},
		{"node.hostname!=host-n1", false, `node.hostname is "Host-N1", which is "host-n1" ignoring case`},
		{"node.role==manager", true, ""},
		{"node.role!=worker", true, ""},
		{"node.platform.os==linux", true, ""},
		{"node.platform.arch==arm64", true, ""},
		{"node.labels.rack==r1", true, ""},
		{"node.labels.rack==R1", false, `node.labels.rack is "r1", not "R1"`},
		{" node.labels.rack == r1 ", true, ""},
		{"node.labels.rack!=r2", true, ""},
		{"node.labels.zone==a", false, "node.labels.zone is not set"},
		{"node.labels.zone!=a", true, ""},
		{"garbage", false, `invalid constraint "garbage"`},
	}
	for _, tc := range cases {
		got, why := meets(n, tc.expr)
		if got != tc.want || !tc.want && !strings.Contains(why, tc.why) {
			t.Errorf("meets(n1, %q) = %v, %q; want %v, %q", tc.expr, got, why, tc.want, tc.why)
		}
	}
}

func TestVerify(t *testing.T) {
	over := newNode("over", 1, gib)
	over.Reserved = &objectv1.Resources{NanoCpus: 2 * cpu}
	c := newCluster(newNode("n1", 2, 4*gib), newNode("untotalled", 0, 0), over)
	tasks := concat(newTasks("a", "svc", 2, nil, cpu, gib), newTasks("b", "svc", 1, nil, 0, 0))
	req := c.full(tasks)
	place := func(pairs ...string) *schedulerv1.ScheduleResponse {
		resp := &schedulerv1.ScheduleResponse{}
		for i := 0; i < len(pairs); i += 2 {
			resp.Decisions = append(resp.Decisions, &schedulerv1.Decision{TaskId: pairs[i], NodeId: pairs[i+1], Refusal: map[bool]string{true: "full"}[pairs[i+1] == ""]})
		}
		return resp
	}
	cases := []struct {
		name string
		resp *schedulerv1.ScheduleResponse
		want []string // substrings, one per problem, in order
	}{
		{"valid", place("a-0", "n1", "a-1", "n1", "b-0", "over"), nil},
		{"unset totals are not checked", place("a-0", "untotalled", "a-1", "untotalled", "b-0", ""), nil},
		{"nil response", nil, []string{"nil response"}},
		{"missing and extra", place("a-0", "n1", "zz", "n1"), []string{
			"got 2 decisions for 3 tasks", `decisions[1] is for task "zz"`, `task "a-1" has no decision`, `task "b-0" has no decision`,
		}},
		{"duplicate", place("a-0", "n1", "a-0", "n1", "a-1", "", "b-0", ""), []string{"got 4 decisions for 3 tasks", `task "a-0" has more than one decision`}},
		{"empty refusal", &schedulerv1.ScheduleResponse{Decisions: []*schedulerv1.Decision{{TaskId: "a-0"}, {TaskId: "a-1", Refusal: "x"}, {TaskId: "b-0", Refusal: "x"}}},
			[]string{`task "a-0" is refused (no node_id) with an empty refusal`}},
		{"over-committed", place("a-0", "n1", "a-1", "over", "b-0", "n1"), []string{`node "over": CPU over-committed: total 1.00 CPUs, already reserved 2.00 CPUs, this batch placed 1.00 CPUs more (tasks a-1)`}},
		{"unknown node", place("a-0", "gone", "a-1", "", "b-0", ""), []string{`task "a-0" is placed on node "gone", which is not in the view`}},
	}
	for _, tc := range cases {
		got := c.verify(req, tc.resp)
		if len(got) != len(tc.want) {
			t.Errorf("%s: verify = %q, want %d problems like %q", tc.name, got, len(tc.want), tc.want)
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tc.want[i]) {
				t.Errorf("%s: verify problem %d = %q, want it to contain %q", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}
