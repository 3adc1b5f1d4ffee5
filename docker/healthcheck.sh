#!/bin/bash
# natter-healthcheck: the image's HEALTHCHECK — GET /healthz on the node's --listen port over
# bash's /dev/tcp, so the image needs no curl or wget. Exits 0 when the answer is 200.
port=${NATTER_LISTEN:-0.0.0.0:8080}
port=${port##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) exit 1 ;;
esac
