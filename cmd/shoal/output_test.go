package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestUnknownCommand: a command that does not exist fails, so that a
// script does not take it for done; a group alone prints its help.
func TestUnknownCommand(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStderr string
		wantStdout string
	}{
		{args: []string{"foo"}, wantCode: 1, wantStderr: "Error: unknown command \"foo\" for \"shoal\"\nRun 'shoal --help' for usage.\n"},
		{args: []string{"secrets", "create", "x"}, wantCode: 1, wantStderr: "Error: unknown command \"secrets\" for \"shoal\"\n"},
		{args: []string{"service", "rolback", "web"}, wantCode: 1,
			wantStderr: "Error: unknown command \"rolback\" for \"shoal service\"\n\nDid you mean this?\n\trollback\n\nRun 'shoal service --help' for usage.\n"},
		{args: []string{"node", "frob"}, wantCode: 1, wantStderr: "Error: unknown command \"frob\" for \"shoal node\""},
		{args: []string{"task", "ls"}, wantCode: 1, wantStderr: "Error: unknown command \"ls\" for \"shoal task\""},
		{args: []string{"help", "foo"}, wantCode: 1, wantStderr: "Error: unknown command \"foo\" for \"shoal\""},
		{args: []string{"help", "service", "foo"}, wantCode: 1, wantStderr: "Error: unknown command \"foo\" for \"shoal service\""},
		// Asking what a group holds is not a failure, as in docker.
		{args: []string{"service"}, wantCode: 0, wantStdout: "Available Commands:"},
		{args: nil, wantCode: 0, wantStdout: "Available Commands:"},
		{args: []string{"help", "service"}, wantCode: 0, wantStdout: "shoal service [command]"},
	}
	for _, tt := range tests {
		f := newFakeControl()
		host := f.serve(t)
		res := runCLI(host, tt.args...)
		if res.code != tt.wantCode || !strings.HasPrefix(res.stderr, tt.wantStderr) || !strings.Contains(res.stdout, tt.wantStdout) {
			t.Errorf("shoal %v = exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr starting %q",
				tt.args, res.code, res.stdout, res.stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
		}
		if tt.wantCode != 0 && res.stdout != "" {
			t.Errorf("shoal %v printed %q on stdout, want nothing", tt.args, res.stdout)
		}
		if len(f.calls) != 0 {
			t.Errorf("shoal %v called %v", tt.args, f.calls)
		}
	}
}

// notPrinting are the commands that need no --format: the daemon, shell
// completion, help, logs, whose output is the tasks' own lines, and exec,
// whose output is its command's.
var notPrinting = []string{
	"shoal agent", "shoal completion", "shoal help", "shoal service logs", "shoal task logs", "shoal task exec",
}

