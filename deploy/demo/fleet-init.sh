#!/bin/sh
# One-shot of deploy/docker-compose.yml (service fleet-init, the mailferry image, as root): makes
# the fleet's secrets on the first `up` and leaves them alone afterwards, so the fleet key that
# sealed the stored credentials and the broker and Redis passwords stay the same across restarts.
# `docker compose down -v` deletes the volumes and with them every secret.
#
#   /init/fleet     -> coordinator, workers: fleet.key, api-tokens, amqp-url, redis-url
#   /init/ctl       -> the ctl service: api-token
#   /init/rabbitmq  -> RabbitMQ: rabbitmq.conf with its (only) user and password
#   /init/redis     -> Redis: redis.conf with its password
#
# Nothing here prints a secret.
set -eu
umask 077

MAILFERRY_UID=10001 # the user of deploy/Dockerfile's runtime stage
SERVICE_UID=999     # the rabbitmq and redis users of the official images

# A random password of 48 hex digits: safe inside a URL without escaping.
password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# write FILE OWNER: stdin to FILE, readable by OWNER only, replaced atomically.
write() {
  cat >"$1.tmp"
  chown "$2:$2" "$1.tmp"
  chmod 0400 "$1.tmp"
  mv "$1.tmp" "$1"
}

if [ ! -s /init/fleet/fleet.key ]; then
  key=$(mailferry keygen) # not in a pipe: a failed keygen must stop this script
  printf '%s\n' "$key" | write /init/fleet/fleet.key "$MAILFERRY_UID"
  echo "fleet-init: new fleet key"
fi

if [ ! -s /init/fleet/api-tokens ]; then
  token=$(password)
  # The coordinator accepts every line of api-tokens; ctl sends the one in api-token.
  echo "$token" | write /init/fleet/api-tokens "$MAILFERRY_UID"
  echo "$token" | write /init/ctl/api-token "$MAILFERRY_UID"
  echo "fleet-init: new API token"
fi

if [ ! -s /init/fleet/amqp-url ]; then
  pw=$(password)
  # RABBITMQ_CONFIG_FILE points here; the image's conf.d defaults still apply besides it.
  # default_user only takes effect when RabbitMQ starts on an empty data directory.
  write /init/rabbitmq/rabbitmq.conf "$SERVICE_UID" <<CONF
default_user = mailferry
default_pass = $pw
CONF
  echo "amqp://mailferry:$pw@rabbitmq:5672/%2f" | write /init/fleet/amqp-url "$MAILFERRY_UID"
  echo "fleet-init: new RabbitMQ password"
fi

if [ ! -s /init/fleet/redis-url ]; then
  pw=$(password)
  # AOF as in production: the copy cache and the leases survive a Redis restart.
  write /init/redis/redis.conf "$SERVICE_UID" <<CONF
requirepass $pw
appendonly yes
CONF
  echo "redis://:$pw@redis:6379/0" | write /init/fleet/redis-url "$MAILFERRY_UID"
  echo "fleet-init: new Redis password"
fi
echo "fleet-init: done"
