#!/usr/bin/env bash
# Create the instance database named by FLUX_DEPTH_PG_DB if it does not exist yet (idempotent).
# Dagster creates its tables on first use; this only makes the empty database.
set -euo pipefail
: "${FLUX_DEPTH_PG_HOST:=127.0.0.1}" "${FLUX_DEPTH_PG_PORT:=5432}"
: "${FLUX_DEPTH_PG_USER:=postgres}" "${FLUX_DEPTH_PG_DB:=flux_depth_dagster}"
export PGPASSWORD="${FLUX_DEPTH_PG_PASSWORD:-}"
psql=(psql -h "$FLUX_DEPTH_PG_HOST" -p "$FLUX_DEPTH_PG_PORT" -U "$FLUX_DEPTH_PG_USER" -d postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '${FLUX_DEPTH_PG_DB//\'/\'\'}'")" = "1" ]; then
  echo "database $FLUX_DEPTH_PG_DB already exists on $FLUX_DEPTH_PG_HOST:$FLUX_DEPTH_PG_PORT"
else
  "${psql[@]}" -c "CREATE DATABASE \"${FLUX_DEPTH_PG_DB//\"/\"\"}\""
  echo "created database $FLUX_DEPTH_PG_DB on $FLUX_DEPTH_PG_HOST:$FLUX_DEPTH_PG_PORT"
fi
