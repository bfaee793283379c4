package controlapi

import (
	"fmt"
	"path"
	"strings"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// maxBindMountRoots bounds the cluster's bind mount roots.
const maxBindMountRoots = 32

// validateBindMountRoots checks the cluster's bind_mount_roots.
func validateBindMountRoots(fe *sdk.FieldErrors, roots []string) {
	if len(roots) > maxBindMountRoots {
		fe.Add("spec.bind_mount_roots", "must hold at most %d paths, got %d", maxBindMountRoots, len(roots))
		return
	}
	for i, r := range roots {
		if len(r) > maxPathLen || !path.IsAbs(r) || path.Clean(r) != r || strings.ContainsRune(r, 0) {
			fe.Add(fmt.Sprintf("spec.bind_mount_roots[%d]", i), "must be a clean absolute path of at most %d bytes, such as /srv, got %s", maxPathLen, quote(r))
		}
	}
}

// underRoot reports whether p is root or lies below it.
func underRoot(p, root string) bool {
	p = path.Clean(p)
	return root == "/" || p == root || strings.HasPrefix(p, root+"/")
}

// checkBindMountRoots refuses a service whose bind mounts come from a node
// path outside the cluster's bind_mount_roots (none set: any path).
func checkBindMountRoots(tx *state.ReadTx, spec *objectv1.ServiceSpec) error {
	roots := tx.Cluster().GetSpec().GetBindMountRoots()
	if len(roots) == 0 {
		return nil
	}
	var fe sdk.FieldErrors
	for i, m := range spec.GetTask().GetContainer().GetMounts() {
		if m.GetType() != objectv1.MountType_MOUNT_TYPE_BIND && m.GetType() != objectv1.MountType_MOUNT_TYPE_UNSPECIFIED {
			continue
		}
		ok := false
		for _, r := range roots {
			if underRoot(m.GetSource(), r) {
				ok = true
				break
			}
		}
		if !ok {
			fe.Add(fmt.Sprintf("spec.task.container.mounts[%d].source", i),
				"%s is outside the paths this cluster allows bind mounts from (%s; shoal cluster update --bind-mount-root)", m.GetSource(), strings.Join(roots, ", "))
		}
	}
	return fe.Err()
}
