package ctrexec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoalhq/shoal/sdk"
)

// progressEvery is how often a pull reports its progress: often enough to
// show movement, rarely enough not to flood the task's status.
const progressEvery = time.Second

// normalizeRef turns a user's image name into containerd's full reference:
// "web" is "docker.io/library/web:latest".
func normalizeRef(image string) (string, error) {
	named, err := reference.ParseDockerRef(image)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %v", image, err)
	}
	return named.String(), nil
}

// registryHosts resolves a registry host to how it is reached.
type registryHosts = docker.RegistryHosts

// newRegistryHosts pulls from loopback registries and the insecure ones
// over plain HTTP, from every other over HTTPS. Connections time out so
// that an unreachable registry fails a pull instead of hanging it.
func newRegistryHosts(insecure []string) registryHosts {
	plain := map[string]bool{}
	for _, h := range insecure {
		plain[h] = true
	}
	transport := docker.DefaultHTTPTransport(nil)
	transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	transport.ResponseHeaderTimeout = 30 * time.Second
	return docker.ConfigureDefaultRegistries(
		docker.WithClient(&http.Client{Transport: transport}),
		docker.WithPlainHTTP(func(host string) (bool, error) {
			if plain[host] {
				return true, nil
			}
			if h, _, err := net.SplitHostPort(host); err == nil && plain[h] {
				return true, nil
			}
			return docker.MatchLocalhost(host)
		}),
	)
}

// ensureImage returns the image, unpacked for the snapshotter, pulling it
// first when the node does not have it. Errors name the image.
func (e *Executor) ensureImage(ctx context.Context, c *client.Client, image string, progress func(string)) (client.Image, error) {
	ref, err := normalizeRef(image)
	if err != nil {
		return nil, sdk.FieldErrors{{Field: "task.spec.container.image", Message: err.Error()}}
	}
	e.mu.RLock()
	snapshotter, hosts, timeout := e.cfg.Snapshotter, e.hosts, e.pullTime
	e.mu.RUnlock()
	// The common case, an image the node has unpacked, needs no lock: the
	// tasks of a service prepared at once used to queue here one by one,
	// for two containerd round trips each.
	if img, err := c.GetImage(ctx, ref); err == nil {
		if unpacked, err := img.IsUnpacked(ctx, snapshotter); err == nil && unpacked {
			return img, nil
		}
	}
	// Tasks of one service prepared at once pull their image once: the
	// others wait here, then find it.
	unlock, err := e.imageLocks.lock(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	img, err := c.GetImage(ctx, ref)
	if err == nil {
		unpacked, err := img.IsUnpacked(ctx, snapshotter)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", image, kind(err))
		}
		if !unpacked {
			progress("unpacking " + image)
			if err := img.Unpack(ctx, snapshotter); err != nil {
				return nil, fmt.Errorf("unpack %s: %w", image, kind(err))
			}
		}
		return img, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %s: %w", image, kind(err))
	}

	pullCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	progress("pulling " + image)
	tracker := &pullTracker{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tracker.report(pullCtx, c.ContentStore(), image, progress, stop)
	}()
	img, err = c.Pull(pullCtx, ref,
		client.WithResolver(docker.NewResolver(docker.ResolverOptions{Hosts: hosts})),
		client.WithPullUnpack,
		client.WithPullSnapshotter(snapshotter),
		client.WithImageHandler(images.HandlerFunc(tracker.handle)),
	)
	close(stop)
	wg.Wait()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("pull %s: not done within %v (config.pull_timeout): %w", image, timeout, sdk.ErrUnavailable)
		}
		return nil, fmt.Errorf("pull %s: %w", image, kind(err))
	}
	progress(fmt.Sprintf("pulled %s (%s)", image, mb(tracker.total())))
	e.log.Info("image pulled", "image", ref)
	return img, nil
}

// pullTracker learns the blobs of an image as the pull walks it, so that
// its progress can be told from the content store's ingestions.
type pullTracker struct {
	mu    sync.Mutex
	blobs map[string]int64 // digest to size
}

func (p *pullTracker) handle(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blobs == nil {
		p.blobs = map[string]int64{}
	}
	p.blobs[desc.Digest.String()] = desc.Size
	return nil, nil
}

func (p *pullTracker) total() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, size := range p.blobs {
		n += size
	}
	return n
}

// report sends "pulling IMAGE: X MB of Y MB" every progressEvery until
// stop closes: bytes of blobs done plus those of ingestions in flight.
func (p *pullTracker) report(ctx context.Context, cs content.Store, image string, progress func(string), stop <-chan struct{}) {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.mu.Lock()
		blobs := make(map[string]int64, len(p.blobs))
		for d, s := range p.blobs {
			blobs[d] = s
		}
		p.mu.Unlock()
		statuses, err := cs.ListStatuses(ctx)
		if err != nil {
			continue
		}
		active := map[string]int64{}
		for _, st := range statuses {
			for d := range blobs {
				if strings.HasSuffix(st.Ref, d) {
					active[d] = st.Offset
				}
			}
		}
		var done, total int64
		for d, size := range blobs {
			total += size
			if off, ok := active[d]; ok {
				done += off
			} else if _, err := cs.Info(ctx, digest.Digest(d)); err == nil {
				done += size
			}
		}
		progress(fmt.Sprintf("pulling %s: %s of %s", image, mb(done), mb(total)))
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// keyedLock is a mutex per key whose Lock gives up when ctx ends.
type keyedLock struct {
	mu    sync.Mutex
	locks map[string]*refLock
}

type refLock struct {
	ch    chan struct{} // holds a token while locked
	users int           // holders and waiters; guarded by keyedLock.mu
}

// lock takes key's lock and returns how to release it.
func (k *keyedLock) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &refLock{ch: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
