#!/bin/sh
# Startup: passes once the dataset is loaded and the server answers PONG. Its budget
# (periodSeconds x failureThreshold) must cover the worst-case load time of the AOF/RDB.
. "$(dirname "$0")/probe-common.sh"
check_ready startup
