#!/bin/sh
# Create the elemta system user and its state directory, then tell systemd
# about the unit (it is not started: review /etc/elemta/elemta.toml first,
# then `systemctl enable --now elemta`).
set -e
if ! getent group elemta >/dev/null; then
	groupadd --system elemta
fi
if ! getent passwd elemta >/dev/null; then
	useradd --system --gid elemta --home-dir /var/lib/elemta --no-create-home \
		--shell /usr/sbin/nologin --comment "Elemta MTA" elemta
fi
install -d -o elemta -g elemta -m 0750 /var/lib/elemta /var/lib/elemta/var
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
