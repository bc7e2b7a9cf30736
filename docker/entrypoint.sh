#!/bin/sh
# Container entrypoint, and the only place that reads the environment: it turns variables and secret files
# into command-line options (the key and the database password go through files or standard input, never
# a command line, which other processes can read).
#
#   entrypoint.sh [serve] [ARGS...]   pipo-agent serve (the default)
#   entrypoint.sh check [ARGS...]     validate the settings and the checkpoint, print them, exit (serve --check)
#   entrypoint.sh agent TASK [ARGS...]  one agent task against the server, its memory in PIPO_MEMORY_URL
#   entrypoint.sh COMMAND...          any other command, run as is
#
# serve/check: PIPO_HOST (0.0.0.0), PIPO_PORT (8000), PIPO_ENGINE (embedded), PIPO_DEVICE (cpu),
#   PIPO_MODEL (checkpoint dir; default: the shipped model), PIPO_SERVED_MODEL_NAME, PIPO_THREADS, PIPO_MAX_NUM_SEQS, PIPO_MAX_QUEUE,
#   PIPO_GRACE_PERIOD, and the API key: PIPO_API_KEY_FILE (default /run/secrets/pipo_api_key) or PIPO_API_KEY.
#   A non-loopback host without a key is refused at startup.
# agent: PIPO_SERVER_URL (http://server:8000/v1), PIPO_MEMORY_URL (postgresql+asyncpg://user@host/db),
#   PIPO_MEMORY_PASSWORD_FILE, and the same API key variables.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
key_file=${PIPO_API_KEY_FILE:-/run/secrets/pipo_api_key}

# Runs "$@" with the API key option appended: the secret file if readable, else PIPO_API_KEY on stdin.
exec_with_key() {
    if [ -r "$key_file" ]; then
        exec "$@" --api-key-file "$key_file"
    elif [ -n "${PIPO_API_KEY:-}" ]; then
        exec "$@" --api-key-file - <<KEY
$PIPO_API_KEY
KEY
    else
        exec "$@"
    fi
}

serve() {
    set -- pipo-agent serve --host "${PIPO_HOST:-0.0.0.0}" --port "${PIPO_PORT:-8000}" \
        --engine "${PIPO_ENGINE:-embedded}" --device "${PIPO_DEVICE:-cpu}" "$@"
    if [ -n "${PIPO_MODEL:-}" ]; then set -- "$@" --model "$PIPO_MODEL"; fi
    if [ -n "${PIPO_SERVED_MODEL_NAME:-}" ]; then set -- "$@" --served-model-name "$PIPO_SERVED_MODEL_NAME"; fi
    if [ -n "${PIPO_THREADS:-}" ]; then set -- "$@" --threads "$PIPO_THREADS"; fi
    if [ -n "${PIPO_MAX_NUM_SEQS:-}" ]; then set -- "$@" --max-num-seqs "$PIPO_MAX_NUM_SEQS"; fi
    if [ -n "${PIPO_MAX_QUEUE:-}" ]; then set -- "$@" --max-queue "$PIPO_MAX_QUEUE"; fi
    if [ -n "${PIPO_GRACE_PERIOD:-}" ]; then set -- "$@" --grace-period "$PIPO_GRACE_PERIOD"; fi
    exec_with_key "$@"
}

agent() {
    set -- python "$here/run_agent.py" --server-url "${PIPO_SERVER_URL:-http://server:8000/v1}" "$@"
    if [ -n "${PIPO_SERVED_MODEL_NAME:-}" ]; then set -- "$@" --model "$PIPO_SERVED_MODEL_NAME"; fi
    if [ -n "${PIPO_MEMORY_URL:-}" ]; then set -- "$@" --memory-url "$PIPO_MEMORY_URL"; fi
    if [ -n "${PIPO_MEMORY_PASSWORD_FILE:-}" ]; then
        set -- "$@" --memory-password-file "$PIPO_MEMORY_PASSWORD_FILE"
    fi
    exec_with_key "$@"
}

command=${1:-serve}
if [ "$#" -gt 0 ]; then shift; fi
case "$command" in
    serve) serve "$@" ;;
    check) serve "$@" --check ;;
    agent) agent "$@" ;;
    -*) serve "$command" "$@" ;;
    *) exec "$command" "$@" ;;
esac
