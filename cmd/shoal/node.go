package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func (c *cli) newNodeCmd() *cobra.Command {
	return group("node", "Manage nodes",
		c.newNodeLsCmd(),
		c.newNodeInspectCmd(),
		c.newNodeUpdateCmd(),
		c.newNodeRoleCmd("promote", objectv1.NodeRole_NODE_ROLE_MANAGER),
		c.newNodeRoleCmd("demote", objectv1.NodeRole_NODE_ROLE_WORKER),
		c.newNodeRmCmd(),
	)
}

func (c *cli) newNodeLsCmd() *cobra.Command {
	var (
		format outputFormat
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List nodes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
				if err != nil {
					return err
				}
				switch {
				case quiet:
					for _, n := range resp.GetNodes() {
						fmt.Fprintln(c.out, n.GetId())
					}
					return nil
				case format.structured():
					return writeList(c.out, &format, resp.GetNodes())
				}
				return writeNodeTable(c.out, resp.GetNodes(), resp.GetLeaderId())
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print IDs only")
	return cmd
}

func (c *cli) newNodeInspectCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:   "inspect NODE...",
		Short: "Show nodes in detail, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					found []*objectv1.Node
					errs  []error
				)
				for _, ref := range refs {
					resp, err := client.GetNode(ctx, &controlv1.GetNodeRequest{Ref: ref})
					if err != nil {
						errs = append(errs, err)
						continue
					}
					found = append(found, resp.GetNode())
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

func (c *cli) newNodeUpdateCmd() *cobra.Command {
	var (
		availability objectv1.NodeAvailability
		role         objectv1.NodeRole
		labelAdd     []string
		labelRm      []string
		format       outputFormat
	)
	cmd := &cobra.Command{
		Use:   "update [flags] NODE",
		Short: "Update a node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set := cmd.Flags().Changed
			if !set("availability") && !set("role") && !set("label-add") && !set("label-rm") {
				return errors.New("nothing to update: give --availability, --role, --label-add or --label-rm")
			}
			ref := args[0]
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				node, _, err := updateNode(ctx, client, ref, func(spec *objectv1.NodeSpec) {
					if set("availability") {
						spec.Availability = availability
					}
					if set("role") {
						spec.DesiredRole = role
					}
					if set("label-add") || set("label-rm") {
						if spec.Annotations == nil {
							spec.Annotations = &objectv1.Annotations{}
						}
						spec.Annotations.Labels = applyLabels(spec.Annotations.Labels, labelRm, labelAdd)
					}
				})
				if err != nil {
					return err
				}
				if format.structured() {
					return writeOne(c.out, &format, node)
				}
				fmt.Fprintln(c.out, ref)
				return nil
			})
		},
	}
	fs := cmd.Flags()
	addOutputFlag(fs, &format, "")
	fs.Var(newEnumValue(&availability, "NODE_AVAILABILITY_", objectv1.NodeAvailability_name),
		"availability", "whether the scheduler may use the node")
	fs.Var(newEnumValue(&role, "NODE_ROLE_", objectv1.NodeRole_name), "role", "role of the node")
	fs.Var(&kvValue{target: &labelAdd, optionalValue: true}, "label-add", "add or replace a node label")
	fs.StringArrayVar(&labelRm, "label-rm", nil, "remove a node label by `KEY`")
	return cmd
}

// newNodeRoleCmd returns node promote or node demote.
func (c *cli) newNodeRoleCmd(verb string, role objectv1.NodeRole) *cobra.Command {
	roleName := enumName(role.String(), "NODE_ROLE_")
	var format outputFormat
	cmd := &cobra.Command{
		Use:   verb + " NODE...",
		Short: fmt.Sprintf("Make nodes %ss", roleName),
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					nodes []*objectv1.Node
					errs  []error
				)
				for _, ref := range refs {
					node, changed, err := updateNode(ctx, client, ref, func(spec *objectv1.NodeSpec) {
						spec.DesiredRole = role
					})
					switch {
					case err != nil:
						errs = append(errs, err)
					case format.structured():
						nodes = append(nodes, node)
					case changed:
						fmt.Fprintf(c.out, "Node %s %sd to a %s in the cluster.\n", ref, verb, roleName)
					default:
						fmt.Fprintf(c.out, "Node %s is already a %s.\n", ref, roleName)
					}
				}
				if format.structured() {
					if err := writeList(c.out, &format, nodes); err != nil {
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

func (c *cli) newNodeRmCmd() *cobra.Command {
	var (
		force  bool
		format outputFormat
	)
	cmd := &cobra.Command{
		Use:     "rm [flags] NODE...",
		Aliases: []string{"remove"},
		Short:   "Remove nodes from the cluster",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					removed []*objectv1.Node
					errs    []error
				)
				for _, ref := range refs {
					// For --format, the node as it was: read it, then
					// remove that one by ID.
					id := ref
					var node *objectv1.Node
					if format.structured() {
						got, err := client.GetNode(ctx, &controlv1.GetNodeRequest{Ref: ref})
						if err != nil {
							errs = append(errs, err)
							continue
						}
						node, id = got.GetNode(), got.GetNode().GetId()
					}
					if _, err := client.RemoveNode(ctx, &controlv1.RemoveNodeRequest{Ref: id, Force: force}); err != nil {
						errs = append(errs, err)
						continue
					}
					if node != nil {
						removed = append(removed, node)
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
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove a node that is not down")
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

// updateNode reads a node, lets change modify its spec, and writes the spec
// back with the version it read, re-reading on a version conflict. A change
// that leaves the spec as it is sends nothing and reports changed false.
func updateNode(ctx context.Context, client controlv1.ControlClient, ref string, change func(*objectv1.NodeSpec)) (node *objectv1.Node, changed bool, err error) {
	err = retryConflicts(func() error {
		got, err := client.GetNode(ctx, &controlv1.GetNodeRequest{Ref: ref})
		if err != nil {
			return err
		}
		node, changed = got.GetNode(), false
		spec := proto.CloneOf(node.GetSpec())
		if spec == nil {
			spec = &objectv1.NodeSpec{}
		}
		change(spec)
		if proto.Equal(spec, node.GetSpec()) {
			return nil
		}
		resp, err := client.UpdateNode(ctx, &controlv1.UpdateNodeRequest{
			Ref:     node.GetId(),
			Version: node.GetMeta().GetVersion(),
			Spec:    spec,
		})
		if err != nil {
			return err
		}
		node, changed = resp.GetNode(), true
		return nil
	})
	return node, changed, err
}
