package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func (c *cli) newClusterCmd() *cobra.Command {
	return group("cluster", "Manage the cluster",
		c.newClusterInspectCmd(),
		c.newClusterUpdateCmd(),
		c.newClusterBackupCmd(),
	)
}

func (c *cli) newClusterInspectCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show the cluster's settings, as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
				if err != nil {
					return err
				}
				return writeOne(c.out, &format, redactCluster(resp.GetCluster()))
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "json")
	return cmd
}

// redactCluster returns the cluster without its secrets. Join tokens admit
// nodes, and inspect output ends up in bug reports and logs: they are shown
// only by `shoal join-token`, which says what they are. The CA key never
// leaves the managers; it is cleared here too in case a server sends it.
func redactCluster(cl *objectv1.Cluster) *objectv1.Cluster {
	out := proto.CloneOf(cl)
	if ca := out.GetRootCa(); ca != nil {
		ca.KeyPem = nil
		ca.JoinTokens = nil
	}
	return out
}

func (c *cli) newClusterUpdateCmd() *cobra.Command {
	var (
		heartbeat   time.Duration
		certExpiry  time.Duration
		taskHistory int64
		bindRoots   []string
		format      outputFormat
	)
	cmd := &cobra.Command{
		Use:   "update [flags]",
		Short: "Change the cluster's settings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := cmd.Flags().Changed
			if !set("heartbeat-period") && !set("cert-expiry") && !set("task-history-limit") && !set("bind-mount-root") {
				return errors.New("nothing to update: give --heartbeat-period, --cert-expiry, --task-history-limit or --bind-mount-root")
			}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var updated *objectv1.Cluster
				err := retryConflicts(func() error {
					got, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
					if err != nil {
						return err
					}
					cl := got.GetCluster()
					spec := proto.CloneOf(cl.GetSpec())
					if spec == nil {
						spec = &objectv1.ClusterSpec{}
					}
					if set("heartbeat-period") {
						if spec.Dispatcher == nil {
							spec.Dispatcher = &objectv1.DispatcherConfig{}
						}
						spec.Dispatcher.HeartbeatPeriod = durationpb.New(heartbeat)
					}
					if set("cert-expiry") {
						if spec.Ca == nil {
							spec.Ca = &objectv1.CAConfig{}
						}
						spec.Ca.NodeCertExpiry = durationpb.New(certExpiry)
					}
					if set("task-history-limit") {
						if spec.Orchestration == nil {
							spec.Orchestration = &objectv1.OrchestrationConfig{}
						}
						spec.Orchestration.TaskHistoryRetention = taskHistory
					}
					if set("bind-mount-root") {
						// The flags give the whole list; one empty value
						// clears it (any path allowed).
						spec.BindMountRoots = slices.DeleteFunc(slices.Clone(bindRoots), func(r string) bool { return r == "" })
					}
					resp, err := client.UpdateCluster(ctx, &controlv1.UpdateClusterRequest{
						Version: cl.GetMeta().GetVersion(),
						Spec:    spec,
					})
					updated = resp.GetCluster()
					return err
				})
				if err != nil {
					return err
				}
				if format.structured() {
					return writeOne(c.out, &format, redactCluster(updated))
				}
				fmt.Fprintln(c.out, "Cluster updated.")
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&heartbeat, "heartbeat-period", 0, "how often workers ping the leader")
	fs.DurationVar(&certExpiry, "cert-expiry", 0, "lifetime of node certificates")
	fs.Int64Var(&taskHistory, "task-history-limit", 0, "dead tasks kept per slot")
	fs.StringArrayVar(&bindRoots, "bind-mount-root", nil, "allow bind mounts only from under the node path `PATH`; repeat for several; the list replaces the current one (\"\" alone: any path)")
	addOutputFlag(fs, &format, "")
	return cmd
}
