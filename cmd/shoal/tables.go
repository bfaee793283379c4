package main

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// maxErrLength is how much of a task's error `service ps` shows unless
// --no-trunc, as docker does: enough to recognise it, short enough to keep
// one task per line.
const maxErrLength = 30

// table aligns tab-separated columns as docker's tables do, without the
// trailing blanks of an empty last column. Flush it when done.
type table struct {
	w   io.Writer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 10, 1, 3, ' ', 0)
	return t
}

func (t *table) Write(p []byte) (int, error) { return t.tw.Write(p) }

func (t *table) Flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(t.buf.String()) {
		if _, err := io.WriteString(t.w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func row(w io.Writer, cols ...string) {
	fmt.Fprintln(w, strings.Join(cols, "\t"))
}

// serviceRow is one line of `service ls`.
type serviceRow struct {
	svc              *objectv1.Service
	running, desired int64
	// completed counts a job's tasks of its current spec that completed.
	completed int64
}

func writeServiceTable(w io.Writer, rows []serviceRow) error {
	tw := newTable(w)
	row(tw, "ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS")
	for _, r := range rows {
		spec := r.svc.GetSpec()
		mode := modeName(spec)
		replicas := fmt.Sprintf("%d/%d", r.running, r.desired)
		if isJob(spec) {
			replicas = jobReplicas(spec, r.running, r.desired, r.completed)
		}
		if n := spec.GetTask().GetPlacement().GetMaxReplicasPerNode(); n > 0 {
			replicas += fmt.Sprintf(" (max %d per node)", n)
		}
		row(tw, shortID(r.svc.GetId(), false), spec.GetAnnotations().GetName(), mode, replicas,
			spec.GetTask().GetContainer().GetImage(), formatPorts(spec.GetEndpoint().GetPorts()))
	}
	return tw.Flush()
}

func formatPorts(ports []*objectv1.PortConfig) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = formatPort(p)
	}
	return strings.Join(parts, ", ")
}

// formatPort is docker's "*:8080->80/tcp".
func formatPort(p *objectv1.PortConfig) string {
	if p.GetPublishedPort() == 0 {
		return fmt.Sprintf("%d/%s", p.GetTargetPort(), protocolOf(p))
	}
	return fmt.Sprintf("*:%d->%d/%s", p.GetPublishedPort(), p.GetTargetPort(), protocolOf(p))
}

// taskTable renders `service ps`.
type taskTable struct {
	// nodes names node IDs for the NODE column.
	nodes   map[string]string
	now     time.Time
	noTrunc bool
}

// write prints tasks grouped by service and slot (or node, for global
// tasks), newest first; older tasks of a slot are marked " \_ " as in
// docker.
func (tt taskTable) write(w io.Writer, tasks []*objectv1.Task) error {
	tasks = slices.Clone(tasks)
	slices.SortStableFunc(tasks, func(a, b *objectv1.Task) int {
		return cmp.Or(
			cmp.Compare(a.GetServiceAnnotations().GetName(), b.GetServiceAnnotations().GetName()),
			cmp.Compare(a.GetServiceId(), b.GetServiceId()),
			cmp.Compare(a.GetSlot(), b.GetSlot()),
			// A global task's slot is its node; a replicated slot's tasks
			// may have run on several nodes and go newest first.
			cmp.Compare(globalNode(a), globalNode(b)),
			b.GetMeta().GetCreatedAt().AsTime().Compare(a.GetMeta().GetCreatedAt().AsTime()),
			cmp.Compare(a.GetId(), b.GetId()),
		)
	})
	tw := newTable(w)
	row(tw, "ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR")
	for i, t := range tasks {
		name := tt.taskName(t)
		if i > 0 && sameSlot(tasks[i-1], t) {
			name = ` \_ ` + name
		}
		row(tw, shortID(t.GetId(), tt.noTrunc), name, t.GetSpec().GetContainer().GetImage(), tt.nodeName(t.GetNodeId()),
			taskStateName(t.GetDesiredState()), tt.currentState(t), tt.taskError(t))
	}
	return tw.Flush()
}

