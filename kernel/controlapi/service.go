package controlapi

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func (s *Server) CreateService(ctx context.Context, req *controlv1.CreateServiceRequest) (*controlv1.CreateServiceResponse, error) {
	resp := &controlv1.CreateServiceResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_CreateService_FullMethodName, req, resp); fwd {
		return resp, err
	}
	spec := proto.Clone(req.GetSpec()).(*objectv1.ServiceSpec)
	if req.GetSpec() == nil {
		spec = &objectv1.ServiceSpec{}
	}
	ApplyServiceDefaults(spec)
	if err := ValidateServiceSpec(spec); err != nil {
		return nil, grpcErr(err)
	}
	svc := &objectv1.Service{Id: newID(), Spec: spec, SpecVersion: 1}
	w, err := s.update(ctx, func(tx *state.Tx) error {
		if tx.ServiceByName(spec.GetAnnotations().GetName()) != nil {
			return fmt.Errorf("service %q: %w", spec.GetAnnotations().GetName(), sdk.ErrAlreadyExists)
		}
		if err := resolveNetworks(tx.ReadTx, spec); err != nil {
			return err
		}
		if err := resolveFileRefs(tx.ReadTx, spec); err != nil {
			return err
		}
		if err := checkBindMountRoots(tx.ReadTx, spec); err != nil {
			return err
		}
		if err := checkPortConflicts(tx.ReadTx, spec, nil); err != nil {
			return err
		}
		return tx.CreateService(svc)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		// An earlier attempt of this call created the service.
		svc = &objectv1.Service{Id: w.ObjectID, Spec: spec, SpecVersion: 1}
	}
	s.view(func(tx *state.ReadTx) { resp.Service = tx.Service(svc.Id) })
	if resp.Service == nil {
		// Removed since: the reply still says what this call did.
		resp.Service = committed(svc, w.Index)
	}
	s.log.Info("service created", "service_id", svc.Id, "name", spec.GetAnnotations().GetName())
	return resp, nil
}

func (s *Server) GetService(ctx context.Context, req *controlv1.GetServiceRequest) (*controlv1.GetServiceResponse, error) {
	resp := &controlv1.GetServiceResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_GetService_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var err error
	if rerr := s.read(ctx, func(tx *state.ReadTx) { resp.Service, err = tx.LookupService(req.GetRef()) }); rerr != nil {
		return nil, grpcErr(rerr)
	}
	return resp, grpcErr(err)
}

