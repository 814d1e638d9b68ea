#!/bin/sh
# Runs a job and streams its progress to eventsrv as a task: POST /task on
# the local socket (LISTEN_SOCKET), with curl. Subscribers of task.* (the
# console's Tasks view, say) see the task's title, a progress bar and its
# messages live, then "done"; if this script is killed, the connection
# breaks and the task shows "failed" ("producer disconnected").
#
#   LISTEN_SOCKET=/tmp/eventsrv.sock ./eventsrv &
#   EVENTSRV_SOCKET=/tmp/eventsrv.sock sh examples/task-progress.sh
#
# The first line of the body is the title; each later line is a message, or
# a JSON object with "progress" (0 to 1) and "message".
set -eu
socket=${EVENTSRV_SOCKET:-/run/eventsrv/eventsrv.sock}
step=${STEP_SECONDS:-1} # how long each part of the pretend job takes

job() {
  echo "Resize 4 images"
  for i in 1 2 3 4; do
    sleep "$step" # the work
    echo "{\"progress\": $(( i * 25 ))e-2, \"message\": \"image $i of 4 done\"}"
  done
}

# -T - streams stdin as it comes (chunked); -X POST because -T means PUT.
job | curl -sS --fail-with-body --unix-socket "$socket" -X POST -T - http://localhost/task
echo
