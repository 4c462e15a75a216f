#!/bin/sh
# Readiness: PONG and loading:0, so no client is sent to a server that answers LOADING.
. "$(dirname "$0")/probe-common.sh"
check_ready readiness
