#!/bin/sh
# Patroni callback (postgresql.callbacks.on_role_change): after a node becomes the primary, gather
# planner statistics on every database of it (ANALYZE, in stages), then exit.
#
# Why: ANALYZE's results (pg_statistic) are replicated, but the counters that trigger autoanalyze
# (pg_stat_user_tables.n_mod_since_analyze, ...) are not: a promoted node starts them at zero. A
# table that had grown or changed a lot since its last ANALYZE on the old primary keeps its stale
# statistics on the new one until as many changes again have been made there, and its plans can be
# badly wrong meanwhile (GET /clients/{id} took 60-70 ms instead of 1-2 ms after a failover: issue
# 21). `--analyze-in-stages` gives every table rough statistics within seconds and then better
# ones; the service is already serving meanwhile.
#
# Patroni runs it as `on-role-change.sh on_role_change <role> <cluster>`, as the user Patroni
# runs as, with Patroni's environment: say where the node's PostgreSQL listens with PGHOST (its
# unix socket directory or 127.0.0.1) and PGPORT there, and PGUSER if not `postgres`. PG_BIN: where
# psql and vacuumdb are (/usr/lib/postgresql/15/bin by default). Patroni calls it right after
# `pg_ctl promote`, without waiting for the promotion to end: it waits for that itself (up to a
# minute), since ANALYZE is refused during recovery.
#
# docs/high-availability.md, "After a promotion"; used by test/topology/failover.test.ts.
set -eu

role="${2:-}"
case "$role" in
  master | primary) ;;
  *) exit 0 ;;
esac

bin="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export PGUSER="${PGUSER:-postgres}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"

tries=0
until [ "$("$bin/psql" -XAtqc 'select pg_is_in_recovery()' -d postgres 2>/dev/null || true)" = f ]; do
  tries=$((tries + 1))
  if [ "$tries" -ge 600 ]; then
    echo "on-role-change: still in recovery after a minute; no ANALYZE" >&2
    exit 1
  fi
  sleep 0.1
done

echo "on-role-change: promoted; analyzing every database in stages" >&2
exec "$bin/vacuumdb" --all --analyze-in-stages --quiet
