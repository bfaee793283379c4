package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// joinToken is what `shoal join-token --format json` prints.
type joinToken struct {
	Role  string `json:"role"`
	Token string `json:"token"`
	// Addrs are the managers' API addresses, the [join] addrs.
	Addrs   []string `json:"addrs"`
	Rotated bool     `json:"rotated"`
}

func (c *cli) newJoinTokenCmd() *cobra.Command {
	var (
		rotate, quiet bool
		format        outputFormat
	)
	cmd := &cobra.Command{
		Use:       "join-token [flags] worker|manager",
		Short:     "Show or rotate the token nodes join with",
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"worker", "manager"},
		RunE: func(cmd *cobra.Command, args []string) error {
			role := args[0]
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				cl, err := joinTokenCluster(ctx, client, role, rotate)
				if err != nil {
					return err
				}
				if rotate && !quiet && !format.structured() {
					fmt.Fprintf(c.out, "Successfully rotated %s join token.\n\n", role)
				}
				token := cl.GetRootCa().GetJoinTokens().GetWorker()
				if role == "manager" {
					token = cl.GetRootCa().GetJoinTokens().GetManager()
				}
				if token == "" {
					return fmt.Errorf("the cluster has no %s join token", role)
				}
				if quiet {
					fmt.Fprintln(c.out, token)
					return nil
				}
				addrs, err := managerAddrs(ctx, client)
				if err != nil {
					return err
				}
				if format.structured() {
					return writeOne(c.out, &format, joinToken{Role: role, Token: token, Addrs: addrs, Rotated: rotate})
				}
				fmt.Fprintf(c.out, "To add a %s to this cluster, use this config on the new node:\n\n", role)
				fmt.Fprint(c.out, joinConfig(addrs, token))
				fmt.Fprintln(c.out)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the token; nodes that already joined are not affected")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the token only")
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

// joinTokenCluster returns the cluster, after rotating the role's token if
// asked.
func joinTokenCluster(ctx context.Context, client controlv1.ControlClient, role string, rotate bool) (*objectv1.Cluster, error) {
	if !rotate {
		resp, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
		return resp.GetCluster(), err
	}
	var cl *objectv1.Cluster
	err := retryConflicts(func() error {
		got, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
		if err != nil {
			return err
		}
		resp, err := client.UpdateCluster(ctx, &controlv1.UpdateClusterRequest{
			Version:            got.GetCluster().GetMeta().GetVersion(),
			RotateWorkerToken:  role == "worker",
			RotateManagerToken: role == "manager",
		})
		cl = resp.GetCluster()
		return err
	})
	return cl, err
}

// managerAddrs returns the API addresses of the managers, which a joining
// node may dial.
func managerAddrs(ctx context.Context, client controlv1.ControlClient) ([]string, error) {
	resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{
		Roles: []objectv1.NodeRole{objectv1.NodeRole_NODE_ROLE_MANAGER},
	})
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, n := range resp.GetNodes() {
		if a := n.GetManagerStatus().GetApiAddr(); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no manager has an API address to join")
	}
	return addrs, nil
}

// joinConfig is the [join] table of a node's TOML config.
func joinConfig(addrs []string, token string) string {
	quoted := make([]string, len(addrs))
	for i, a := range addrs {
		quoted[i] = tomlString(a)
	}
	return fmt.Sprintf("[join]\naddrs = [%s]\ntoken = %s\n", strings.Join(quoted, ", "), tomlString(token))
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
