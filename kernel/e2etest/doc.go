// Package e2etest holds shoal's end-to-end tests and benchmarks with real
// containers: each starts a one-node cluster as a real `shoal agent`
// process (a manager with its own worker, the bundled executor-containerd
// next to the binary, and the node's own containerd), imports the test
// image (internal/testimage) with `shoal image import`, and drives it with
// the `shoal` CLI and the control API, as an operator would.
//
// The tests need root, containerd and runc (Debian's packages); they skip
// when these are missing. The benchmarks (go test -bench . ./kernel/e2etest)
// measure a service from create to running through the whole system.
package e2etest