// TestEveryCommandTakesFormat walks the command tree: every command that
// prints something takes --format json and templates.
func TestEveryCommandTakesFormat(t *testing.T) {
	root := newTestCLI().newRootCmd()
	root.InitDefaultCompletionCmd()
	var walk func(*cobra.Command)
	n := 0
	walk = func(cmd *cobra.Command) {
		path := cmd.CommandPath()
		skip := slices.ContainsFunc(notPrinting, func(p string) bool { return path == p || strings.HasPrefix(path, p+" ") })
		if !cmd.HasSubCommands() && !cmd.Hidden && !skip {
			n++
			fl := cmd.Flags().Lookup("format")
			if fl == nil {
				t.Errorf("%s has no --format", path)
			} else if err := fl.Value.Set("json"); err != nil {
				t.Errorf("%s --format json: %v", path, err)
			} else if err := fl.Value.Set("{{.id}}"); err != nil {
				t.Errorf("%s --format '{{.id}}': %v", path, err)
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 20 {
		t.Errorf("checked %d commands, want them all", n)
	}
}

// TestFormatEveryCommand prints, per command, what --format json and a
// template make of the fixture's objects, in testdata/format_*.golden. Each
// command's runs start from a fresh fixture and follow each other.
func TestFormatEveryCommand(t *testing.T) {
	tests := []struct {
		name string
		runs [][]string
	}{
		{"service_create", [][]string{
			{"service", "create", "-d", "--format", "json", "--name", "api", "--replicas", "2", "nginx"},
			{"service", "create", "-d", "--format", "{{.id}} {{.spec.annotations.name}} {{.spec.task.container.image}}", "--name", "api", "nginx"},
		}},
		{"service_ls", [][]string{
			{"service", "ls", "--format", "json"},
			{"service", "ls", "--format", "{{.spec.annotations.name}}\t{{with .spec.replicated}}{{.replicas}}{{else}}global{{end}}\t{{.spec.task.container.image}}"},
		}},
		{"service_inspect", [][]string{
			{"service", "inspect", "--format", "json", "web"},
			{"service", "inspect", "--format", "{{.id}} {{json .spec.annotations}} {{.update_status}}", "web", "db"},
			{"service", "inspect", "--format", "pretty", "db"},
		}},
		{"service_ps", [][]string{
			{"service", "ps", "--format", "json", "db"},
			{"service", "ps", "--format", "{{.id}} {{.slot}} {{.status.state}} {{.status.err}}", "web"},
		}},
		{"service_scale", [][]string{
			{"service", "scale", "-d", "--format", "json", "web=4"},
			{"service", "scale", "-d", "--format", "{{.spec.annotations.name}}={{.spec.replicated.replicas}}", "web=5", "nope=1"},
		}},
		{"service_update", [][]string{
			{"service", "update", "-d", "--format", "json", "--image", "nginx:1.28", "web"},
			{"service", "update", "-d", "--format", "{{.spec.task.container.image}} {{.spec_version}}", "--image", "nginx:1.28", "web"},
			{"service", "update", "-d", "--format", "{{.spec.task.container.image}} {{.spec_version}}", "--image", "nginx:1.27", "web"},
		}},
		{"service_rollback", [][]string{
			{"service", "rollback", "-d", "--format", "json", "web"},
			{"service", "update", "-d", "--image", "nginx:1.28", "web"},
			{"service", "rollback", "-d", "--format", "{{.spec.task.container.image}} (was {{.previous_spec.task.container.image}})", "web"},
		}},
		{"service_rm", [][]string{
			{"service", "rm", "--format", "json", "db"},
			{"service", "rm", "--format", "removed {{.id}}", "web", "nope"},
		}},
		{"node_ls", [][]string{
			{"node", "ls", "--format", "json"},
			{"node", "ls", "--format", "{{.description.hostname}} {{.role}} {{.status.state}} {{.spec.availability}}"},
		}},
		{"node_inspect", [][]string{
			{"node", "inspect", "--format", "json", "node-4"},
			{"node", "inspect", "--format", "{{.id}} {{with .manager_status}}{{.api_addr}}{{else}}worker{{end}}", "node-1", "node-4"},
		}},
		{"node_update", [][]string{
			{"node", "update", "--format", "json", "--availability", "drain", "node-1"},
			{"node", "update", "--format", "{{.spec.availability}} {{json .spec.annotations.labels}}", "--label-add", "zone=a", "node-1"},
		}},
		{"node_promote_demote", [][]string{
			{"node", "promote", "--format", "json", "node-4"},
			{"node", "demote", "--format", "{{.description.hostname}} {{.spec.desired_role}}", "node-2", "node-3"},
		}},
		{"node_rm", [][]string{
			{"node", "rm", "--format", "json", "node-3"},
			{"node", "rm", "--format", "{{.id}}", "--force", "node-4"},
		}},
		{"network_create", [][]string{
			{"network", "create", "--format", "json", "--subnet", "10.50.0.0/16", "back"},
			{"network", "create", "--format", "{{.id}} {{.spec.annotations.name}} {{.spec.subnet}}", "back"},
		}},
		{"network_ls", [][]string{
			{"network", "ls", "--format", "json"},
			{"network", "ls", "--format", "{{.spec.annotations.name}} {{.subnet}} {{len .node_subnets}}"},
		}},
		{"network_inspect", [][]string{
			{"network", "inspect", "--format", "{{json .node_subnets}}", "front"},
		}},
		{"network_rm", [][]string{
			{"network", "rm", "--format", "{{.id}} {{.spec.annotations.name}}", "front"},
			{"network", "create", "back"},
			{"network", "rm", "--format", "json", "back", "front"},
		}},
		{"cluster", [][]string{
			{"cluster", "inspect", "--format", "{{.spec.annotations.name}} {{.root_ca.digest}} {{.root_ca.join_tokens}}"},
			{"cluster", "update", "--format", "json", "--task-history-limit", "2"},
			{"cluster", "update", "--format", "{{.spec.orchestration.task_history_retention}} {{.spec.dispatcher}}", "--task-history-limit", "3"},
		}},
		{"join_token", [][]string{
			{"join-token", "--format", "json", "worker"},
			{"join-token", "--format", "{{.token}} {{join .addrs \",\"}}", "manager"},
			{"join-token", "--rotate", "--format", "{{.role}} {{.rotated}} {{.token}}", "worker"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeControl()
			seed(f)
			host := f.serve(t)
			var b strings.Builder
			for _, args := range tt.runs {
				res := runCLI(host, args...)
				fmt.Fprintf(&b, "$ shoal %s\n%s", shellJoin(args), res.stdout)
				if res.code != 0 {
					fmt.Fprintf(&b, "(exit %d) %s", res.code, res.stderr)
				} else if res.stderr != "" {
					t.Errorf("%v: exit 0 with stderr %q", args, res.stderr)
				}
				if res.code == 0 && slices.Contains(args, "json") && !json.Valid([]byte(res.stdout)) {
					t.Errorf("%v printed invalid JSON:\n%s", args, res.stdout)
				}
			}
			checkGolden(t, "format_"+tt.name+".golden", b.String())
		})
	}
}

func TestVersionFormat(t *testing.T) {
	res := runCLI("unix:///unused", "version", "--format", "json")
	var v versionInfo
	if err := json.Unmarshal([]byte(res.stdout), &v); res.code != 0 || err != nil || v.Version != binaryVersion() || v.OS == "" {
		t.Errorf("version --format json = exit %d, %q (%v)", res.code, res.stdout, err)
	}
	res = runCLI("unix:///unused", "version", "--format", "{{.version}}")
	if res.code != 0 || res.stdout != binaryVersion()+"\n" {
		t.Errorf("version --format {{.version}} = exit %d, %q, %q", res.code, res.stdout, res.stderr)
	}
}

func TestFormatErrors(t *testing.T) {
	tests := []struct {
		args       []string
		wantStderr string
		wantCalls  bool
	}{
		{[]string{"service", "ls", "--format", "yaml"}, `"--format" flag: want one of table, json, or a Go template such as '{{.id}}'`, false},
		{[]string{"service", "inspect", "--format", "table", "web"}, `want one of json, pretty, or a Go template`, false},
		{[]string{"service", "rm", "--format", "table", "web"}, `want one of json, or a Go template`, false},
		{[]string{"service", "ls", "--format", "{{.id"}, `"--format" flag: template: format:1: unclosed action`, false},
		{[]string{"service", "ls", "--format", "table {{.id}}"}, `"table TEMPLATE" is not supported`, false},
		{[]string{"service", "ls", "--format", "{{nofunc .id}}"}, `function "nofunc" not defined`, false},
		{[]string{"service", "inspect", "--pretty", "--format", "json", "web"}, `--pretty and --format: give one`, false},
		// A misspelt field names the fields there are.
		{[]string{"service", "ls", "--format", "{{.ID}}"},
			`map has no entry for key "ID" (the fields there, as --format json names them: id, meta, previous_spec, spec, spec_version, update_status, virtual_ips)`, true},
		{[]string{"service", "inspect", "--format", "{{.spec.mode.replicas}}", "web"},
			`no entry for key "mode" (the fields there, as --format json names them: annotations, endpoint, global, global_job, replicated, replicated_job, rollback, task, update)`, true},
	}
	for _, tt := range tests {
		f := newFakeControl()
		seed(f)
		host := f.serve(t)
		res := runCLI(host, tt.args...)
		if res.code != 1 || !strings.Contains(res.stderr, tt.wantStderr) || res.stdout != "" {
			t.Errorf("%v = exit %d, stdout %q, stderr %q; want exit 1, nothing printed, an error with %q", tt.args, res.code, res.stdout, res.stderr, tt.wantStderr)
		}
		if !tt.wantCalls && len(f.calls) != 0 {
			t.Errorf("%v called %v before refusing its flags", tt.args, f.calls)
		}
	}
}

// TestTemplateData: a template sees every field of the JSON output, unset
// ones as their zero value, the unset member of a oneof as nothing.
func TestTemplateData(t *testing.T) {
	svc := &objectv1.Service{Id: "x", Spec: &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "web"},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{}},
	}}
	var format outputFormat
	addOutputFlag(newTestCLI().newRootCmd().Flags(), &format, "table")
	for _, tt := range []struct{ tmpl, want string }{
		{"{{.spec.replicated.replicas}}", "0"},
		{"{{.spec.global}}", "<no value>"},
		{"{{if .spec.global}}global{{else}}replicated{{end}}", "replicated"},
		{"{{.spec.annotations.labels}} {{len .virtual_ips}}", "map[] 0"},
		{`{{.id}}\t{{.spec.annotations.name}}\n`, "x\tweb\n"},
		{"{{.update_status}}", "<no value>"},
		{"{{json .spec.annotations}}", `{"labels":{},"name":"web"}`},
		{"{{upper .spec.annotations.name}} {{title .id}} {{truncate \"abcdef\" 3}} {{join (split \"a:b\" \":\") \"-\"}}", "WEB X abc a-b"},
	} {
		if err := format.Set(tt.tmpl); err != nil {
			t.Fatalf("%s: %v", tt.tmpl, err)
		}
		var b strings.Builder
		if err := writeOne(&b, &format, svc); err != nil || b.String() != tt.want+"\n" {
			t.Errorf("%s = %q, %v; want %q", tt.tmpl, b.String(), err, tt.want)
		}
	}
	// --format json prints what protojson reads back.
	if err := format.Set("json"); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writeOne(&b, &format, svc); err != nil {
		t.Fatal(err)
	}
	var got objectv1.Service
	if err := protojson.Unmarshal([]byte(b.String()), &got); err != nil || got.GetSpec().GetAnnotations().GetName() != "web" {
		t.Errorf("json = %q (%v)", b.String(), err)
	}
}

// TestServiceLsDesiredFromSpec: a replicated service's desired count is its
// replicas, also when its tasks ended: 0/1, not 0/0.
func TestServiceLsDesiredFromSpec(t *testing.T) {
	f := newFakeControl()
	seed(f)
	for _, task := range f.tasks {
		if task.ServiceId == webID {
			task.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
			task.Status.State = objectv1.TaskState_TASK_STATE_COMPLETE
		}
	}
	host := f.serve(t)
	res := runCLI(host, "service", "ls")
	lines := strings.Split(res.stdout, "\n")
	if res.code != 0 || len(lines) < 3 || !strings.Contains(lines[2], " 0/3 ") || !strings.Contains(lines[1], " 1/1 (max 1 per node) ") {
		t.Errorf("service ls = exit %d\n%s\nwant web 0/3 and db (global) 1/1", res.code, res.stdout)
	}
}

// rollingFake makes the fake orchestrator replace web's out-of-date tasks on
// each ListTasks call and report the update's status as it goes, as the
// kernel does. done says what becomes of the update once every task runs
// the new spec.
func rollingFake(f *fakeControl, done func(f *fakeControl, svc *objectv1.Service)) {
	f.onListTasks = func(f *fakeControl, call int) {
		svc := f.services[webID]
		switch call {
		case 1:
			// Nothing yet: the orchestrator has not seen the update.
			return
		case 2:
			svc.UpdateStatus = &objectv1.UpdateStatus{State: objectv1.UpdateState_UPDATE_STATE_UPDATING, SpecVersion: svc.SpecVersion}
			for _, t := range f.tasks {
				if t.ServiceId == webID && t.DesiredState == objectv1.TaskState_TASK_STATE_RUNNING {
					t.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
					f.addTask(&objectv1.Task{
						Id: t.Id[:24] + "n", ServiceId: webID, Slot: t.Slot, Spec: svc.Spec.Task, SpecVersion: svc.SpecVersion,
						ServiceAnnotations: svc.Spec.Annotations, Endpoint: svc.Spec.Endpoint,
						DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
						Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING},
					})
				}
			}
		case 3:
			done(f, svc)
		}
	}
}

