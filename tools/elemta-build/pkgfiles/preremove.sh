#!/bin/sh
# Stop the service before its binary goes away.
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop elemta.service >/dev/null 2>&1 || true
	systemctl disable elemta.service >/dev/null 2>&1 || true
fi
exit 0
