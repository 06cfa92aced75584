# Shared by the examples' run.sh (sourced, from the repository root):
# the image, a bounded wait, a bounded load loop, cleanup on exit.

set -euo pipefail

# The image: $SHOAL_IMAGE when given (the tests pass the one they built),
# else scripts/image builds shoal:latest from a release build.
ensure_image() {
  if [ -z "${SHOAL_IMAGE:-}" ]; then
    scripts/image
    SHOAL_IMAGE=shoal:latest
  fi
  export SHOAL_IMAGE
  # The agent's container runs unprivileged: the socket's group lets it in.
  DOCKER_GID="$(stat -c %g /var/run/docker.sock)"
  export DOCKER_GID
}

now_ms() { date +%s%3N; }

# wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until
# it succeeds; fails the example after SECONDS.
wait_until() {
  local limit="$1" what="$2"; shift 2
  local deadline=$(( $(now_ms) + limit * 1000 ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(now_ms)" -gt "$deadline" ]; then
      echo "FAILED: $what: not within ${limit}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# load_start URL HOST: GETs URL with Host: HOST in a loop, in the
# background, at most LOAD_MAX requests (20000) or LOAD_SECONDS (120 s),
# until load_stop; every answer's status goes to $LOAD_LOG.
load_start() {
  LOAD_LOG="$(mktemp)"
  LOAD_STOP="$LOAD_LOG.stop"
  local url="$1" host="$2" max="${LOAD_MAX:-20000}" secs="${LOAD_SECONDS:-120}"
  (
    end=$(( $(date +%s) + secs ))
    for _ in $(seq 1 "$max"); do
      [ -e "$LOAD_STOP" ] && break
      [ "$(date +%s)" -ge "$end" ] && break
      code="$(curl -s -o "$LOAD_LOG.body" -w '%{http_code}' --max-time 30 -H "Host: $host" "$url")" || code="curl-error($?)"
      echo "$code"
      [ "$code" = 200 ] || echo "$code: $(head -c 300 "$LOAD_LOG.body" 2>/dev/null)" >>"$LOAD_LOG.errors"
    done >"$LOAD_LOG"
  ) &
  LOAD_PID=$!
}

# load_stop: ends the loop; sets LOAD_OK and LOAD_FAILED.
load_stop() {
  touch "$LOAD_STOP"
  wait "$LOAD_PID" || true
  LOAD_OK=$(grep -c '^200$' "$LOAD_LOG" || true)
  LOAD_FAILED=$(grep -vc '^200$' "$LOAD_LOG" || true)
  if [ "$LOAD_FAILED" -gt 0 ]; then
    echo "failed answers:" >&2
    grep -v '^200$' "$LOAD_LOG" | sort | uniq -c >&2
    echo "the first of them:" >&2
    head -5 "$LOAD_LOG.errors" >&2
  fi
  rm -f "$LOAD_LOG" "$LOAD_STOP" "$LOAD_LOG.body" "$LOAD_LOG.errors"
}

# hostnames URL HOST N: the distinct instances (hostnames) among N answers of /json.
hostnames() {
  local url="$1" host="$2" n="$3"
  for _ in $(seq 1 "$n"); do
    curl -s --max-time 5 -H "Host: $host" "$url/json" | grep -o '"hostname": *"[^"]*"' || true
  done | sort -u | wc -l
}
