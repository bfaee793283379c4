package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/containerd/containerd/v2/client"
	"github.com/spf13/cobra"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/containerd"
	"github.com/shoalhq/shoal/sdk"
)

// defaultNodeConfig is where `shoal agent` reads its config by default.
const defaultNodeConfig = "/etc/shoal/node.toml"

// newImageCmd groups the commands on this node's images.
func (c *cli) newImageCmd() *cobra.Command {
	return group("image", "Manage the images of this node", c.newImageImportCmd())
}

// imageTarget is where images go: a containerd socket and the executor's
// namespace and snapshotter there.
type imageTarget struct {
	address, namespace, snapshotter string
}

// executorSettings are the keys of [plugins.executor.config] that say where
// the containerd executor keeps its images; the plugin checks the table
// strictly, so every other key is left to it.
type executorSettings struct {
	Namespace         string `toml:"namespace"`
	ContainerdAddress string `toml:"containerd_address"`
	Snapshotter       string `toml:"snapshotter"`
}

// resolveImageTarget finds the node's containerd and the executor's
// namespace as the node's executor does: from the flags, else from the
// node's config ([plugins.executor.config], else [containerd] address, else
// the containerd the agent embeds under data_dir), else the defaults. A missing config file is fine unless the
// user named it.
func resolveImageTarget(configPath string, configNamed bool, flags imageTarget) (imageTarget, error) {
	t := imageTarget{namespace: "shoal", snapshotter: "overlayfs"}
	cfg, err := config.Load(configPath)
	switch {
	case err == nil:
		var s executorSettings
		if pc, ok := cfg.Plugins[config.KindExecutor]; ok && len(pc.Config) > 0 {
			if _, err := toml.Decode(string(pc.Config), &s); err != nil {
				return t, fmt.Errorf("--config %s: [plugins.executor.config]: %w", configPath, err)
			}
		}
		t.address = containerd.SocketPath(containerd.NodeDir(cfg.Node.DataDir))
		if cfg.Containerd.Address != "" {
			t.address = cfg.Containerd.Address
		}
		if s.ContainerdAddress != "" {
			t.address = s.ContainerdAddress
		}
		if s.Namespace != "" {
			t.namespace = s.Namespace
		}
		if s.Snapshotter != "" {
			t.snapshotter = s.Snapshotter
		}
	case errors.Is(err, fs.ErrNotExist) && !configNamed:
		t.address = containerd.SocketPath(containerd.NodeDir(config.Default().Node.DataDir))
	default:
		return t, fmt.Errorf("--config: %w", err)
	}
	if flags.address != "" {
		t.address = flags.address
	}
	if flags.namespace != "" {
		t.namespace = flags.namespace
	}
	if flags.snapshotter != "" {
		t.snapshotter = flags.snapshotter
	}
	return t, nil
}

// loadedImage is an image `shoal image import --format json` loaded.
type loadedImage struct {
	Name string `json:"name"`
}

// newImageImportCmd is `shoal image import FILE.tar`.
func (c *cli) newImageImportCmd() *cobra.Command {
	var (
		configPath string
		flags      imageTarget
		format     outputFormat
	)
	cmd := &cobra.Command{
		Use:   "import FILE.tar",
		Short: "Load an image archive (OCI layout or docker save) into this node's containerd",
		Long: `Load the images of an archive into this node's containerd, where its tasks
find them without a registry. The archive is an OCI image layout in a tar, or
a docker archive (docker save). Run it on each node that should have the image.

The node's containerd is the one its config names ([plugins.executor.config]
containerd_address, else [containerd] address), else the one the agent runs
under its data_dir.`,
		Example: "  shoal image import web.tar\n  docker save web:1 | shoal image import -",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := resolveImageTarget(configPath, cmd.Flags().Changed("config"), flags)
			if err != nil {
				return err
			}
			in := os.Stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			if _, err := os.Stat(t.address); err != nil {
				return fmt.Errorf("no containerd at %s (is the agent running? else set --containerd-address): %w", t.address, sdk.ErrUnavailable)
			}
			cl, err := client.New(t.address, client.WithTimeout(10*time.Second))
			if err != nil {
				return fmt.Errorf("containerd at %s: %w", t.address, err)
			}
			defer cl.Close()
			// No --timeout here: a large archive takes what it takes, and
			// Ctrl-C ends the command's context.
			names, err := containerd.Import(cmd.Context(), cl, t.namespace, t.snapshotter, in)
			if format.structured() {
				loaded := make([]loadedImage, len(names))
				for i, n := range names {
					loaded[i].Name = n
				}
				if werr := writeList(c.out, &format, loaded); werr != nil && err == nil {
					return werr
				}
			} else {
				for _, n := range names {
					fmt.Fprintf(c.out, "Loaded image: %s\n", n)
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", defaultNodeConfig, "the node's TOML config, to find its containerd")
	f.StringVar(&flags.address, "containerd-address", "", "containerd socket (default: from the node's config)")
	f.StringVar(&flags.namespace, "namespace", "", `containerd namespace of the node's tasks (default: from the node's config, else "shoal")`)
	f.StringVar(&flags.snapshotter, "snapshotter", "", `snapshotter to unpack for (default: from the node's config, else "overlayfs")`)
	addOutputFlag(f, &format, "")
	return cmd
}
