#!/usr/bin/env bash
# The OCI tests push to and pull from a stock registry (CNCF distribution, Debian's docker-registry package) that
# they start on a port of their own; htpasswd (apache2-utils) writes the bcrypt password file of its auth tests.
set -u
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
  echo "ensure-registry: installing ${missing[*]} (Debian packages)"
  # Debian starts the registry it installs where it can (systemd, a policy-rc.d permitting): the tests start their own.
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; }
fi
command -v docker-registry >/dev/null 2>&1 || echo "ensure-registry: could not install docker-registry; the OCI tests will fail"
exit 0
