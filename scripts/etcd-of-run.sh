#!/usr/bin/env bash
# The etcd processes a test run started: those whose data directory is under $1 (the run's
# NESTJS_ETCD_LOCK_SCRATCH), one pid a line. An etcd the machine runs for itself is not among them.
set -uo pipefail
pgrep -f -- "--data-dir ${1%/}/" || true
