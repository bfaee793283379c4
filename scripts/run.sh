#!/usr/bin/env bash
# Starts a one-node shoal cluster from config.example.toml in the background
# and installs the shoal binary on PATH. Re-running it restarts the node with
# the newly built binary; its state (data_dir) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "make run starts the node daemon as root (it owns /var/lib/shoal and /run/shoal)" >&2
  exit 1
fi

install -m 0755 bin/* /usr/local/bin/
install -d -m 0700 /etc/shoal /var/log/shoal
[ -f /etc/shoal/node.toml ] || install -m 0600 config.example.toml /etc/shoal/node.toml

pidfile=/run/shoal/agent.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "stopping the running agent (pid $(cat "$pidfile"))"
  kill -TERM "$(cat "$pidfile")"
  for _ in $(seq 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
fi

install -d -m 0700 /run/shoal
nohup /usr/local/bin/shoal agent --config /etc/shoal/node.toml >>/var/log/shoal/agent.log 2>&1 &
echo $! >"$pidfile"

up=
for _ in $(seq 150); do
  if shoal node ls >/dev/null 2>&1; then up=1; break; fi
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "the agent exited; its log:" >&2
    tail -n 30 /var/log/shoal/agent.log >&2
    exit 1
  fi
  sleep 0.2
done
if [ -z "$up" ]; then
  echo "the agent did not answer within 30 s; see /var/log/shoal/agent.log" >&2
  exit 1
fi

# The example service: the images `make images` built, loaded into the
# node's own containerd (it starts with the node; give it a moment), then 3
# replicas running as real containers.
for image in build/images/hello-*.tar; do
  for i in $(seq 60); do
    if out=$(shoal image import "$image" 2>&1); then echo "$out"; break; fi
    if [ "$i" -eq 60 ]; then echo "shoal image import $image: $out" >&2; exit 1; fi
    sleep 0.5
  done
done
if ! shoal service inspect hello >/dev/null 2>&1; then
  shoal service create --name hello --replicas 3 --env INTERVAL=5s --restart-delay 1s shoal.local/hello:1
fi
echo
shoal node ls
echo
shoal service ps hello
echo
echo "shoal is running: a one-node cluster (config /etc/shoal/node.toml, log /var/log/shoal/agent.log)"
echo "with the example service 'hello' in 3 containers. Try: shoal service logs hello"