func (s *Server) ListServices(ctx context.Context, req *controlv1.ListServicesRequest) (*controlv1.ListServicesResponse, error) {
	resp := &controlv1.ListServicesResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_ListServices_FullMethodName, req, resp); fwd {
		return resp, err
	}
	names := map[string]bool{}
	for _, n := range req.GetNames() {
		names[n] = true
	}
	resp.Running = map[string]int64{}
	resp.Desired = map[string]int64{}
	err := s.read(ctx, func(tx *state.ReadTx) {
		for _, svc := range tx.Services() {
			if len(names) > 0 && !names[svc.GetSpec().GetAnnotations().GetName()] {
				continue
			}
			if !labelsMatch(svc.GetSpec().GetAnnotations().GetLabels(), req.GetLabelSelector()) {
				continue
			}
			resp.Services = append(resp.Services, svc)
			var running, desired int64
			for _, t := range tx.TasksByService(svc.Id) {
				if t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING {
					desired++
					if t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
						running++
					}
				}
			}
			resp.Running[svc.Id] = running
			resp.Desired[svc.Id] = desired
		}
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return resp, nil
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

func (s *Server) UpdateService(ctx context.Context, req *controlv1.UpdateServiceRequest) (*controlv1.UpdateServiceResponse, error) {
	resp := &controlv1.UpdateServiceResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_UpdateService_FullMethodName, req, resp); fwd {
		return resp, err
	}
	var fe sdk.FieldErrors
	if req.GetRef() == "" {
		fe.Add("ref", "is required: a service ID, ID prefix or name")
	}
	if req.GetVersion() == 0 {
		fe.Add("version", "is required: the meta.version of the service as read")
	}
	if req.GetSpec() == nil {
		fe.Add("spec", "is required")
	}
	if err := fe.Err(); err != nil {
		return nil, grpcErr(err)
	}
	spec := proto.Clone(req.GetSpec()).(*objectv1.ServiceSpec)
	ApplyServiceDefaults(spec)
	if err := ValidateServiceSpec(spec); err != nil {
		return nil, grpcErr(err)
	}
	var next *objectv1.Service
	w, err := s.update(ctx, func(tx *state.Tx) error {
		cur, err := tx.LookupService(req.GetRef())
		if err != nil {
			return err
		}
		if cur.GetMeta().GetVersion() != req.GetVersion() {
			return versionConflict("service", req.GetRef(), cur.GetMeta().GetVersion(), req.GetVersion())
		}
		if from, to := serviceModeName(cur.GetSpec()), serviceModeName(spec); from != to {
			return sdk.FieldErrors{{Field: "spec.mode", Message: fmt.Sprintf("cannot change from %s to %s; remove and create the service instead", from, to)}}
		}
		if name := spec.GetAnnotations().GetName(); name != cur.GetSpec().GetAnnotations().GetName() && tx.ServiceByName(name) != nil {
			return fmt.Errorf("service %q: %w", name, sdk.ErrAlreadyExists)
		}
		if err := resolveNetworks(tx.ReadTx, spec); err != nil {
			return err
		}
		if err := resolveFileRefs(tx.ReadTx, spec); err != nil {
			return err
		}
		if err := checkBindMountRoots(tx.ReadTx, spec); err != nil {
			return err
		}
		if err := checkPortConflicts(tx.ReadTx, spec, cur); err != nil {
			return err
		}
		next = proto.Clone(cur).(*objectv1.Service)
		if !proto.Equal(cur.GetSpec(), spec) {
			next.PreviousSpec = cur.GetSpec()
			next.Spec = spec
			next.SpecVersion = cur.GetSpecVersion() + 1
			// Back to the previous spec (service rollback): paced by
			// spec.rollback, as an automatic rollback.
			markRollback(cur, next, s.now())
		}
		return tx.UpdateService(next)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if !w.Replayed {
		// What this call wrote, whatever happened to the service since.
		resp.Service = committed(next, w.Index)
		return resp, nil
	}
	// An earlier attempt of this call applied; answer with the service as
	// it is now, or as that attempt left it if it was removed since.
	s.view(func(tx *state.ReadTx) { resp.Service = tx.Service(w.ObjectID) })
	if resp.Service == nil {
		resp.Service = &objectv1.Service{Id: w.ObjectID, Spec: spec, Meta: &objectv1.Meta{Version: w.Index}}
	}
	return resp, nil
}

func (s *Server) RemoveService(ctx context.Context, req *controlv1.RemoveServiceRequest) (*controlv1.RemoveServiceResponse, error) {
	resp := &controlv1.RemoveServiceResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_RemoveService_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var id string
	w, err := s.update(ctx, func(tx *state.Tx) error {
		cur, err := tx.LookupService(req.GetRef())
		if err != nil {
			return err
		}
		id = cur.Id
		// The orchestrator shuts down the service's tasks once it sees the
		// service gone; removing them is its job, not the API's.
		return tx.DeleteService(cur.Id)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if w.Replayed {
		id = w.ObjectID
	}
	s.log.Info("service removed", "service_id", id)
	return resp, nil
}

func (s *Server) GetTask(ctx context.Context, req *controlv1.GetTaskRequest) (*controlv1.GetTaskResponse, error) {
	resp := &controlv1.GetTaskResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_GetTask_FullMethodName, req, resp); fwd {
		return resp, err
	}
	if req.GetRef() == "" {
		return nil, grpcErr(refRequired())
	}
	var err error
	if rerr := s.read(ctx, func(tx *state.ReadTx) { resp.Task, err = tx.LookupTask(req.GetRef()) }); rerr != nil {
		return nil, grpcErr(rerr)
	}
	return resp, grpcErr(err)
}

func (s *Server) ListTasks(ctx context.Context, req *controlv1.ListTasksRequest) (*controlv1.ListTasksResponse, error) {
	resp := &controlv1.ListTasksResponse{}
	if fwd, err := s.forward(ctx, controlv1.Control_ListTasks_FullMethodName, req, resp); fwd {
		return resp, err
	}
	var fe sdk.FieldErrors
	for i, st := range req.GetDesiredStates() {
		if _, ok := objectv1.TaskState_name[int32(st)]; !ok || st == objectv1.TaskState_TASK_STATE_UNSPECIFIED {
			fe.Add(fmt.Sprintf("desired_states[%d]", i), "unknown task state %d", st)
		}
	}
	if err := fe.Err(); err != nil {
		return nil, grpcErr(err)
	}
	states := map[objectv1.TaskState]bool{}
	for _, st := range req.GetDesiredStates() {
		states[st] = true
	}
	nodes := map[string]bool{}
	for _, n := range req.GetNodeIds() {
		nodes[n] = true
	}
	keep := func(t *objectv1.Task) bool {
		return (len(states) == 0 || states[t.GetDesiredState()]) && (len(nodes) == 0 || nodes[t.GetNodeId()])
	}
	err := s.read(ctx, func(tx *state.ReadTx) {
		var candidates []*objectv1.Task
		switch {
		case len(req.GetServiceIds()) > 0:
			for _, id := range req.GetServiceIds() {
				candidates = append(candidates, tx.TasksByService(id)...)
			}
		case len(req.GetNodeIds()) > 0:
			for _, id := range req.GetNodeIds() {
				candidates = append(candidates, tx.TasksByNode(id)...)
			}
		default:
			candidates = tx.Tasks()
		}
		for _, t := range candidates {
			if keep(t) {
				resp.Tasks = append(resp.Tasks, t)
			}
		}
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	sort.Slice(resp.Tasks, func(i, j int) bool {
		a, b := resp.Tasks[i], resp.Tasks[j]
		if a.GetServiceId() != b.GetServiceId() {
			return a.GetServiceId() < b.GetServiceId()
		}
		if a.GetSlot() != b.GetSlot() {
			return a.GetSlot() < b.GetSlot()
		}
		// A global task's slot is its node; a replicated slot's tasks may
		// have run on several nodes and go newest first.
		if a.GetSlot() == 0 && a.GetNodeId() != b.GetNodeId() {
			return a.GetNodeId() < b.GetNodeId()
		}
		at, bt := a.GetMeta().GetCreatedAt().AsTime(), b.GetMeta().GetCreatedAt().AsTime()
		if !at.Equal(bt) {
			return at.After(bt) // newest first within a slot, like docker
		}
		return a.Id < b.Id
	})
	return resp, nil
}

func refRequired() error {
	return sdk.FieldErrors{{Field: "ref", Message: "is required: an ID, ID prefix or name"}}
}