// globalNode is a global task's node ID (its slot), empty for a replicated
// task.
func globalNode(t *objectv1.Task) string {
	if t.GetSlot() != 0 {
		return ""
	}
	return t.GetNodeId()
}

func sameSlot(a, b *objectv1.Task) bool {
	return a.GetServiceId() == b.GetServiceId() && a.GetSlot() == b.GetSlot() && (a.GetSlot() != 0 || a.GetNodeId() == b.GetNodeId())
}

// taskName is "web.2" for a replicated task, "web.<node ID>" for a global one.
func (tt taskTable) taskName(t *objectv1.Task) string {
	name := t.GetServiceAnnotations().GetName()
	if t.GetSlot() > 0 {
		return fmt.Sprintf("%s.%d", name, t.GetSlot())
	}
	return name + "." + shortID(t.GetNodeId(), tt.noTrunc)
}

func (tt taskTable) nodeName(id string) string {
	if name, ok := tt.nodes[id]; ok {
		return name
	}
	return shortID(id, tt.noTrunc)
}

// currentState is "running 5 seconds ago", with the task's health when it
// has a health check and runs, as docker ps shows it: "running (healthy) 5
// seconds ago".
func (tt taskTable) currentState(t *objectv1.Task) string {
	state := taskStateName(t.GetStatus().GetState())
	if h := t.GetStatus().GetHealth(); h != objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED && t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
		state += " (" + enumName(h.String(), "TASK_HEALTH_") + ")"
	}
	if ts := t.GetStatus().GetTimestamp(); ts != nil {
		state += " " + humanDuration(tt.now.Sub(ts.AsTime())) + " ago"
	}
	return state
}

// taskError is the error that ended the task or, for a task that is still
// pending, the reason it waits ("no suitable node: ..."), quoted as docker
// does.
func (tt taskTable) taskError(t *objectv1.Task) string {
	msg := t.GetStatus().GetErr()
	if msg == "" && t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_PENDING {
		msg = t.GetStatus().GetMessage()
	}
	if msg == "" {
		return ""
	}
	if !tt.noTrunc && len(msg) > maxErrLength {
		msg = msg[:maxErrLength-1] + "…"
	}
	return `"` + msg + `"`
}

func taskStateName(s objectv1.TaskState) string {
	return enumName(s.String(), "TASK_STATE_")
}

// writeNodeTable renders `node ls`. MANAGER STATUS marks the Raft leader
// (docker marks the node the CLI talks to with "*" instead; here that is
// always a local socket or a manager by address, so the leader says more).
func writeNodeTable(w io.Writer, nodes []*objectv1.Node, leaderID string) error {
	tw := newTable(w)
	row(tw, "ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION")
	for _, n := range nodes {
		row(tw, n.GetId(), n.GetDescription().GetHostname(),
			enumName(n.GetStatus().GetState().String(), "NODE_STATE_"),
			enumName(n.GetSpec().GetAvailability().String(), "NODE_AVAILABILITY_"),
			managerStatus(n, leaderID), n.GetDescription().GetEngineVersion())
	}
	return tw.Flush()
}

// managerStatus is "Leader", "Reachable" or "Unreachable" for managers and
// empty for workers.
func managerStatus(n *objectv1.Node, leaderID string) string {
	switch {
	case n.GetRole() != objectv1.NodeRole_NODE_ROLE_MANAGER:
		return ""
	case n.GetId() == leaderID:
		return "Leader"
	case n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_DOWN:
		return "Unreachable"
	}
	return "Reachable"
}

// nodeName is the name tables show for a node: its hostname, else its name,
// else its ID.
func nodeName(n *objectv1.Node) string {
	return cmp.Or(n.GetDescription().GetHostname(), n.GetSpec().GetAnnotations().GetName(), n.GetId())
}

