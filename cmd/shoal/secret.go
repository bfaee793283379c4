package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// maxFileData is the largest secret or config: 500 KiB, as swarm. The
// server enforces it; the CLI says so before sending the data.
const maxFileData = 500 * 1024

// readFileData reads a secret's or config's data from path, or from stdin
// for "-", refusing more than maxFileData bytes.
func (c *cli) readFileData(path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = c.in
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxFileData+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFileData {
		return nil, fmt.Errorf("%s: more than %d bytes (500 KiB), the largest a secret or config may be", path, maxFileData)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: empty: a secret or config holds at least 1 byte", path)
	}
	return data, nil
}

func (c *cli) newSecretCmd() *cobra.Command {
	return group("secret", "Manage secrets: sensitive data for tasks, sealed at rest, never shown again",
		c.newFileCreateCmd(true),
		c.newFileLsCmd(true),
		c.newFileInspectCmd(true),
		c.newFileRmCmd(true),
	)
}

func (c *cli) newConfigCmd() *cobra.Command {
	return group("config", "Manage configs: files for tasks",
		c.newFileCreateCmd(false),
		c.newFileLsCmd(false),
		c.newFileInspectCmd(false),
		c.newFileRmCmd(false),
	)
}

func (c *cli) newFileCreateCmd(secret bool) *cobra.Command {
	var (
		labels []string
		format outputFormat
	)
	what := kindName(secret)
	cmd := &cobra.Command{
		Use:   "create [flags] NAME FILE|-",
		Short: fmt.Sprintf("Create a %s from a file, or from stdin with -", what),
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := c.readFileData(args[1])
			if err != nil {
				return err
			}
			ann := &objectv1.Annotations{Name: args[0], Labels: applyLabels(nil, nil, labels)}
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var obj any
				var id string
				if secret {
					resp, err := client.CreateSecret(ctx, &controlv1.CreateSecretRequest{Spec: &objectv1.SecretSpec{Annotations: ann, Data: data}})
					if err != nil {
						return err
					}
					obj, id = resp.GetSecret(), resp.GetSecret().GetId()
				} else {
					resp, err := client.CreateConfig(ctx, &controlv1.CreateConfigRequest{Spec: &objectv1.ConfigSpec{Annotations: ann, Data: data}})
					if err != nil {
						return err
					}
					obj, id = resp.GetConfig(), resp.GetConfig().GetId()
				}
				if format.structured() {
					return writeOne(c.out, &format, obj)
				}
				fmt.Fprintln(c.out, id)
				return nil
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "")
	cmd.Flags().VarP(&kvValue{target: &labels, optionalValue: true}, "label", "l", what+" label")
	return cmd
}

func kindName(secret bool) string {
	if secret {
		return "secret"
	}
	return "config"
}

// fileObject is what the ls and inspect commands show of a secret or a
// config.
type fileObject struct {
	id, name string
	size     int64
	created  time.Time
	updated  time.Time
	labels   map[string]string
	msg      any
	data     []byte // configs only
}

func secretObject(s *objectv1.Secret) fileObject {
	return fileObject{id: s.GetId(), name: s.GetSpec().GetAnnotations().GetName(), size: s.GetSize(),
		created: s.GetMeta().GetCreatedAt().AsTime(), updated: s.GetMeta().GetUpdatedAt().AsTime(),
		labels: s.GetSpec().GetAnnotations().GetLabels(), msg: s}
}

func configObject(o *objectv1.Config) fileObject {
	return fileObject{id: o.GetId(), name: o.GetSpec().GetAnnotations().GetName(), size: int64(len(o.GetSpec().GetData())),
		created: o.GetMeta().GetCreatedAt().AsTime(), updated: o.GetMeta().GetUpdatedAt().AsTime(),
		labels: o.GetSpec().GetAnnotations().GetLabels(), msg: o, data: o.GetSpec().GetData()}
}

func (c *cli) newFileLsCmd(secret bool) *cobra.Command {
	var (
		format outputFormat
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   fmt.Sprintf("List %ss", kindName(secret)),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var objs []fileObject
				var msgs []any
				if secret {
					resp, err := client.ListSecrets(ctx, &controlv1.ListSecretsRequest{})
					if err != nil {
						return err
					}
					for _, s := range resp.GetSecrets() {
						objs, msgs = append(objs, secretObject(s)), append(msgs, s)
					}
				} else {
					resp, err := client.ListConfigs(ctx, &controlv1.ListConfigsRequest{})
					if err != nil {
						return err
					}
					for _, o := range resp.GetConfigs() {
						objs, msgs = append(objs, configObject(o)), append(msgs, o)
					}
				}
				switch {
				case quiet:
					for _, o := range objs {
						fmt.Fprintln(c.out, o.id)
					}
					return nil
				case format.structured():
					return writeList(c.out, &format, msgs)
				}
				t := newTable(c.out)
				row(t, "ID", "NAME", "SIZE", "CREATED", "UPDATED")
				now := c.now()
				for _, o := range objs {
					row(t, shortID(o.id, false), o.name, strconv.FormatInt(o.size, 10)+" B",
						humanDuration(now.Sub(o.created))+" ago", humanDuration(now.Sub(o.updated))+" ago")
				}
				return t.Flush()
			})
		},
	}
	addOutputFlag(cmd.Flags(), &format, "table")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print IDs only")
	return cmd
}