func TestServiceUpdateWaitsForTheUpdate(t *testing.T) {
	f := newFakeControl()
	seed(f)
	rollingFake(f, func(f *fakeControl, svc *objectv1.Service) {
		svc.UpdateStatus.State = objectv1.UpdateState_UPDATE_STATE_COMPLETED
	})
	host := f.serve(t)
	c := newTestCLI()
	c.now = time.Now
	res := c.run(host, "service", "update", "--image", "nginx:1.28", "web")
	want := "web\n" +
		"web: 0/3 running, 3 to update\n" + // the update has not started
		"web: updating, 3/3 running\n" + // every task replaced, the last batch watched
		"web: update completed, 3/3 running\n"
	if res.code != 0 || res.stdout != want {
		t.Errorf("update = exit %d, stdout %q, stderr %q; want exit 0, stdout %q", res.code, res.stdout, res.stderr, want)
	}
}

func TestServiceUpdateRolledBack(t *testing.T) {
	f := newFakeControl()
	seed(f)
	const failing = "t2q1w2e3r4t5y6u7i8o9p0a1n"
	rollingFake(f, func(f *fakeControl, svc *objectv1.Service) {
		// The new task of slot 2 failed: the orchestrator rolled back
		// (the old spec under a new version) and has replaced every task.
		f.tasks[failing].Status = &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_FAILED, ExitCode: 1}
		svc.Spec, svc.PreviousSpec = svc.PreviousSpec, nil
		svc.SpecVersion++
		svc.UpdateStatus = &objectv1.UpdateStatus{
			State: objectv1.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED, SpecVersion: svc.SpecVersion,
			Message: "update rolled back: task " + failing + " failed: exit code 1",
		}
		for _, t := range f.tasks {
			if t.ServiceId == webID && t.DesiredState == objectv1.TaskState_TASK_STATE_RUNNING {
				t.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
				f.addTask(&objectv1.Task{
					Id: t.Id[:24] + "r", ServiceId: webID, Slot: t.Slot, Spec: svc.Spec.Task, SpecVersion: svc.SpecVersion,
					ServiceAnnotations: svc.Spec.Annotations, Endpoint: svc.Spec.Endpoint,
					DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
					Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING},
				})
			}
		}
	})
	host := f.serve(t)
	c := newTestCLI()
	c.now = time.Now
	res := c.run(host, "service", "update", "--image", "nginx:1.28", "web")
	wantOut := "web\n" +
		"web: 0/3 running, 3 to update\n" +
		"web: updating, 3/3 running\n" +
		"web: rolled back, 3/3 running\n"
	wantErr := "Error: service web: update rolled back: task web.2.t2q1w2e3r4t5 failed: exit code 1; see 'shoal service ps web'\n"
	if res.code != 1 || res.stdout != wantOut || res.stderr != wantErr {
		t.Errorf("update = exit %d, stdout %q, stderr %q; want exit 1, stdout %q, stderr %q", res.code, res.stdout, res.stderr, wantOut, wantErr)
	}
}

