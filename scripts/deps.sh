#!/usr/bin/env bash
# Installs what shoal's make targets need on a Debian 12 machine, as root.
# Idempotent and quiet when everything is present.
set -euo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v git >/dev/null || need+=(git)
command -v gcc >/dev/null || need+=(gcc) # go test -race needs cgo
# Real containers: the containerd executor, its tests and task networking.
[ -x /usr/bin/containerd ] || need+=(containerd)
[ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry) # the image pull tests
[ -x /usr/bin/chromium ] || need+=(chromium) # the dashboard's browser test (kernel/e2etest)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables) # task networks' forwarding and NAT rules
# The Python scheduler plugin (examples/scheduler-python) and its stubs (make
# proto): Debian's packages, for Debian's python3.
/usr/bin/python3 -c 'import grpc, google.protobuf, cryptography, grpc_tools' 2>/dev/null ||
  need+=(python3-grpcio python3-protobuf python3-cryptography python3-grpc-tools)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: run as root, or install them with apt-get" >&2
    exit 1
  fi
  echo "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "go is at /usr/local/go/bin: add it to PATH" >&2
  else
    echo "go 1.26 or newer is required (Debian 12's golang package is too old)" >&2
  fi
  exit 1
fi
go mod download
