#!/bin/sh
# Regenerates the example in this directory: a province hub of three servers and one city leaf server,
# every user an nkey, TLS everywhere. Only the files without a secret are kept here (the seeds and TLS
# keys go to the machines that need them; see docs/parts/natsops.md). tests/test_nats_ops_deploy.py
# checks that a fresh run gives the same shape and that nats-server accepts each configuration.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
appraise deploy tls-ca --out-dir "$work/ca" >/dev/null
appraise deploy nats-hierarchy --out-dir "$work/out" --topology "$here/topology.json" \
  --hub-host nats-1.sc.example --hub-host nats-2.sc.example --hub-host nats-3.sc.example \
  --city-host 'nats-{city}.sc.example' --ca-dir "$work/ca" --tls-dir /etc/nats/tls
for f in hub-1.conf hub-2.conf hub-3.conf 5101.conf credentials.json streams.json; do
  cp "$work/out/$f" "$here/$f"
done