// TestStructuredOutputKeepsProgressOffStdout: with --format json, stdout
// is the data alone; the progress of waiting goes to stderr.
func TestStructuredOutputKeepsProgressOffStdout(t *testing.T) {
	f := newFakeControl()
	f.onCreate = pendingTasks("")
	f.onListTasks = runTasksAt(2)
	host := f.serve(t)
	c := newTestCLI()
	c.now = time.Now
	res := c.run(host, "service", "create", "--format", "json", "--name", "web", "--replicas", "2", "nginx")
	var got objectv1.Service
	if err := protojson.Unmarshal([]byte(res.stdout), &got); res.code != 0 || err != nil || got.GetId() != "svc0000000000000000000001" {
		t.Errorf("create --format json = exit %d, stdout %q (%v), stderr %q; want the service alone", res.code, res.stdout, err, res.stderr)
	}
	if want := "web: 0/2 running, 2 pending\nweb: 2/2 running\n"; res.stderr != want {
		t.Errorf("create --format json: stderr %q, want the progress %q", res.stderr, want)
	}
}

// TestWaitGivesUpWhenNothingChanges: without --timeout, waiting lasts as
// long as the rollout makes progress, and ends once nothing has changed
// for longer than the rollout can rest.
func TestWaitGivesUpWhenNothingChanges(t *testing.T) {
	f := newFakeControl()
	f.onCreate = pendingTasks("")
	host := f.serve(t)
	c := newTestCLI()
	c.now = time.Now
	c.quiet = 300 * time.Millisecond
	start := time.Now()
	res := c.run(host, "service", "create", "--name", "web", "--replicas", "1", "nginx")
	want := "Error: web: nothing changed for 300ms (0/1 running, 1 pending); it goes on in the background, see 'shoal service ps web'\n"
	if res.code != 1 || res.stderr != want {
		t.Errorf("create = exit %d, stderr %q; want exit 1, %q", res.code, res.stderr, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

func TestServiceRollback(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "service", "rollback", "web")
	if res.code != 1 || res.stderr != "Error: service web has no previous spec to roll back to\n" || len(f.updates) != 0 {
		t.Errorf("rollback without a previous spec = exit %d, stderr %q, %d updates", res.code, res.stderr, len(f.updates))
	}
	if res := runCLI(host, "service", "update", "-d", "--image", "nginx:1.28", "web"); res.code != 0 {
		t.Fatalf("update: exit %d, %q", res.code, res.stderr)
	}
	before := f.services[webID].GetPreviousSpec()
	f.conflicts = 1
	res = runCLI(host, "service", "rollback", "-d", "web")
	if res.code != 0 || res.stdout != "web\n" {
		t.Fatalf("rollback = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	last := f.updates[len(f.updates)-1]
	if got := last.GetSpec(); got.GetTask().GetContainer().GetImage() != "nginx:1.27" || !proto.Equal(got, before) {
		t.Errorf("rollback sent %v, want the previous spec %v", got, before)
	}
	if n := f.callsOf("ListTasks"); n != 0 {
		t.Errorf("rollback --detach polled tasks %d times", n)
	}
}

// TestServiceScaleUnchangedDoesNotWait: a service already at the scale
// asked for has nothing to converge to; its tasks may have ended for good.
func TestServiceScaleUnchangedDoesNotWait(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "service", "scale", "web=3")
	if res.code != 0 || res.stdout != "web scaled to 3\n" || len(f.updates) != 0 || f.callsOf("ListTasks") != 0 {
		t.Errorf("scale web=3 (as it is) = exit %d, stdout %q, stderr %q, %d updates, %d polls",
			res.code, res.stdout, res.stderr, len(f.updates), f.callsOf("ListTasks"))
	}
}

func TestCompletion(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"service", "inspect", ""}, []string{"db\tpostgres:16", "web\tnginx:1.27"}},
		{[]string{"service", "inspect", "web", ""}, []string{"db\tpostgres:16"}},
		{[]string{"service", "update", "w"}, []string{"web\tnginx:1.27"}},
		{[]string{"service", "update", "web", ""}, nil},
		{[]string{"service", "scale", "w"}, []string{"web=\tnginx:1.27"}},
		{[]string{"node", "rm", "node-"}, []string{"node-1\tmanager, ready", "node-2\tmanager, ready", "node-3\tmanager, down", "node-4\tworker, ready"}},
		{[]string{"network", "inspect", ""}, []string{"front\t10.192.0.0/16"}},
		{[]string{"service", "create", "--network", "f"}, []string{"front\t10.192.0.0/16"}},
		{[]string{"task", "logs", "t2"}, []string{"t2q1w2e3r4t5y6u7i8o9p0a1s\tweb.2 running", "t2z9x8c7v6b5n4m3l2k1j0h9g\tweb.2 failed"}},
		{[]string{"node", "update", "--availability", ""}, []string{"active", "pause", "drain"}},
		{[]string{"service", "ls", "--format", ""}, []string{"table", "json"}},
		{[]string{"service", "fo"}, nil},
	}
	for _, tt := range tests {
		res := runCLI(host, append([]string{"__complete"}, tt.args...)...)
		lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
		got := lines[:len(lines)-1] // the last line is the directive
		if res.code != 0 || !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
			t.Errorf("complete %q = exit %d, %q; want %q", tt.args, res.code, got, tt.want)
		}
	}

	// A cluster that cannot be reached completes nothing, without an error.
	res := runCLI("unix:///nonexistent/control.sock", "__complete", "service", "inspect", "")
	if res.code != 0 || res.stdout != ":4\n" || strings.Contains(res.stderr, "Error") {
		t.Errorf("complete with no cluster = exit %d, stdout %q, stderr %q; want nothing", res.code, res.stdout, res.stderr)
	}
}
