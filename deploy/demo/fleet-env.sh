#!/bin/sh
# Entrypoint of the coordinator and the workers in deploy/docker-compose.yml: mailferry takes the
# RabbitMQ and Redis URLs from the environment only (they hold passwords, so never from flags),
# and compose cannot put a value generated at run time into `environment:`. So this reads them
# from the files fleet-init wrote and runs `mailferry "$@"` with them. In Kubernetes the same two
# variables come from a Secret and no wrapper is needed.
set -eu
MAILFERRY_AMQP_URL=$(cat /run/mailferry/amqp-url)
MAILFERRY_REDIS_URL=$(cat /run/mailferry/redis-url)
export MAILFERRY_AMQP_URL MAILFERRY_REDIS_URL
exec mailferry "$@"
