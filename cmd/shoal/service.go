package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func (c *cli) newServiceCmd() *cobra.Command {
	return group("service", "Manage services",
		c.newServiceCreateCmd(),
		c.newServiceLsCmd(),
		c.newServiceInspectCmd(),
		c.newServicePsCmd(),
		c.newServiceLogsCmd(),
		c.newServiceScaleCmd(),
		c.newServiceUpdateCmd(),
		c.newServiceRollbackCmd(),
		c.newServiceRmCmd(),
	)
}

func (c *cli) newServiceCreateCmd() *cobra.Command {
	var (
		f      serviceFlags
		format outputFormat
	)
	cmd := &cobra.Command{
		Use:   "create [flags] IMAGE [ARG...]",
		Short: "Create a service",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := &objectv1.ServiceSpec{}
			container := containerOf(spec)
			container.Image = args[0]
			if len(args) > 1 {
				container.Args = args[1:]
			}
			if err := f.apply(cmd.Flags(), spec); err != nil {
				return err
			}
			return c.callWaiting(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
				if err != nil {
					return err
				}
				if format.structured() {
					err = writeOne(c.out, &format, resp.GetService())
				} else {
					fmt.Fprintln(c.out, resp.GetService().GetId())
				}
				if err != nil || f.detach {
					return err
				}
				return c.waitConverged(ctx, client, resp.GetService(), c.progress(&format))
			})
		},
	}
	// Flags after IMAGE belong to the container's command.
	cmd.Flags().SetInterspersed(false)
	f.addCreate(cmd.Flags())
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

func (c *cli) newServiceLsCmd() *cobra.Command {
	var (
		format outputFormat
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List services",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.ListServices(ctx, &controlv1.ListServicesRequest{})
				if err != nil {
					return err
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
					rows[i] = serviceRow{svc: s, running: resp.GetRunning()[s.GetId()], desired: desiredTasks(s, resp.GetDesired()),
						completed: completed[s.GetId()]}
				}
				return writeServiceTable(c.out, rows)
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print IDs only")
	return cmd
}

// desiredTasks is the REPLICAS column's desired count: a replicated
// service's replicas, whatever its tasks (a task that ended and is not
// replaced yet still counts: 0/1, not 0/0); for a global service, its tasks
// desired running, which the server counts.
func desiredTasks(svc *objectv1.Service, desired map[string]int64) int64 {
	if r := svc.GetSpec().GetReplicated(); r != nil {
		return r.GetReplicas()
	}
	return desired[svc.GetId()]
}

func (c *cli) newServiceInspectCmd() *cobra.Command {
	var (
		pretty bool
		format outputFormat
	)
	cmd := &cobra.Command{
		Use:   "inspect [flags] SERVICE...",
		Short: "Show services in detail, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			if pretty && cmd.Flags().Changed("format") && !format.is("pretty") {
				return errors.New("--pretty and --format: give one")
			}
			if pretty {
				format.name = "pretty"
			}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					found []*objectv1.Service
					errs  []error
				)
				for _, ref := range refs {
					resp, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: ref})
					if err != nil {
						errs = append(errs, err)
						continue
					}
					found = append(found, resp.GetService())
				}
				if !format.is("pretty") {
					if err := writeList(c.out, &format, found); err != nil {
						return err
					}
					return errors.Join(errs...)
				}
				for i, s := range found {
					if i > 0 {
						fmt.Fprintln(c.out)
					}
					if err := writeServicePretty(c.out, s); err != nil {
						return err
					}
					if err := writeRollbackPretty(c.out, s); err != nil {
						return err
					}
				}
				return errors.Join(errs...)
			})
		},
	}
	cmd.Flags().BoolVar(&pretty, "pretty", false, "print for people instead of JSON (--format pretty)")
	addOutputFlag(cmd.Flags(), &format, "json", "pretty")
	return cmd
}

