#!/bin/sh
# A client that knows only SQL: it enqueues, watches and cancels Conveyor jobs with the `conveyor.*` functions and
# views of the PostgreSQL backend (docs/postgres.md); Python workers (tasks.py) run the jobs.
#
#   export DATABASE_URL=postgresql://app@127.0.0.1:5432/app
#   sh client.sh order ada@example.org "a book"    # an order and its receipt job, in one transaction: the job id
#   sh client.sh wait <job id>                      # until the job ends: its status and result
#   sh client.sh remind ada@example.org             # a job an hour from now: its id
#   sh client.sh cancel <job id>                    # the job's status after the cancel
#   sh client.sh history <job id>                   # the job's transitions
set -eu
: "${DATABASE_URL:?set DATABASE_URL to the PostgreSQL database Conveyor uses}"
cd "$(dirname "$0")"
sql() { psql "$DATABASE_URL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
# a statement with psql variables (:'name'), which `psql -c` would not substitute: read from standard input
query() { statement=$1; shift; printf '%s\n' "$statement" | sql "$@"; }

case "${1:-}" in
  order)
    sql -f schema.sql
    sql -v email="$2" -v item="$3" -f order.sql ;;
  wait)
    while :; do
      status=$(query "SELECT status FROM conveyor.jobs WHERE id = :'id'" -v id="$2")
      case "$status" in
        completed|failed|cancelled) break ;;
        "") echo "no job $2" >&2; exit 1 ;;
      esac
      sleep 0.2
    done
    query "SELECT status, coalesce(result::text, error, '') FROM conveyor.jobs WHERE id = :'id'" -F ' ' -v id="$2" ;;
  remind)
    query "SELECT conveyor.enqueue('remind', jsonb_build_object('email', :'email'), queue => 'mail', delay => 3600)" \
      -v email="$2" ;;
  cancel)
    query "SELECT conveyor.cancel(:'id')" -v id="$2" ;;
  history)
    query "SELECT coalesce(from_status, '-'), to_status FROM conveyor.job_events WHERE job_id = :'id' ORDER BY id" \
      -F ' ' -v id="$2" ;;
  *)
    sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
