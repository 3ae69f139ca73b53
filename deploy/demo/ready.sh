#!/bin/bash
# Healthcheck of a mailferry container: GET /ready on the admin port (200 when connected and
# serving, 503 while starting or draining). The image has no curl; bash's /dev/tcp is enough.
# Usage: ready.sh [PORT] (default 9090)
set -eu
exec 3<>"/dev/tcp/127.0.0.1/${1:-9090}"
printf 'GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 5 _ status _ <&3
[ "$status" = 200 ]
