package controlapi

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// WithSecrets gives the server the manager's secrets key. Without it (or
// while the holder holds none) CreateSecret fails with Unavailable.
func WithSecrets(h *secrets.Holder) Option { return func(s *Server) { s.secrets = h } }

const (
	// maxFileRefs bounds a task's secrets and its configs, each: every one
	// is a mount in its container and a copy of the data in its
	// assignment.
	maxFileRefs = 64
	// maxFileTarget bounds a file reference's target path.
	maxFileTarget = 1024
)

// secretsDir is where a task's secrets are, as docker's.
const secretsDir = "/run/secrets"

// ValidateSecretSpec checks a new secret's spec, its data included.
func ValidateSecretSpec(spec *objectv1.SecretSpec) error {
	var fe sdk.FieldErrors
	if spec == nil {
		fe.Add("spec", "is required")
		return fe.Err()
	}
	validateAnnotations(&fe, "spec.annotations", spec.GetAnnotations(), true)
	validateFileData(&fe, spec.GetData())
	return capped(fe).Err()
}

// ValidateConfigSpec checks a new config's spec, its data included.
func ValidateConfigSpec(spec *objectv1.ConfigSpec) error {
	var fe sdk.FieldErrors
	if spec == nil {
		fe.Add("spec", "is required")
		return fe.Err()
	}
	validateAnnotations(&fe, "spec.annotations", spec.GetAnnotations(), true)
	validateFileData(&fe, spec.GetData())
	return capped(fe).Err()
}

func validateFileData(fe *sdk.FieldErrors, data []byte) {
	switch {
	case len(data) == 0:
		fe.Add("spec.data", "is required: at least 1 byte")
	case len(data) > secrets.MaxDataBytes:
		fe.Add("spec.data", "must be at most %d bytes (500 KiB), got %d", secrets.MaxDataBytes, len(data))
	}
}

// validateFileRefs checks a container's secret or config references
// (before they are resolved to IDs, see resolveFileRefs).
func validateFileRefs(fe *sdk.FieldErrors, field string, refs []*objectv1.FileReference, secret bool) {
	if len(refs) > maxFileRefs {
		fe.Add(field, "must hold at most %d entries, got %d", maxFileRefs, len(refs))
		return
	}
	targets := map[string]int{}
	for i, r := range refs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if r.GetId() == "" && r.GetName() == "" {
			fe.Add(f+".name", "is required: a %s's name or ID", kindWord(secret))
		}
		target, ok := fileTarget(r, secret)
		switch {
		case len(r.GetTarget()) > maxFileTarget:
			fe.Add(f+".target", "must be at most %d bytes, got %d", maxFileTarget, len(r.GetTarget()))
		case !ok:
			if secret {
				fe.Add(f+".target", "must be a file name (under %s) or a clean absolute path, got %s", secretsDir, quote(r.GetTarget()))
			} else {
				fe.Add(f+".target", "must be a clean absolute path such as /etc/app.conf, got %s", quote(r.GetTarget()))
			}
		default:
			if j, dup := targets[target]; dup {
				fe.Add(f+".target", "%s is also the target of %s[%d]", target, field, j)
			}
			targets[target] = i
		}
		for _, id := range []struct{ name, v string }{{"uid", r.GetUid()}, {"gid", r.GetGid()}} {
			if id.v == "" {
				continue
			}
			if n, err := strconv.ParseUint(id.v, 10, 32); err != nil || n > 1<<31-1 {
				fe.Add(f+"."+id.name, "must be a number from 0 to %d, got %s", 1<<31-1, quote(id.v))
			}
		}
		if r.GetMode() > 0o777 {
			fe.Add(f+".mode", "must be permission bits, at most 0777, got %#o", r.GetMode())
		}
	}
}

// fileTarget is where a reference's file is in the container, and whether
// its target is acceptable. A secret's default is /run/secrets/NAME, a
// config's /NAME.
func fileTarget(r *objectv1.FileReference, secret bool) (string, bool) {
	t := r.GetTarget()
	if t == "" {
		t = r.GetName()
		if t == "" || strings.ContainsRune(t, '/') {
			return "", t == ""
		}
		if !secret {
			return "/" + t, true
		}
	}
	if !path.IsAbs(t) {
		if !secret || strings.ContainsRune(t, '/') || t == "." || t == ".." {
			return "", false
		}
		t = path.Join(secretsDir, t)
	}
	if path.Clean(t) != t || t == "/" || strings.ContainsRune(t, 0) {
		return "", false
	}
	return t, true
}

