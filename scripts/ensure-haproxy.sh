#!/usr/bin/env bash
# Make sure HAProxy (the sandbox cloud's load balancer) is installed: apt-get when we are root
# and it is missing, else say how to install it. Never fails the setup: only the sandbox needs it.
set -u
if command -v haproxy >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing HAProxy (apt-get install haproxy) for the local sandbox cloud"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null; then
    exit 0
  fi
  echo "warning: apt-get could not install haproxy" >&2
fi
echo "warning: HAProxy is not installed; the local sandbox cloud needs it." >&2
echo "         Debian/Ubuntu: sudo apt-get install -y haproxy   macOS: brew install haproxy" >&2
exit 0
