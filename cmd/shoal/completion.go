package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// completionTimeout bounds the call that completion makes to the cluster:
// a shell waits for it on every TAB, so an unreachable cluster must cost
// little, and completes nothing rather than print an error.
const completionTimeout = 2 * time.Second

// candidate is a name completion offers, with a description that zsh and
// fish show beside it.
type candidate struct{ name, desc string }

// addCompletions makes `shoal completion bash|zsh|fish` (cobra's) complete
// the names of services, nodes, networks and tasks where a command takes
// them, asking the cluster the --host flags name, and the values of flags
// that take one of a few (--format, --mode, --availability, ...).
func (c *cli) addCompletions(root *cobra.Command) {
	services := c.completeNames(listServiceNames)
	nodes := c.completeNames(listNodeNames)
	networks := c.completeNames(listNetworkNames)
	tasks := c.completeNames(listTaskIDs)
	args := map[string]nameCompleter{
		"shoal service inspect":  services.many(),
		"shoal service ps":       services.many(),
		"shoal service rm":       services.many(),
		"shoal service logs":     services.one(),
		"shoal service update":   services.one(),
		"shoal service rollback": services.one(),
		"shoal service scale":    services.many().withSuffix("="),
		"shoal node inspect":     nodes.many(),
		"shoal node update":      nodes.one(),
		"shoal node promote":     nodes.many(),
		"shoal node demote":      nodes.many(),
		"shoal node rm":          nodes.many(),
		"shoal network inspect":  networks.many(),
		"shoal network rm":       networks.many(),
		"shoal task logs":        tasks.many(),
	}
	flags := map[string]cobra.CompletionFunc{
		"network":     networks.many().complete,
		"network-add": networks.many().complete,
		"network-rm":  networks.many().complete,
	}
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		if n, ok := args[cmd.CommandPath()]; ok {
			cmd.ValidArgsFunction = n.complete
		} else if cmd.ValidArgsFunction == nil && len(cmd.ValidArgs) == 0 && cmd.Runnable() && !cmd.HasSubCommands() {
			cmd.ValidArgsFunction = cobra.NoFileCompletions
		}
		cmd.LocalNonPersistentFlags().VisitAll(func(fl *pflag.Flag) {
			f, ok := flags[fl.Name]
			if v, isChoice := fl.Value.(interface{ valueChoices() []string }); !ok && isChoice {
				f, ok = cobra.FixedCompletions(v.valueChoices(), cobra.ShellCompDirectiveNoFileComp), true
			}
			if ok {
				_ = cmd.RegisterFlagCompletionFunc(fl.Name, f)
			}
		})
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// nameCompleter completes the names a list function returns.
type nameCompleter struct {
	c      *cli
	list   func(context.Context, controlv1.ControlClient, string) ([]candidate, error)
	multi  bool
	suffix string
}

func (c *cli) completeNames(list func(context.Context, controlv1.ControlClient, string) ([]candidate, error)) nameCompleter {
	return nameCompleter{c: c, list: list}
}

// one completes a command's only argument; many, each of its arguments.
func (n nameCompleter) one() nameCompleter  { n.multi = false; return n }
func (n nameCompleter) many() nameCompleter { n.multi = true; return n }

// withSuffix completes "NAME<suffix>" with no space after, for arguments
// such as scale's SERVICE=REPLICAS.
func (n nameCompleter) withSuffix(s string) nameCompleter { n.suffix = s; return n }

func (n nameCompleter) complete(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	dir := cobra.ShellCompDirectiveNoFileComp
	if n.suffix != "" {
		dir |= cobra.ShellCompDirectiveNoSpace
	}
	if !n.multi && len(args) > 0 {
		return nil, dir
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, min(completionTimeout, n.c.timeout))
	defer cancel()
	client, closeConn, err := n.c.dial(ctx)
	if err != nil {
		return nil, dir
	}
	defer closeConn()
	cands, err := n.list(ctx, client, toComplete)
	if err != nil {
		return nil, dir
	}
	given := make([]string, len(args))
	for i, a := range args {
		given[i], _, _ = strings.Cut(a, "=")
	}
	var out []cobra.Completion
	for _, cd := range cands {
		if strings.HasPrefix(cd.name, toComplete) && !slices.Contains(given, cd.name) {
			out = append(out, cobra.CompletionWithDesc(cd.name+n.suffix, cd.desc))
		}
	}
	return out, dir
}

func listServiceNames(ctx context.Context, client controlv1.ControlClient, _ string) ([]candidate, error) {
	resp, err := client.ListServices(ctx, &controlv1.ListServicesRequest{})
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, s := range resp.GetServices() {
		out = append(out, candidate{s.GetSpec().GetAnnotations().GetName(), s.GetSpec().GetTask().GetContainer().GetImage()})
	}
	return out, nil
}

func listNodeNames(ctx context.Context, client controlv1.ControlClient, _ string) ([]candidate, error) {
	resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, n := range resp.GetNodes() {
		out = append(out, candidate{nodeName(n), fmt.Sprintf("%s, %s",
			enumName(n.GetRole().String(), "NODE_ROLE_"), enumName(n.GetStatus().GetState().String(), "NODE_STATE_"))})
	}
	return out, nil
}

func listNetworkNames(ctx context.Context, client controlv1.ControlClient, _ string) ([]candidate, error) {
	resp, err := client.ListNetworks(ctx, &controlv1.ListNetworksRequest{})
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, n := range resp.GetNetworks() {
		out = append(out, candidate{n.GetSpec().GetAnnotations().GetName(), n.GetSubnet()})
	}
	return out, nil
}

// listTaskIDs offers tasks by ID, the only way a command names a task,
// described by their name and state ("web.2 running").
func listTaskIDs(ctx context.Context, client controlv1.ControlClient, prefix string) ([]candidate, error) {
	resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, t := range resp.GetTasks() {
		if strings.HasPrefix(t.GetId(), prefix) {
			out = append(out, candidate{t.GetId(), taskTable{}.taskName(t) + " " + taskStateName(t.GetStatus().GetState())})
		}
	}
	return out, nil
}

// valueChoices are the values completion offers for a flag.
func (v *choiceValue) valueChoices() []string  { return v.choices }
func (v *enumValue[E]) valueChoices() []string { return v.choices() }
func (f *outputFormat) valueChoices() []string { return f.names }