func kindWord(secret bool) string {
	if secret {
		return "secret"
	}
	return "config"
}

// resolveFileRefs replaces each secret and config reference's name or ID
// by the object's ID and name, so that tasks refer to them by ID and a
// service cannot use one that does not exist.
func resolveFileRefs(tx *state.ReadTx, spec *objectv1.ServiceSpec) error {
	var fe sdk.FieldErrors
	c := spec.GetTask().GetContainer()
	for i, r := range c.GetSecrets() {
		ref := r.GetId()
		if ref == "" {
			ref = r.GetName()
		}
		sec, err := tx.LookupSecret(ref)
		if err != nil {
			fe.Add(fmt.Sprintf("spec.task.container.secrets[%d]", i), "%s", err.Error())
			continue
		}
		r.Id, r.Name = sec.GetId(), sec.GetSpec().GetAnnotations().GetName()
	}
	for i, r := range c.GetConfigs() {
		ref := r.GetId()
		if ref == "" {
			ref = r.GetName()
		}
		cfg, err := tx.LookupConfig(ref)
		if err != nil {
			fe.Add(fmt.Sprintf("spec.task.container.configs[%d]", i), "%s", err.Error())
			continue
		}
		r.Id, r.Name = cfg.GetId(), cfg.GetSpec().GetAnnotations().GetName()
	}
	return fe.Err()
}

// usesFile reports whether refs name the object id.
func usesFile(refs []*objectv1.FileReference, id string) bool {
	for _, r := range refs {
		if r.GetId() == id {
			return true
		}
	}
	return false
}

// redactSecret returns s without anything that could reveal its data: the
// API never answers with the sealed blob either.
func redactSecret(s *objectv1.Secret) *objectv1.Secret {
	if s == nil {
		return nil
	}
	out := proto.Clone(s).(*objectv1.Secret)
	out.Sealed = nil
	if out.Spec != nil {
		out.Spec.Data = nil
	}
	return out
}

