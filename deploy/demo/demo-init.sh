#!/bin/sh
# One-shot of deploy/docker-compose.yml (service demo-init, the Dovecot image, as root, for its
# openssl): makes the demo's certificates and mailbox passwords on the first `up`, and leaves them
# alone afterwards.
#
#   /init/ca           -> workers and ctl: ca.pem, the demo CA that signed the certificates below
#   /init/old          -> Dovecot "old": tls.crt, tls.key, passwd (the demo user alice)
#   /init/new          -> Dovecot "new": the same for the target server
#   /init/coordinator  -> the coordinator: tls.crt, tls.key for its gRPC API
#   /init/ctl          -> the ctl service: alice-old.password, alice-new.password
#
# Why TLS with a private CA, and not plaintext on the compose network: mailferry refuses to send
# a password in clear to a host that is not on loopback (unless --allow-insecure-auth), ctl warns
# when the API token would cross the network in clear, and the demo should show the setup a real
# migration uses: IMAP with STARTTLS on port 143 verified against the CA given with --src-ca /
# --dst-ca, and the API over https. The CA's key never leaves this container.
set -eu
umask 077

MAILFERRY_UID=10001 # the user of deploy/Dockerfile's runtime stage

password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

if [ ! -s /init/ca/ca.pem ]; then
  work=$(mktemp -d)
  openssl req -x509 -new -nodes -days 3650 -sha256 \
    -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=mailferry demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  for host in old new coordinator; do
    openssl req -new -nodes -sha256 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "/init/$host/tls.key" -out "$work/$host.csr" -subj "/CN=$host" 2>/dev/null
    # The compose service name is the host name clients connect to; the coordinator's API is
    # also published on the host's loopback.
    names="DNS:$host"
    [ "$host" = coordinator ] && names="$names,DNS:localhost,IP:127.0.0.1"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
      "subjectAltName=$names" >"$work/$host.ext"
    openssl x509 -req -in "$work/$host.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
      -CAcreateserial -days 825 -sha256 -extfile "$work/$host.ext" \
      -out "/init/$host/tls.crt" 2>/dev/null
    chmod 0600 "/init/$host/tls.key"
    chmod 0644 "/init/$host/tls.crt"
  done
  # Dovecot reads its key as root; the coordinator runs as the image's user.
  chown "$MAILFERRY_UID:$MAILFERRY_UID" /init/coordinator/tls.key
  chmod 0644 "$work/ca.pem"
  mv "$work/ca.pem" /init/ca/ca.pem
  rm -rf "$work"
  echo "demo-init: new demo CA, certificates for old, new and coordinator"
fi

for host in old new; do
  [ -s "/init/$host/passwd" ] && continue
  pw=$(password)
  # passwd-file: user:{scheme}password:uid:gid:gecos:home:shell:extra. The empty fields make it a
  # userdb entry too (dovecot.conf fills in uid, gid and home). Read by Dovecot's auth process.
  printf 'alice:{PLAIN}%s::::::\n' "$pw" >"/init/$host/passwd.tmp"
  chown root:dovecot "/init/$host/passwd.tmp"
  chmod 0640 "/init/$host/passwd.tmp"
  mv "/init/$host/passwd.tmp" "/init/$host/passwd"
  printf '%s\n' "$pw" >"/init/ctl/alice-$host.password"
  chown "$MAILFERRY_UID:$MAILFERRY_UID" "/init/ctl/alice-$host.password"
  chmod 0400 "/init/ctl/alice-$host.password"
  echo "demo-init: new password for alice on $host"
done
echo "demo-init: done"
