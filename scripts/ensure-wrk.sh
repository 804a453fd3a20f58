#!/usr/bin/env bash
# wrk drives the REST benchmarks (and their smoke run in the tests): install Debian's package when it is missing.
set -u
command -v wrk >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
  echo "ensure-wrk: installing wrk (Debian package)"
  $sudo apt-get install -y -q wrk >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q wrk >/dev/null 2>&1; }
fi
command -v wrk >/dev/null 2>&1 || echo "ensure-wrk: could not install wrk; the REST benchmarks will fail"
exit 0