func (c *cli) newFileInspectCmd(secret bool) *cobra.Command {
	var (
		pretty bool
		format outputFormat
	)
	what := kindName(secret)
	short := fmt.Sprintf("Show %ss in detail, as JSON", what)
	if secret {
		short += " (never their data)"
	}
	cmd := &cobra.Command{
		Use:   fmt.Sprintf("inspect [flags] %s...", map[bool]string{true: "SECRET", false: "CONFIG"}[secret]),
		Short: short,
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
					objs []fileObject
					msgs []any
					errs []error
				)
				for _, ref := range refs {
					if secret {
						resp, err := client.GetSecret(ctx, &controlv1.GetSecretRequest{Ref: ref})
						if err != nil {
							errs = append(errs, err)
							continue
						}
						objs, msgs = append(objs, secretObject(resp.GetSecret())), append(msgs, resp.GetSecret())
					} else {
						resp, err := client.GetConfig(ctx, &controlv1.GetConfigRequest{Ref: ref})
						if err != nil {
							errs = append(errs, err)
							continue
						}
						objs, msgs = append(objs, configObject(resp.GetConfig())), append(msgs, resp.GetConfig())
					}
				}
				if !format.is("pretty") {
					if err := writeList(c.out, &format, msgs); err != nil {
						return err
					}
					return errors.Join(errs...)
				}
				for i, o := range objs {
					if i > 0 {
						fmt.Fprintln(c.out)
					}
					fmt.Fprintf(c.out, "ID:\t\t%s\nName:\t\t%s\n", o.id, o.name)
					if len(o.labels) > 0 {
						fmt.Fprintln(c.out, "Labels:")
						for _, k := range slices.Sorted(maps.Keys(o.labels)) {
							fmt.Fprintf(c.out, " - %s=%s\n", k, o.labels[k])
						}
					}
					fmt.Fprintf(c.out, "Size:\t\t%d B\nCreated at:\t%s\nUpdated at:\t%s\n", o.size,
						o.created.UTC().Format(time.RFC3339), o.updated.UTC().Format(time.RFC3339))
					if !secret {
						fmt.Fprintf(c.out, "Data:\n%s", o.data)
						if n := len(o.data); n > 0 && o.data[n-1] != '\n' {
							fmt.Fprintln(c.out)
						}
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

func (c *cli) newFileRmCmd(secret bool) *cobra.Command {
	var format outputFormat
	what := kindName(secret)
	cmd := &cobra.Command{
		Use:     fmt.Sprintf("rm %s...", map[bool]string{true: "SECRET", false: "CONFIG"}[secret]),
		Aliases: []string{"remove"},
		Short:   fmt.Sprintf("Remove %ss that no service uses", what),
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			return c.call(cmd, func(ctx context.Context, client controlv1.ControlClient) error {
				var (
					removed []any
					errs    []error
				)
				for _, ref := range refs {
					// For --format, the object as it was: read it, then
					// remove that one by ID.
					id := ref
					var obj any
					if format.structured() {
						if secret {
							got, err := client.GetSecret(ctx, &controlv1.GetSecretRequest{Ref: ref})
							if err != nil {
								errs = append(errs, err)
								continue
							}
							obj, id = got.GetSecret(), got.GetSecret().GetId()
						} else {
							got, err := client.GetConfig(ctx, &controlv1.GetConfigRequest{Ref: ref})
							if err != nil {
								errs = append(errs, err)
								continue
							}
							obj, id = got.GetConfig(), got.GetConfig().GetId()
						}
					}
					var err error
					if secret {
						_, err = client.RemoveSecret(ctx, &controlv1.RemoveSecretRequest{Ref: id})
					} else {
						_, err = client.RemoveConfig(ctx, &controlv1.RemoveConfigRequest{Ref: id})
					}
					if err != nil {
						errs = append(errs, err)
						continue
					}
					if obj != nil {
						removed = append(removed, obj)
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
