#!/usr/bin/env bash
# The key ceremony's steps as commands (deploy/KEY-CEREMONY.md says who runs which, where).
#   key-ceremony.sh generate DIR CODE                         on the node's own machine: its key; prints the public key
#   key-ceremony.sh certify ISSUER_DIR ISSUER_CODE CODE NAME LEVEL PUBLIC_KEY OUT_DIR
#                                                             on the parent's machine: the child's chain (OUT_DIR/chain.pb)
#   key-ceremony.sh token DIR                                 the node's admin token (32 random bytes, hex)
#   key-ceremony.sh k8s-secret HOST KEYS_ROOT CODE...         prints the kubectl command for host-HOST-keys
#   key-ceremony.sh systemd HOST KEYS_ROOT CODE...            installs them flat as /etc/fedappraisal/credentials/HOST/<code>.<file>
# DIR holds one node's files: key.pem, chain.pb (not the province), admin.token, tls.pem, tls.key.
set -euo pipefail
umask 077
APPRAISE=${APPRAISE:-appraise}

die() { echo "错误 (error): $*" >&2; exit 2; }

cmd=${1:-}; shift || true
case "$cmd" in
  generate)
    [ $# -eq 2 ] || die "generate DIR CODE"
    mkdir -p "$1"
    "$APPRAISE" keys generate --out "$1/key.pem" ;;
  certify)
    [ $# -eq 7 ] || die "certify ISSUER_DIR ISSUER_CODE CODE NAME LEVEL PUBLIC_KEY OUT_DIR"
    issuer_dir=$1 issuer_code=$2 code=$3 name=$4 level=$5 public_key=$6 out=$7
    mkdir -p "$out"
    chain=()
    [ -f "$issuer_dir/chain.pb" ] && chain=(--issuer-chain "$issuer_dir/chain.pb")
    "$APPRAISE" keys certify --issuer-key "$issuer_dir/key.pem" "${chain[@]}" --issuer-code "$issuer_code" \
      --code "$code" --name "$name" --level "$level" --public-key "$public_key" --out "$out/chain.pb" ;;
  token)
    [ $# -eq 1 ] || die "token DIR"
    mkdir -p "$1"
    [ -e "$1/admin.token" ] && die "$1/admin.token 已存在，不覆盖 (exists; not overwritten)"
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$1/admin.token" ;;
  k8s-secret)
    [ $# -ge 3 ] || die "k8s-secret HOST KEYS_ROOT CODE..."
    host=$1 root=$2; shift 2
    args=(--from-file="ca.pem=$root/ca.pem")
    for code in "$@"; do
      for f in key.pem chain.pb admin.token tls.pem tls.key; do
        [ -f "$root/$code/$f" ] && args+=(--from-file="$code.$f=$root/$code/$f")
      done
    done
    echo kubectl -n fedappraisal-51 create secret generic "host-$host-keys" "${args[@]}" ;;
  systemd)
    [ $# -ge 3 ] || die "systemd HOST KEYS_ROOT CODE..."
    host=$1 root=$2; shift 2
    dest=${CREDENTIALS:-/etc/fedappraisal/credentials}/$host
    install -d -m 0700 "$dest"
    install -m 0400 "$root/ca.pem" "$dest/ca.pem"
    for code in "$@"; do
      for f in key.pem chain.pb admin.token tls.pem tls.key; do
        [ -f "$root/$code/$f" ] && install -m 0400 "$root/$code/$f" "$dest/$code.$f"
      done
    done
    echo "$dest" ;;
  *) die "用法 (usage): generate | certify | token | k8s-secret | systemd (see the header of $0)" ;;
esac
