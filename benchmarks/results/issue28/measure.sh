#!/usr/bin/env bash
# Issue 28's measurements, as run for BENCHMARKS.md ("Results (issue 28)"), from the
# checkout measured as "after" (its .venv installed editable from it), with the code
# before issue 28 in a worktree:  git worktree add --detach /work/wt-before ae8b182
#   benchmarks/results/issue28/measure.sh t1   # CPU per message, before/after, alternating
#   benchmarks/results/issue28/measure.sh t2   # 3 nodes, spread: send vs edit vs delete
set -u
cd "$(dirname "$0")/../../.."
BEFORE=${BEFORE:-/work/wt-before/src}
OUT=benchmarks/results/issue28
MARIADB_T1=mysql://root@127.0.0.1:3306/ecigdis_bench_i28
MARIADB_T2=mysql://root@127.0.0.1:3306/i28_nodes

database() {  # drop and create a MariaDB database, so that every run starts empty
  .venv/bin/python - "$1" <<'PY'
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
c.cursor().execute(f"DROP DATABASE IF EXISTS `{sys.argv[1]}`")
c.cursor().execute(f"CREATE DATABASE `{sys.argv[1]}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
PY
}

note() { echo "$(date -u +%H:%M:%S) $* (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$1/runs.log"; }

t1_run() {  # database, before|after, run number
  local db=$1 variant=$2 i=$3 dir=$OUT/t1 source=()
  [ "$variant" = before ] && source=(--source "$BEFORE")
  [ "$db" = mariadb ] && database ecigdis_bench_i28
  note "$dir" "start $db $variant $i"
  .venv/bin/python benchmarks/budget.py --target "ours-$db" --clients 1000 --rate 2000 \
      --window 15 --no-profile --mariadb-url "$MARIADB_T1" "${source[@]}" \
      --out "$dir/$db-$variant-$i" > "$dir/$db-$variant-$i.log" 2>&1
  note "$dir" "end $db $variant $i: exit $? $(tail -1 "$dir/$db-$variant-$i.log")"
}

t2_run() {  # database, run number
  local db=$1 i=$2 dir=$OUT/t2 url
  if [ "$db" = mariadb ]; then database i28_nodes; url=$MARIADB_T2
  else rm -rf "/tmp/i28-nodes-$i"; mkdir -p "/tmp/i28-nodes-$i"; url=sqlite:////tmp/i28-nodes-$i/nodes.db; fi
  note "$dir" "start $db $i"
  PYTHONPATH=$PWD/src .venv/bin/python benchmarks/nodes.py --layouts spread --modes per-room \
      --rate 300 --change-share 0.1 --delete-share 0.05 --change-delay 1 --warmup 5 \
      --duration 20 --database-url "$url" --out "$dir/$db-$i" > "$dir/$db-$i.log" 2>&1
  note "$dir" "end $db $i: exit $?"
}

case "${1:-}" in
  t1) mkdir -p "$OUT/t1"
      for db in ${DATABASES:-sqlite mariadb}; do
        for i in 1 2 3; do t1_run "$db" before "$i"; t1_run "$db" after "$i"; done
      done ;;
  t2) mkdir -p "$OUT/t2"
      for db in ${DATABASES:-sqlite mariadb}; do for i in 1 2; do t2_run "$db" "$i"; done; done ;;
  *) echo "usage: $0 t1|t2" >&2; exit 2 ;;
esac