func (s *Server) CreateSecret(ctx context.Context, req *controlv1.CreateSecretRequest) (*controlv1.CreateSecretResponse, error) {
	resp := &controlv1.CreateSecretResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_CreateSecret_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if err := ValidateSecretSpec(req.GetSpec()); err != nil {
		return nil, grpcErr(err)
	}
	if s.secrets == nil {
		return nil, grpcErr(secrets.ErrNoKey)
	}
	k, err := s.secrets.Keyring()
	if err != nil {
		return nil, grpcErr(err)
	}
	data := req.GetSpec().GetData()
	spec := proto.Clone(req.GetSpec()).(*objectv1.SecretSpec)
	spec.Data = nil
	sec := &objectv1.Secret{Id: newID(), Spec: spec, Digest: k.Digest(data), Size: int64(len(data))}
	if sec.Sealed, err = k.Seal(sec.Id, data); err != nil {
		return nil, grpcErr(err)
	}
	var existing *objectv1.Secret
	w, err := s.update(ctx, func(tx *state.Tx) error {
		name := spec.GetAnnotations().GetName()
		if cur := tx.SecretByName(name); cur != nil {
			if !req.GetSameOk() {
				return fmt.Errorf("secret %q: %w", name, sdk.ErrAlreadyExists)
			}
			if cur.GetDigest() != sec.GetDigest() {
				return fmt.Errorf("secret %s exists with other data; secrets cannot change: create one under a new name (e.g. %s_v2) and point the services to it: %w",
					name, name, sdk.ErrFailedPrecondition)
			}
			existing = cur
			return nil
		}
		return tx.CreateSecret(sec)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if existing != nil {
		resp.Secret, resp.Existed = redactSecret(existing), true
		return resp, nil
	}
	if w.Replayed {
		sec = &objectv1.Secret{Id: w.ObjectID, Spec: spec, Digest: sec.Digest, Size: sec.Size}
	}
	s.view(func(tx *state.ReadTx) { resp.Secret = tx.Secret(sec.Id) })
	if resp.Secret == nil {
		resp.Secret = committed(sec, w.Index)
	}
	resp.Secret = redactSecret(resp.Secret)
	s.log.Info("secret created", "secret_id", sec.Id, "name", spec.GetAnnotations().GetName(), "bytes", sec.Size)
	return resp, nil
}

func (s *Server) GetSecret(ctx context.Context, req *controlv1.GetSecretRequest) (*controlv1.GetSecretResponse, error) {
	resp := &controlv1.GetSecretResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_GetSecret_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var err error
	if rerr := s.read(ctx, func(tx *state.ReadTx) { resp.Secret, err = tx.LookupSecret(req.GetRef()) }); rerr != nil {
		return nil, grpcErr(rerr)
	}
	resp.Secret = redactSecret(resp.Secret)
	return resp, grpcErr(err)
}

func (s *Server) ListSecrets(ctx context.Context, req *controlv1.ListSecretsRequest) (*controlv1.ListSecretsResponse, error) {
	resp := &controlv1.ListSecretsResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_ListSecrets_FullMethodName, req, resp); fwd {
		return resp, err
	}
	names := nameSet(req.GetNames())
	err := s.read(ctx, func(tx *state.ReadTx) {
		for _, o := range tx.Secrets() {
			a := o.GetSpec().GetAnnotations()
			if (len(names) == 0 || names[a.GetName()]) && labelsMatch(a.GetLabels(), req.GetLabelSelector()) {
				resp.Secrets = append(resp.Secrets, redactSecret(o))
			}
		}
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return resp, nil
}

func (s *Server) RemoveSecret(ctx context.Context, req *controlv1.RemoveSecretRequest) (*controlv1.RemoveSecretResponse, error) {
	resp := &controlv1.RemoveSecretResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_RemoveSecret_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var id string
	w, err := s.update(ctx, func(tx *state.Tx) error {
		cur, err := tx.LookupSecret(req.GetRef())
		if err != nil {
			return err
		}
		id = cur.Id
		current, previous := fileUsers(tx.Services(), id, true)
		if err := fileInUse("secret", cur.GetSpec().GetAnnotations().GetName(), current, previous); err != nil {
			return err
		}
		if tasks := fileTasks(tx.Tasks(), id, true); len(tasks) > 0 {
			return fmt.Errorf("secret %s is used by %d tasks that have not ended (%s); retry once they have stopped: %w",
				cur.GetSpec().GetAnnotations().GetName(), len(tasks), listSome(tasks), sdk.ErrFailedPrecondition)
		}
		return tx.DeleteSecret(id)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		id = w.ObjectID
	}
	s.log.Info("secret removed", "secret_id", id)
	return resp, nil
}

// fileUsers names the services whose spec uses the secret or config id,
// and, apart, those whose previous spec alone does: a rollback (manual, or
// an update's failure action) would bring it back, so it must stay.
func fileUsers(services []*objectv1.Service, id string, secret bool) (current, previous []string) {
	refsOf := func(spec *objectv1.ServiceSpec) []*objectv1.FileReference {
		if secret {
			return spec.GetTask().GetContainer().GetSecrets()
		}
		return spec.GetTask().GetContainer().GetConfigs()
	}
	for _, svc := range services {
		name := svc.GetSpec().GetAnnotations().GetName()
		switch {
		case usesFile(refsOf(svc.GetSpec()), id):
			current = append(current, name)
		case usesFile(refsOf(svc.GetPreviousSpec()), id):
			previous = append(previous, name)
		}
	}
	return current, previous
}

// fileInUse is the error for a secret or config that services use.
func fileInUse(kind, name string, current, previous []string) error {
	if len(current) > 0 {
		return fmt.Errorf("%s %s is used by %d services (%s); update them with --%s-rm or remove them first: %w",
			kind, name, len(current), listSome(current), kind, sdk.ErrFailedPrecondition)
	}
	if len(previous) > 0 {
		return fmt.Errorf("%s %s is used by the previous spec of %d services (%s), which a rollback would restore; update them once more or remove them first: %w",
			kind, name, len(previous), listSome(previous), sdk.ErrFailedPrecondition)
	}
	return nil
}

// fileTasks names the tasks that use the secret or config id and have not
// ended: a task of an older spec still runs with it during a rolling
// update, and its node may need it again (an agent restart re-sends it).
func fileTasks(tasks []*objectv1.Task, id string, secret bool) []string {
	var out []string
	for _, t := range tasks {
		if t.GetDesiredState() > objectv1.TaskState_TASK_STATE_RUNNING || t.GetStatus().GetState() > objectv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		c := t.GetSpec().GetContainer()
		refs := c.GetConfigs()
		if secret {
			refs = c.GetSecrets()
		}
		if usesFile(refs, id) {
			out = append(out, t.GetId())
		}
	}
	return out
}

func (s *Server) CreateConfig(ctx context.Context, req *controlv1.CreateConfigRequest) (*controlv1.CreateConfigResponse, error) {
	resp := &controlv1.CreateConfigResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_CreateConfig_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if err := ValidateConfigSpec(req.GetSpec()); err != nil {
		return nil, grpcErr(err)
	}
	spec := proto.Clone(req.GetSpec()).(*objectv1.ConfigSpec)
	cfg := &objectv1.Config{Id: newID(), Spec: spec}
	var existing *objectv1.Config
	w, err := s.update(ctx, func(tx *state.Tx) error {
		name := spec.GetAnnotations().GetName()
		if cur := tx.ConfigByName(name); cur != nil {
			if !req.GetSameOk() {
				return fmt.Errorf("config %q: %w", name, sdk.ErrAlreadyExists)
			}
			if !bytes.Equal(cur.GetSpec().GetData(), spec.GetData()) {
				return fmt.Errorf("config %s exists with other data; configs cannot change: create one under a new name (e.g. %s_v2) and point the services to it: %w",
					name, name, sdk.ErrFailedPrecondition)
			}
			existing = cur
			return nil
		}
		return tx.CreateConfig(cfg)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if existing != nil {
		resp.Config, resp.Existed = existing, true
		return resp, nil
	}
	if w.Replayed {
		cfg = &objectv1.Config{Id: w.ObjectID, Spec: spec}
	}
	s.view(func(tx *state.ReadTx) { resp.Config = tx.Config(cfg.Id) })
	if resp.Config == nil {
		resp.Config = committed(cfg, w.Index)
	}
	s.log.Info("config created", "config_id", cfg.Id, "name", spec.GetAnnotations().GetName(), "bytes", len(spec.GetData()))
	return resp, nil
}

func (s *Server) GetConfig(ctx context.Context, req *controlv1.GetConfigRequest) (*controlv1.GetConfigResponse, error) {
	resp := &controlv1.GetConfigResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_GetConfig_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var err error
	if rerr := s.read(ctx, func(tx *state.ReadTx) { resp.Config, err = tx.LookupConfig(req.GetRef()) }); rerr != nil {
		return nil, grpcErr(rerr)
	}
	return resp, grpcErr(err)
}

func (s *Server) ListConfigs(ctx context.Context, req *controlv1.ListConfigsRequest) (*controlv1.ListConfigsResponse, error) {
	resp := &controlv1.ListConfigsResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_ListConfigs_FullMethodName, req, resp); fwd {
		return resp, err
	}
	names := nameSet(req.GetNames())
	err := s.read(ctx, func(tx *state.ReadTx) {
		for _, o := range tx.Configs() {
			a := o.GetSpec().GetAnnotations()
			if (len(names) == 0 || names[a.GetName()]) && labelsMatch(a.GetLabels(), req.GetLabelSelector()) {
				resp.Configs = append(resp.Configs, o)
			}
		}
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return resp, nil
}

func (s *Server) RemoveConfig(ctx context.Context, req *controlv1.RemoveConfigRequest) (*controlv1.RemoveConfigResponse, error) {
	resp := &controlv1.RemoveConfigResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_RemoveConfig_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var id string
	w, err := s.update(ctx, func(tx *state.Tx) error {
		cur, err := tx.LookupConfig(req.GetRef())
		if err != nil {
			return err
		}
		id = cur.Id
		current, previous := fileUsers(tx.Services(), id, false)
		if err := fileInUse("config", cur.GetSpec().GetAnnotations().GetName(), current, previous); err != nil {
			return err
		}
		if tasks := fileTasks(tx.Tasks(), id, false); len(tasks) > 0 {
			return fmt.Errorf("config %s is used by %d tasks that have not ended (%s); retry once they have stopped: %w",
				cur.GetSpec().GetAnnotations().GetName(), len(tasks), listSome(tasks), sdk.ErrFailedPrecondition)
		}
		return tx.DeleteConfig(id)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		id = w.ObjectID
	}
	s.log.Info("config removed", "config_id", id)
	return resp, nil
}

func nameSet(names []string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}
