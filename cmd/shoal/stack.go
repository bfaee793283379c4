package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/internal/stack"
	"github.com/shoalhq/shoal/kernel/controlapi"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// labelStackSpec holds a digest of the spec a stack deploy last gave a
// service: a redeploy whose spec for it is the same leaves the service
// alone (its tasks are not restarted), whatever the server filled in.
const labelStackSpec = "shoal.stack.spec"

func (c *cli) newStackCmd() *cobra.Command {
	return group("stack", "Deploy and manage applications from compose files",
		c.newStackDeployCmd(),
		c.newStackLsCmd(),
		c.newStackServicesCmd(),
		c.newStackPsCmd(),
		c.newStackRmCmd(),
	)
}

func (c *cli) newStackDeployCmd() *cobra.Command {
	var (
		files  []string
		prune  bool
		format outputFormat
	)
	cmd := &cobra.Command{
		Use:   "deploy [flags] -c FILE [-c FILE...] NAME",
		Short: "Deploy or update a stack from compose files",
		Long: `Deploy or update a stack from compose files.

The stack's services, networks, secrets and configs are named NAME_x and
labelled shoal.stack=NAME. Deploying again updates only the services whose
spec changed (the others keep their tasks); --prune removes the stack's
services the files no longer declare. Keys of the compose file that shoal
does not support are named in warnings and ignored.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(files) == 0 {
				return errors.New("--compose-file (-c) is required")
			}
			env := map[string]string{}
			for _, kv := range os.Environ() {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
			plan, err := stack.Load(cmd.Context(), stack.Options{Files: files, Name: args[0], Env: env})
			if err != nil {
				return err
			}
			for _, w := range plan.Warnings {
				fmt.Fprintln(c.errOut, "warning:", w)
			}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				d := &stackDeploy{c: c, client: client, plan: plan, file: strings.Join(files, ", "), prune: prune, log: c.out}
				if format.structured() {
					d.log = io.Discard
				}
				if err := d.run(ctx); err != nil {
					return err
				}
				if format.structured() {
					return writeOne(c.out, &format, d.result)
				}
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVarP(&files, "compose-file", "c", nil, "compose `FILE`; repeat to merge several, later ones overriding")
	fs.BoolVar(&prune, "prune", false, "remove the stack's services the files no longer declare")
	addOutputFlag(fs, &format, "")
	return cmd
}

// stackResult is what stack deploy --format prints: the objects, by
// what was done to each.
type stackResult struct {
	Created   []string `json:"created"`
	Updated   []string `json:"updated"`
	Unchanged []string `json:"unchanged"`
	Removed   []string `json:"removed"`
	Warnings  []string `json:"warnings"`
}

type stackDeploy struct {
	c      *cli
	client controlv1.ControlClient
	plan   *stack.Plan
	file   string
	prune  bool
	log    io.Writer
	result stackResult
}

func (d *stackDeploy) run(ctx context.Context) error {
	d.result.Warnings = d.plan.Warnings
	if err := d.check(ctx); err != nil {
		return err
	}
	for _, n := range d.plan.Networks {
		if err := d.network(ctx, n); err != nil {
			return err
		}
	}
	for _, s := range d.plan.Secrets {
		resp, err := d.client.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: s.Spec, SameOk: true})
		if err != nil {
			return fmt.Errorf("%s: secret %s: %w", d.file, s.Spec.GetAnnotations().GetName(), err)
		}
		d.done("secret", s.Spec.GetAnnotations().GetName(), resp.GetExisted(), false)
	}
	for _, s := range d.plan.Configs {
		resp, err := d.client.CreateConfig(ctx, &controlv1.CreateConfigRequest{Spec: s.Spec, SameOk: true})
		if err != nil {
			return fmt.Errorf("%s: config %s: %w", d.file, s.Spec.GetAnnotations().GetName(), err)
		}
		d.done("config", s.Spec.GetAnnotations().GetName(), resp.GetExisted(), false)
	}
	for _, spec := range d.plan.Services {
		if err := d.service(ctx, spec); err != nil {
			return err
		}
	}
	if d.prune {
		return d.pruneServices(ctx)
	}
	return nil
}

// check refuses, before anything is created, what the cluster would
// refuse of the plan: a bad spec, an external object that does not exist,
// a bind mount outside the cluster's roots, a service of another owner.
// So a bad file stores nothing.
func (d *stackDeploy) check(ctx context.Context) error {
	var errs []error
	svcErr := func(spec *objectv1.ServiceSpec, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: service %q: %s", d.file, stackShortName(d.plan.Name, spec.GetAnnotations().GetName()), fmt.Sprintf(format, a...)))
	}
	for _, n := range d.plan.Networks {
		if err := controlapi.ValidateNetworkSpec(n); err != nil {
			errs = append(errs, fmt.Errorf("%s: network %s: %w", d.file, n.GetAnnotations().GetName(), err))
		}
	}
	for _, s := range d.plan.Secrets {
		if err := controlapi.ValidateSecretSpec(s.Spec); err != nil {
			errs = append(errs, fmt.Errorf("%s: secret %s (%s): %w", d.file, s.Spec.GetAnnotations().GetName(), s.Source, err))
		}
	}
	for _, s := range d.plan.Configs {
		if err := controlapi.ValidateConfigSpec(s.Spec); err != nil {
			errs = append(errs, fmt.Errorf("%s: config %s (%s): %w", d.file, s.Spec.GetAnnotations().GetName(), s.Source, err))
		}
	}
	cl, err := d.client.GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		return err
	}
	roots := cl.GetCluster().GetSpec().GetBindMountRoots()
	missing := func(kind string, names []string, get func(string) error) map[string]bool {
		out := map[string]bool{}
		for _, n := range names {
			if err := get(n); errors.Is(sdk.FromGRPC(err), sdk.ErrNotFound) {
				out[n] = true
			} else if err != nil {
				errs = append(errs, fmt.Errorf("%s: external %s %s: %w", d.file, kind, n, err))
			}
		}
		return out
	}
	noSecret := missing("secret", d.plan.ExternalSecrets, func(n string) error {
		_, err := d.client.GetSecret(ctx, &controlv1.GetSecretRequest{Ref: n})
		return err
	})
	noConfig := missing("config", d.plan.ExternalConfigs, func(n string) error {
		_, err := d.client.GetConfig(ctx, &controlv1.GetConfigRequest{Ref: n})
		return err
	})
	noNetwork := missing("network", d.plan.ExternalNetworks, func(n string) error {
		_, err := d.client.GetNetwork(ctx, &controlv1.GetNetworkRequest{Ref: n})
		return err
	})
	for _, spec := range d.plan.Services {
		s := proto.CloneOf(spec)
		controlapi.ApplyServiceDefaults(s)
		if err := controlapi.ValidateServiceSpec(s); err != nil {
			svcErr(spec, "%v", err)
		}
		c := spec.GetTask().GetContainer()
		for i, r := range c.GetSecrets() {
			if noSecret[r.GetName()] {
				svcErr(spec, "secrets[%d]: external secret %s does not exist (shoal secret create %s FILE)", i, r.GetName(), r.GetName())
			}
		}
		for i, r := range c.GetConfigs() {
			if noConfig[r.GetName()] {
				svcErr(spec, "configs[%d]: external config %s does not exist (shoal config create %s FILE)", i, r.GetName(), r.GetName())
			}
		}
		for i, n := range spec.GetTask().GetNetworks() {
			if noNetwork[n.GetTarget()] {
				svcErr(spec, "networks[%d]: external network %s does not exist (shoal network create %s)", i, n.GetTarget(), n.GetTarget())
			}
		}
		for i, m := range c.GetMounts() {
			if len(roots) == 0 || (m.GetType() != objectv1.MountType_MOUNT_TYPE_BIND && m.GetType() != objectv1.MountType_MOUNT_TYPE_UNSPECIFIED) {
				continue
			}
			if !slices.ContainsFunc(roots, func(r string) bool { return underPath(m.GetSource(), r) }) {
				svcErr(spec, "volumes[%d]: bind mount source %s is outside the paths this cluster allows bind mounts from (%s)", i, m.GetSource(), strings.Join(roots, ", "))
			}
		}
		got, err := d.client.GetService(ctx, &controlv1.GetServiceRequest{Ref: spec.GetAnnotations().GetName()})
		if err == nil && got.GetService().GetSpec().GetAnnotations().GetName() == spec.GetAnnotations().GetName() &&
			got.GetService().GetSpec().GetAnnotations().GetLabels()[stack.LabelNamespace] != d.plan.Name {
			svcErr(spec, "a service named %s exists and is not part of stack %s", spec.GetAnnotations().GetName(), d.plan.Name)
		}
	}
	return errors.Join(errs...)
}

func underPath(p, root string) bool {
	p = path.Clean(p)
	return root == "/" || p == root || strings.HasPrefix(p, root+"/")
}

// stackShortName is a stack object's name without the stack's prefix.
func stackShortName(stackName, full string) string {
	return strings.TrimPrefix(full, stackName+"_")
}

func (d *stackDeploy) done(kind, name string, existed, updated bool) {
	switch {
	case updated:
		fmt.Fprintf(d.log, "Updating %s %s\n", kind, name)
		d.result.Updated = append(d.result.Updated, kind+" "+name)
	case existed:
		fmt.Fprintf(d.log, "%s %s is unchanged\n", strings.ToUpper(kind[:1])+kind[1:], name)
		d.result.Unchanged = append(d.result.Unchanged, kind+" "+name)
	default:
		fmt.Fprintf(d.log, "Creating %s %s\n", kind, name)
		d.result.Created = append(d.result.Created, kind+" "+name)
	}
}

func (d *stackDeploy) network(ctx context.Context, spec *objectv1.NetworkSpec) error {
	name := spec.GetAnnotations().GetName()
	got, err := d.client.GetNetwork(ctx, &controlv1.GetNetworkRequest{Ref: name})
	switch {
	case err == nil && got.GetNetwork().GetSpec().GetAnnotations().GetName() == name:
		if got.GetNetwork().GetSpec().GetAnnotations().GetLabels()[stack.LabelNamespace] != d.plan.Name {
			return fmt.Errorf("%s: network %s exists and is not part of stack %s (declare it external)", d.file, name, d.plan.Name)
		}
		// Networks do not change once made; one whose subnet the file
		// changed must be removed (stack rm) to take the new one.
		if s := spec.GetSubnet(); s != "" && s != got.GetNetwork().GetSpec().GetSubnet() {
			fmt.Fprintf(d.c.errOut, "warning: network %s keeps its subnet %s: a network's subnet cannot change (stack rm, then deploy, to take %s)\n", name, got.GetNetwork().GetSubnet(), s)
		}
		d.done("network", name, true, false)
		return nil
	case err != nil && !errors.Is(sdk.FromGRPC(err), sdk.ErrNotFound):
		return err
	}
	if _, err := d.client.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: spec}); err != nil {
		return fmt.Errorf("%s: network %s: %w", d.file, name, err)
	}
	d.done("network", name, false, false)
	return nil
}

// specDigest identifies what a deploy asked of a service: the plan's
// spec, deterministic (stack.Load sorts everything), without the digest
// label itself.
func specDigest(spec *objectv1.ServiceSpec) string {
	s := proto.CloneOf(spec)
	delete(s.GetAnnotations().GetLabels(), labelStackSpec)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func (d *stackDeploy) service(ctx context.Context, planned *objectv1.ServiceSpec) error {
	spec := proto.CloneOf(planned)
	if spec.Annotations.Labels == nil {
		spec.Annotations.Labels = map[string]string{}
	}
	digest := specDigest(spec)
	spec.Annotations.Labels[labelStackSpec] = digest
	name := spec.GetAnnotations().GetName()
	err := retryConflicts(func() error {
		got, err := d.client.GetService(ctx, &controlv1.GetServiceRequest{Ref: name})
		if errors.Is(sdk.FromGRPC(err), sdk.ErrNotFound) || (err == nil && got.GetService().GetSpec().GetAnnotations().GetName() != name) {
			if _, err := d.client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec}); err != nil {
				return err
			}
			d.done("service", name, false, false)
			return nil
		}
		if err != nil {
			return err
		}
		cur := got.GetService()
		if cur.GetSpec().GetAnnotations().GetLabels()[labelStackSpec] == digest {
			d.done("service", name, true, false)
			return nil
		}
		if _, err := d.client.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: cur.GetId(), Version: cur.GetMeta().GetVersion(), Spec: spec}); err != nil {
			return err
		}
		d.done("service", name, true, true)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: service %q: %w", d.file, stackShortName(d.plan.Name, name), err)
	}
	return nil
}

func (d *stackDeploy) pruneServices(ctx context.Context) error {
	resp, err := d.client.ListServices(ctx, &controlv1.ListServicesRequest{LabelSelector: map[string]string{stack.LabelNamespace: d.plan.Name}})
	if err != nil {
		return err
	}
	for _, svc := range resp.GetServices() {
		name := svc.GetSpec().GetAnnotations().GetName()
		if slices.ContainsFunc(d.plan.Services, func(s *objectv1.ServiceSpec) bool { return s.GetAnnotations().GetName() == name }) {
			continue
		}
		if _, err := d.client.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: svc.GetId()}); err != nil {
			return fmt.Errorf("prune service %s: %w", name, err)
		}
		fmt.Fprintf(d.log, "Removing service %s\n", name)
		d.result.Removed = append(d.result.Removed, "service "+name)
	}
	return nil
}

func stackSelector(name string) map[string]string {
	return map[string]string{stack.LabelNamespace: name}
}

func (c *cli) newStackLsCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List stacks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.ListServices(ctx, &controlv1.ListServicesRequest{})
				if err != nil {
					return err
				}
				counts := map[string]int{}
				for _, s := range resp.GetServices() {
					if n, ok := s.GetSpec().GetAnnotations().GetLabels()[stack.LabelNamespace]; ok {
						counts[n]++
					}
				}
				type stackRow struct {
					Name     string `json:"name"`
					Services int    `json:"services"`
				}
				var rows []stackRow
				for _, n := range slices.Sorted(maps.Keys(counts)) {
					rows = append(rows, stackRow{n, counts[n]})
				}
				if format.structured() {
					return writeList(c.out, &format, rows)
				}
				t := newTable(c.out)
				row(t, "NAME", "SERVICES")
				for _, r := range rows {
					row(t, r.Name, fmt.Sprint(r.Services))
				}
				return t.Flush()
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	return cmd
}

func (c *cli) newStackServicesCmd() *cobra.Command {
	var (
		format outputFormat
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:   "services [flags] NAME",
		Short: "List a stack's services",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.ListServices(ctx, &controlv1.ListServicesRequest{LabelSelector: stackSelector(args[0])})
				if err != nil {
					return err
				}
				if len(resp.GetServices()) == 0 {
					return fmt.Errorf("nothing found in stack %s: %w", args[0], sdk.ErrNotFound)
				}
				switch {
				case quiet:
					for _, s := range resp.GetServices() {
						fmt.Fprintln(c.out, s.GetId())
					}
					return nil
				case format.structured():
					return writeList(c.out, &format, resp.GetServices())
				}
				completed, err := jobCompletions(ctx, client, resp.GetServices())
				if err != nil {
					return err
				}
				rows := make([]serviceRow, len(resp.GetServices()))
				for i, s := range resp.GetServices() {
					rows[i] = serviceRow{svc: s, running: resp.GetRunning()[s.GetId()], desired: desiredTasks(s, resp.GetDesired()), completed: completed[s.GetId()]}
				}
				return writeServiceTable(c.out, rows)
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print IDs only")
	return cmd
}

func (c *cli) newStackPsCmd() *cobra.Command {
	var (
		format  outputFormat
		quiet   bool
		noTrunc bool
		filters []string
	)
	cmd := &cobra.Command{
		Use:   "ps [flags] NAME",
		Short: "List the tasks of a stack's services",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			desired, err := parseTaskFilters(filters)
			if err != nil {
				return err
			}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				svcs, err := client.ListServices(ctx, &controlv1.ListServicesRequest{LabelSelector: stackSelector(args[0])})
				if err != nil {
					return err
				}
				if len(svcs.GetServices()) == 0 {
					return fmt.Errorf("nothing found in stack %s: %w", args[0], sdk.ErrNotFound)
				}
				req := &controlv1.ListTasksRequest{DesiredStates: desired}
				for _, s := range svcs.GetServices() {
					req.ServiceIds = append(req.ServiceIds, s.GetId())
				}
				resp, err := client.ListTasks(ctx, req)
				if err != nil {
					return err
				}
				switch {
				case quiet:
					for _, t := range resp.GetTasks() {
						fmt.Fprintln(c.out, t.GetId())
					}
					return nil
				case format.structured():
					return writeList(c.out, &format, resp.GetTasks())
				}
				nodes, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
				if err != nil {
					return err
				}
				names := make(map[string]string, len(nodes.GetNodes()))
				for _, n := range nodes.GetNodes() {
					names[n.GetId()] = nodeName(n)
				}
				return taskTable{nodes: names, now: c.now(), noTrunc: noTrunc}.write(c.out, resp.GetTasks())
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print task IDs only")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate IDs and errors")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter tasks by `desired-state=STATE`")
	return cmd
}

// networkRemoveWait bounds how long stack rm waits for a network's tasks
// to stop (their addresses are released when they have) before it gives up
// on the network; the services are gone by then.
const networkRemoveWait = 60 * time.Second

func (c *cli) newStackRmCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:     "rm [flags] NAME...",
		Aliases: []string{"remove", "down"},
		Short:   "Remove stacks: their services, networks, secrets and configs",
		Long: `Remove stacks: their services, networks, secrets and configs.

Named volumes stay on the nodes that made them, as in docker; remove them
with shoal volume rm.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					removed []string
					errs    []error
				)
				log := c.out
				if format.structured() {
					log = io.Discard
				}
				for _, name := range names {
					r, err := removeStack(ctx, client, name, log)
					removed = append(removed, r...)
					if err != nil {
						errs = append(errs, err)
					}
				}
				if format.structured() {
					if err := writeList(c.out, &format, removed); err != nil {
						return err
					}
				}
				return errors.Join(errs...)
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

// removeStack removes a stack's services first, then what they used: its
// networks once their tasks have stopped, its secrets and configs.
func removeStack(ctx context.Context, client controlv1.ControlClient, name string, log io.Writer) ([]string, error) {
	sel := stackSelector(name)
	svcs, err := client.ListServices(ctx, &controlv1.ListServicesRequest{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	nets, err := client.ListNetworks(ctx, &controlv1.ListNetworksRequest{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	secs, err := client.ListSecrets(ctx, &controlv1.ListSecretsRequest{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	cfgs, err := client.ListConfigs(ctx, &controlv1.ListConfigsRequest{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	if len(svcs.GetServices())+len(nets.GetNetworks())+len(secs.GetSecrets())+len(cfgs.GetConfigs()) == 0 {
		return nil, fmt.Errorf("nothing found in stack %s: %w", name, sdk.ErrNotFound)
	}
	var (
		removed []string
		errs    []error
	)
	rm := func(kind, objName string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", kind, objName, err))
			return
		}
		fmt.Fprintf(log, "Removing %s %s\n", kind, objName)
		removed = append(removed, kind+" "+objName)
	}
	for _, s := range svcs.GetServices() {
		_, err := client.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: s.GetId()})
		rm("service", s.GetSpec().GetAnnotations().GetName(), err)
	}
	for _, s := range secs.GetSecrets() {
		_, err := retryInUse(ctx, func() error {
			_, err := client.RemoveSecret(ctx, &controlv1.RemoveSecretRequest{Ref: s.GetId()})
			return err
		})
		rm("secret", s.GetSpec().GetAnnotations().GetName(), err)
	}
	for _, s := range cfgs.GetConfigs() {
		_, err := retryInUse(ctx, func() error {
			_, err := client.RemoveConfig(ctx, &controlv1.RemoveConfigRequest{Ref: s.GetId()})
			return err
		})
		rm("config", s.GetSpec().GetAnnotations().GetName(), err)
	}
	for _, n := range nets.GetNetworks() {
		_, err := retryInUse(ctx, func() error {
			_, err := client.RemoveNetwork(ctx, &controlv1.RemoveNetworkRequest{Ref: n.GetId()})
			return err
		})
		rm("network", n.GetSpec().GetAnnotations().GetName(), err)
	}
	return removed, errors.Join(errs...)
}

// retryInUse retries fn while it fails because tasks still use the object
// (their services were just removed; they are stopping), for at most
// networkRemoveWait.
func retryInUse(ctx context.Context, fn func() error) (bool, error) {
	deadline := time.Now().Add(networkRemoveWait)
	for {
		err := fn()
		if err == nil || !errors.Is(sdk.FromGRPC(err), sdk.ErrFailedPrecondition) || time.Now().After(deadline) {
			return err == nil, err
		}
		select {
		case <-ctx.Done():
			return false, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
