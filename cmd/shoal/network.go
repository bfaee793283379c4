package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func (c *cli) newNetworkCmd() *cobra.Command {
	return group("network", "Manage networks",
		c.newNetworkCreateCmd(),
		c.newNetworkLsCmd(),
		c.newNetworkInspectCmd(),
		c.newNetworkRmCmd(),
	)
}

func (c *cli) newNetworkCreateCmd() *cobra.Command {
	var (
		subnet   string
		nodeBits uint32
		labels   []string
		format   outputFormat
	)
	cmd := &cobra.Command{
		Use:   "create [flags] NAME",
		Short: "Create a network that services' tasks join, across nodes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := &objectv1.NetworkSpec{
				Annotations:   &objectv1.Annotations{Name: args[0], Labels: applyLabels(nil, nil, labels)},
				Subnet:        subnet,
				NodePrefixLen: nodeBits,
			}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: spec})
				if err != nil {
					return err
				}
				if format.structured() {
					return writeOne(c.out, &format, resp.GetNetwork())
				}
				fmt.Fprintln(c.out, resp.GetNetwork().GetId())
				return nil
			})
		},
	}
	fs := cmd.Flags()
	addOutputFlag(fs, &format, "")
	fs.StringVar(&subnet, "subnet", "", "IPv4 subnet in `CIDR` form (default: one from the IPAM plugin's pool)")
	fs.Uint32Var(&nodeBits, "node-prefix-len", 0, "prefix length of each node's slice of the subnet (default 24)")
	fs.VarP(&kvValue{target: &labels, optionalValue: true}, "label", "l", "network label")
	return cmd
}

func (c *cli) newNetworkLsCmd() *cobra.Command {
	var (
		format outputFormat
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.ListNetworks(ctx, &controlv1.ListNetworksRequest{})
				if err != nil {
					return err
				}
				switch {
				case quiet:
					for _, n := range resp.GetNetworks() {
						fmt.Fprintln(c.out, n.GetId())
					}
					return nil
				case format.structured():
					return writeList(c.out, &format, resp.GetNetworks())
				}
				return writeNetworkTable(c.out, resp.GetNetworks())
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print IDs only")
	return cmd
}

// writeNetworkTable lists networks: a subnet not yet allocated shows as
// "pending".
func writeNetworkTable(w io.Writer, nets []*objectv1.Network) error {
	t := newTable(w)
	row(t, "ID", "NAME", "SUBNET", "NODE SLICES", "NODES")
	for _, n := range nets {
		subnet, slices := n.GetSubnet(), "/"+strconv.Itoa(int(n.GetNodePrefixLen()))
		if subnet == "" {
			subnet, slices = "pending", "-"
		}
		row(t, shortID(n.GetId(), false), n.GetSpec().GetAnnotations().GetName(), subnet, slices, strconv.Itoa(len(n.GetNodeSubnets())))
	}
	return t.Flush()
}

func (c *cli) newNetworkInspectCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:   "inspect NETWORK...",
		Short: "Show networks in detail, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					found []*objectv1.Network
					errs  []error
				)
				for _, ref := range refs {
					resp, err := client.GetNetwork(ctx, &controlv1.GetNetworkRequest{Ref: ref})
					if err != nil {
						errs = append(errs, err)
						continue
					}
					found = append(found, resp.GetNetwork())
				}
				if err := writeList(c.out, &format, found); err != nil {
					return err
				}
				return errors.Join(errs...)
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "json")
	return cmd
}

func (c *cli) newNetworkRmCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove networks that no service uses",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					removed []*objectv1.Network
					errs    []error
				)
				for _, ref := range refs {
					// For --format, the network as it was: read it, then
					// remove that one by ID.
					id := ref
					var nw *objectv1.Network
					if format.structured() {
						got, err := client.GetNetwork(ctx, &controlv1.GetNetworkRequest{Ref: ref})
						if err != nil {
							errs = append(errs, err)
							continue
						}
						nw, id = got.GetNetwork(), got.GetNetwork().GetId()
					}
					if _, err := client.RemoveNetwork(ctx, &controlv1.RemoveNetworkRequest{Ref: id}); err != nil {
						errs = append(errs, err)
						continue
					}
					if nw != nil {
						removed = append(removed, nw)
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
