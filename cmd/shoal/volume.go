package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

func (c *cli) newVolumeCmd() *cobra.Command {
	return group("volume", "Manage the nodes' named volumes (mounts of type volume)",
		c.newVolumeLsCmd(),
		c.newVolumeRmCmd(),
	)
}

func (c *cli) newVolumeLsCmd() *cobra.Command {
	var (
		format outputFormat
		node   string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List the named volumes of every ready node, or of one",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.ListVolumes(ctx, &controlv1.ListVolumesRequest{Node: node})
				if err != nil {
					return err
				}
				// The nodes that did not answer go to stderr: the list is
				// of those that did.
				for _, e := range resp.GetErrors() {
					who := e.GetHostname()
					if who == "" {
						who = e.GetNodeId()
					}
					fmt.Fprintf(c.errOut, "warning: node %s: %s\n", who, e.GetError())
				}
				switch {
				case quiet:
					for _, v := range resp.GetVolumes() {
						fmt.Fprintln(c.out, v.GetName())
					}
					return nil
				case format.structured():
					return writeList(c.out, &format, resp.GetVolumes())
				}
				hosts := c.nodeHostnames(ctx, client)
				t := newTable(c.out)
				row(t, "NODE", "NAME", "TASKS")
				for _, v := range resp.GetVolumes() {
					name := hosts[v.GetNodeId()]
					if name == "" {
						name = shortID(v.GetNodeId(), false)
					}
					row(t, name, v.GetName(), strconv.Itoa(len(v.GetInUseBy())))
				}
				return t.Flush()
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	cmd.Flags().StringVar(&node, "node", "", "list this node's volumes only (ID, ID prefix or hostname)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	return cmd
}

// nodeHostnames maps node IDs to their hostnames, for tables; empty when
// the nodes cannot be listed (the table then shows IDs).
func (c *cli) nodeHostnames(ctx context.Context, client controlv1.ControlClient) map[string]string {
	out := map[string]string{}
	resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
	if err != nil {
		return out
	}
	for _, n := range resp.GetNodes() {
		out[n.GetId()] = n.GetDescription().GetHostname()
	}
	return out
}

func (c *cli) newVolumeRmCmd() *cobra.Command {
	var (
		format outputFormat
		node   string
	)
	cmd := &cobra.Command{
		Use:     "rm --node NODE NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove named volumes, and their data, from a node; refused while a task there mounts one",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			if node == "" {
				return errors.New("--node is required: volumes live on one node each")
			}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					removed []*controlv1.RemoveVolumeResponse
					errs    []error
				)
				for _, name := range names {
					resp, err := client.RemoveVolume(ctx, &controlv1.RemoveVolumeRequest{Node: node, Name: name})
					if err != nil {
						errs = append(errs, err)
						continue
					}
					if format.structured() {
						removed = append(removed, resp)
					} else {
						fmt.Fprintln(c.out, name)
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
	cmd.Flags().StringVar(&node, "node", "", "the node that holds the volumes (ID, ID prefix or hostname); required")
	return cmd
}
