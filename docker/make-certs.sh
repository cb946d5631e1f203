#!/usr/bin/env bash
# Makes a throw-away CA and a server certificate for respgate's TLS listener in
# docker/certs/ (git-ignored), for docker/compose.yml. Production certificates come from
# your own CA; this is only so the compose deployment starts.
#   bash docker/make-certs.sh            # certificate for respgate + localhost
# Clients then trust docker/certs/ca.crt:
#   redis-cli -p 6390 --tls --cacert docker/certs/ca.crt --user ops --pass ... PING
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/certs"
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=respgate compose CA" \
  -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj "/CN=respgate" -keyout server.key -out server.csr
printf 'subjectAltName=DNS:respgate,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile ext.cnf -out server.crt
rm -f server.csr ext.cnf ca.srl
# The image runs as uid 10001: the key must be readable by it.
chmod 644 server.key
echo "certificates in $dir" >&2