// writeServicePretty prints a service for people (service inspect --pretty).
func writeServicePretty(w io.Writer, svc *objectv1.Service) error {
	spec := svc.GetSpec()
	task := spec.GetTask()
	c := task.GetContainer()
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, value)
		}
	}
	field("ID", svc.GetId())
	field("Name", spec.GetAnnotations().GetName())
	for _, k := range slices.Sorted(maps.Keys(spec.GetAnnotations().GetLabels())) {
		field("Label", k+"="+spec.GetAnnotations().GetLabels()[k])
	}
	field("Mode", modeName(spec))
	switch {
	case spec.GetReplicated() != nil:
		field("Replicas", fmt.Sprint(spec.GetReplicated().GetReplicas()))
	case spec.GetReplicatedJob() != nil:
		field("Total completions", fmt.Sprint(spec.GetReplicatedJob().GetTotalCompletions()))
		field("Max concurrent", fmt.Sprint(spec.GetReplicatedJob().GetMaxConcurrent()))
	}
	field("Image", c.GetImage())
	field("Command", shellJoin(c.GetCommand()))
	field("Args", shellJoin(c.GetArgs()))
	for _, e := range c.GetEnv() {
		field("Env", e)
	}
	field("Dir", c.GetDir())
	field("User", c.GetUser())
	field("Stop signal", c.GetStopSignal())
	if d := c.GetStopGracePeriod(); d != nil {
		field("Stop grace period", d.AsDuration().String())
	}
	res := task.GetResources()
	if n := res.GetLimits().GetNanoCpus(); n > 0 {
		field("CPU limit", formatCPUs(n))
	}
	if n := res.GetLimits().GetMemoryBytes(); n > 0 {
		field("Memory limit", formatMemory(n))
	}
	if n := res.GetReservations().GetNanoCpus(); n > 0 {
		field("CPU reservation", formatCPUs(n))
	}
	if n := res.GetReservations().GetMemoryBytes(); n > 0 {
		field("Memory reservation", formatMemory(n))
	}
	if r := task.GetRestart(); r != nil {
		field("Restart condition", enumName(r.GetCondition().String(), "RESTART_CONDITION_"))
		if r.GetDelay() != nil {
			field("Restart delay", r.GetDelay().AsDuration().String())
		}
		if r.GetMaxAttempts() > 0 {
			field("Restart max attempts", fmt.Sprint(r.GetMaxAttempts()))
		}
		if r.GetWindow() != nil {
			field("Restart window", r.GetWindow().AsDuration().String())
		}
	}
	for _, con := range task.GetPlacement().GetConstraints() {
		field("Constraint", con)
	}
	for _, p := range task.GetPlacement().GetPreferences() {
		field("Placement preference", "spread="+p.GetSpread())
	}
	if n := task.GetPlacement().GetMaxReplicasPerNode(); n > 0 {
		field("Max replicas per node", fmt.Sprint(n))
	}
	if u := spec.GetUpdate(); u != nil {
		field("Update parallelism", fmt.Sprint(u.GetParallelism()))
		if u.GetDelay() != nil {
			field("Update delay", u.GetDelay().AsDuration().String())
		}
		field("Update failure action", enumName(u.GetFailureAction().String(), "FAILURE_ACTION_"))
		field("Update order", enumName(u.GetOrder().String(), "UPDATE_ORDER_"))
		if m := u.GetMonitor(); m != nil {
			field("Update monitor", m.AsDuration().String())
		}
		field("Update max failure ratio", fmt.Sprint(u.GetMaxFailureRatio()))
	}
	if us := svc.GetUpdateStatus(); us != nil {
		line := updateStateName(us.GetState())
		if m := us.GetMessage(); m != "" {
			line += ": " + m
		}
		field("Update status", line)
	}
	field("Ports", formatPortsWithMode(spec.GetEndpoint().GetPorts()))
	return tw.Flush()
}

// formatPortsWithMode is formatPorts with each published port's mode, as
// docker's inspect --pretty shows its PublishMode: "*:8080->80/tcp (host)".
// The mode is left out when unset, which the server never stores.
func formatPortsWithMode(ports []*objectv1.PortConfig) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = formatPort(p)
		if p.GetPublishedPort() != 0 && p.GetMode() != objectv1.PublishMode_PUBLISH_MODE_UNSPECIFIED {
			parts[i] += " (" + enumName(p.GetMode().String(), "PUBLISH_MODE_") + ")"
		}
	}
	return strings.Join(parts, ", ")
}

// shellJoin joins args into a command line that splitArgs (and a shell)
// splits back into args.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]{}~#!") {
			quoted[i] = a
			continue
		}
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}
