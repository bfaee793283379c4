package containerd

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/distribution/reference"
)

// Import loads the images of an image archive, an OCI image layout or a
// docker archive (`docker save`), into containerd's namespace, unpacks
// them for snapshotter so the first task that uses one starts without
// delay, and returns their names. Names come from the archive: the
// containerd or OCI reference annotations of an OCI layout, the RepoTags of
// a docker archive; an archive that names no image is an error.
func Import(ctx context.Context, c *client.Client, namespace, snapshotter string, r io.Reader) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, namespace)
	imgs, err := c.Import(ctx, r, client.WithImageRefTranslator(ociRefName))
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("import: the archive names no image (an OCI layout needs an io.containerd.image.name or a full org.opencontainers.image.ref.name annotation)")
	}
	names := make([]string, 0, len(imgs))
	for _, im := range imgs {
		if err := client.NewImage(c, im).Unpack(ctx, snapshotter); err != nil {
			return names, fmt.Errorf("import %s: unpack: %w", im.Name, err)
		}
		names = append(names, im.Name)
	}
	return names, nil
}

// ociRefName turns an OCI layout's org.opencontainers.image.ref.name into
// an image name when it is a full reference ("registry/app:1"); a bare tag
// ("1") names no image.
func ociRefName(ref string) string {
	if !strings.ContainsAny(ref, "/:@") {
		return ""
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return ""
	}
	return named.String()
}