func (c *cli) newServicePsCmd() *cobra.Command {
	var (
		format  outputFormat
		quiet   bool
		noTrunc bool
		filters []string
	)
	cmd := &cobra.Command{
		Use:   "ps [flags] SERVICE...",
		Short: "List the tasks of services",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			desired, err := parseTaskFilters(filters)
			if err != nil {
				return err
			}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				req := &controlv1.ListTasksRequest{DesiredStates: desired}
				var errs []error
				for _, ref := range refs {
					resp, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: ref})
					if err != nil {
						errs = append(errs, err)
						continue
					}
					req.ServiceIds = append(req.ServiceIds, resp.GetService().GetId())
				}
				if len(errs) > 0 {
					return errors.Join(errs...)
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

// parseTaskFilters parses the --filter values of service ps.
func parseTaskFilters(filters []string) ([]objectv1.TaskState, error) {
	var states []objectv1.TaskState
	for _, f := range filters {
		key, value, _ := strings.Cut(f, "=")
		if key != "desired-state" {
			return nil, fmt.Errorf("--filter %q: unknown filter (want desired-state=STATE)", f)
		}
		var s objectv1.TaskState
		if err := newEnumValue(&s, "TASK_STATE_", objectv1.TaskState_name).Set(value); err != nil {
			return nil, fmt.Errorf("--filter %q: %w", f, err)
		}
		states = append(states, s)
	}
	return states, nil
}

func (c *cli) newServiceScaleCmd() *cobra.Command {
	var (
		detach bool
		format outputFormat
	)
	cmd := &cobra.Command{
		Use:   "scale SERVICE=REPLICAS...",
		Short: "Set the number of replicas of services",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			type scale struct {
				ref      string
				replicas int64
			}
			scales := make([]scale, len(args))
			for i, a := range args {
				ref, n, ok := strings.Cut(a, "=")
				replicas, err := strconv.ParseInt(n, 10, 64)
				if !ok || ref == "" || err != nil {
					return fmt.Errorf("invalid scale %q: want SERVICE=REPLICAS, e.g. web=3", a)
				}
				scales[i] = scale{ref, replicas}
			}
			return c.callWaiting(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				// Every service is scaled first, then waited for, as
				// docker does: one slow service does not hold the others'
				// change back.
				var (
					scaled, toWait []*objectv1.Service
					errs           []error
				)
				for _, s := range scales {
					svc, changed, err := updateService(ctx, client, s.ref, func(spec *objectv1.ServiceSpec) error {
						if spec.GetGlobal() != nil || isJob(spec) {
							return fmt.Errorf("%s: scale is only for replicated services (a replicated job: service update --replicas)", s.ref)
						}
						spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: s.replicas}}
						return nil
					})
					if err != nil {
						errs = append(errs, err)
						continue
					}
					scaled = append(scaled, svc)
					if changed {
						// Already at that scale, there is nothing to wait
						// for (its tasks may have ended for good).
						toWait = append(toWait, svc)
					}
					if !format.structured() {
						fmt.Fprintf(c.out, "%s scaled to %d\n", s.ref, s.replicas)
					}
				}
				if format.structured() {
					if err := writeList(c.out, &format, scaled); err != nil {
						return err
					}
				}
				if !detach {
					for _, svc := range toWait {
						if err := c.waitConverged(ctx, client, svc, c.progress(&format)); err != nil {
							errs = append(errs, err)
						}
					}
				}
				return errors.Join(errs...)
			})
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "exit at once instead of waiting for the services to converge")
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

