#!/bin/sh
# On purge (dpkg --purge; an rpm erase passes 0), remove the state
# directory and the user; a plain remove keeps both, and the spool.
set -e
case "$1" in
purge|0)
	rm -rf /var/lib/elemta
	if getent passwd elemta >/dev/null; then userdel elemta >/dev/null 2>&1 || true; fi
	if getent group elemta >/dev/null; then groupdel elemta >/dev/null 2>&1 || true; fi
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