func (c *cli) newServiceUpdateCmd() *cobra.Command {
	var (
		f      serviceFlags
		format outputFormat
	)
	cmd := &cobra.Command{
		Use:   "update [flags] SERVICE",
		Short: "Update a service, rolling its tasks over to the new spec",
		Long: `Update a service. A change to its tasks' spec replaces them in a rolling
update (--update-parallelism at a time, each batch watched for
--update-monitor); the command waits until the update has completed, showing
progress, and fails with the reason if the update pauses or rolls back.
--detach returns at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			return c.callWaiting(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				svc, changed, err := updateService(ctx, client, ref, func(spec *objectv1.ServiceSpec) error {
					return f.apply(cmd.Flags(), spec)
				})
				if err != nil {
					return err
				}
				switch {
				case format.structured():
					if err := writeOne(c.out, &format, svc); err != nil {
						return err
					}
				case !changed:
					fmt.Fprintf(c.out, "%s: no change\n", ref)
				default:
					fmt.Fprintln(c.out, ref)
				}
				if !changed || f.detach {
					return nil
				}
				return c.waitConverged(ctx, client, svc, c.progress(&format))
			})
		},
	}
	f.addUpdate(cmd.Flags())
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

// newServiceRollbackCmd is docker's `service rollback`: the service goes
// back to the spec it had before its last update (previous_spec), rolled
// out as an update is. Rolling back twice returns to the spec rolled back
// from, as in docker.
func (c *cli) newServiceRollbackCmd() *cobra.Command {
	var (
		detach bool
		format outputFormat
	)
	cmd := &cobra.Command{
		Use:   "rollback [flags] SERVICE",
		Short: "Revert a service to its spec before the last update",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			return c.callWaiting(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var svc *objectv1.Service
				err := retryConflicts(func() error {
					got, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: ref})
					if err != nil {
						return err
					}
					cur := got.GetService()
					prev := cur.GetPreviousSpec()
					if prev == nil {
						return fmt.Errorf("service %s has no previous spec to roll back to", ref)
					}
					resp, err := client.UpdateService(ctx, &controlv1.UpdateServiceRequest{
						Ref:     cur.GetId(),
						Version: cur.GetMeta().GetVersion(),
						Spec:    prev,
					})
					if err != nil {
						return err
					}
					svc = resp.GetService()
					return nil
				})
				if err != nil {
					return err
				}
				if format.structured() {
					if err := writeOne(c.out, &format, svc); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(c.out, ref)
				}
				if detach {
					return nil
				}
				return c.waitConverged(ctx, client, svc, c.progress(&format))
			})
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "exit at once instead of waiting for the rollback to complete")
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

func (c *cli) newServiceRmCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:     "rm SERVICE...",
		Aliases: []string{"remove"},
		Short:   "Remove services",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					removed []*objectv1.Service
					errs    []error
				)
				for _, ref := range refs {
					// For --format, the service as it was: read it, then
					// remove that one by ID.
					id := ref
					var svc *objectv1.Service
					if format.structured() {
						got, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: ref})
						if err != nil {
							errs = append(errs, err)
							continue
						}
						svc, id = got.GetService(), got.GetService().GetId()
					}
					if _, err := client.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: id}); err != nil {
						errs = append(errs, err)
						continue
					}
					if svc != nil {
						removed = append(removed, svc)
					} else {
						fmt.Fprintln(c.out, ref)
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

// updateService reads a service, lets change modify its spec, and writes the
// spec back with the version it read, re-reading on a version conflict. A
// change that leaves the spec as it is sends nothing: changed is false and
// svc is the service as read.
func updateService(ctx context.Context, client controlv1.ControlClient, ref string, change func(*objectv1.ServiceSpec) error) (svc *objectv1.Service, changed bool, err error) {
	err = retryConflicts(func() error {
		got, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: ref})
		if err != nil {
			return err
		}
		svc, changed = got.GetService(), false
		spec := proto.CloneOf(svc.GetSpec())
		if spec == nil {
			spec = &objectv1.ServiceSpec{}
		}
		if err := change(spec); err != nil {
			return err
		}
		if proto.Equal(spec, svc.GetSpec()) {
			return nil
		}
		resp, err := client.UpdateService(ctx, &controlv1.UpdateServiceRequest{
			Ref:     svc.GetId(),
			Version: svc.GetMeta().GetVersion(),
			Spec:    spec,
		})
		if err != nil {
			return err
		}
		svc, changed = resp.GetService(), true
		return nil
	})
	return svc, changed, err
}
