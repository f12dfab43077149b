#!/usr/bin/env bash
# Install what the Cyrus IMAP test harness (tests/mail/cyrus.py) needs; run as root by .ci/run. Idempotent.
#
# cyrus-common (master, lmtpd, ctl_cyrusdb, reconstruct, mbpath) installs with apt. cyrus-imapd cannot:
# it and dovecot-imapd both provide imap-server and conflict, and the Dovecot tests need dovecot-imapd.
# So imapd, pop3d (cyrus-pop3d) and promstatsd (cyrus-admin) are downloaded at exactly the installed
# cyrus-common version (they link against its private libraries) and unpacked, not installed, into
#   ${1:-${HOSTVIGIL_CYRUS_X:-/var/cache/hostvigil-tests/cyrus-x}}
# which is where the harness looks (HOSTVIGIL_CYRUS_X overrides it there too). A VERSION file there
# records what was unpacked; a second run with the same cyrus-common version does nothing.
# util-linux (unshare) and mount are essential packages; the harness needs overlayfs for a private /dev/log.
set -euo pipefail

dest=${1:-${HOSTVIGIL_CYRUS_X:-/var/cache/hostvigil-tests/cyrus-x}}
packages=(cyrus-imapd cyrus-pop3d cyrus-admin)

if [ "$(id -u)" != 0 ]; then
    echo "fetch-cyrus.sh: must run as root (apt-get install cyrus-common)" >&2
    exit 1
fi

if ! dpkg-query -W -f='${Status}' cyrus-common 2>/dev/null | grep -q 'install ok installed'; then
    # A Debian MTA is already here (postfix), which satisfies cyrus-common's default-mta dependency.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cyrus-common >/dev/null
fi
version=$(dpkg-query -W -f='${Version}' cyrus-common)

if [ -x "$dest/usr/lib/cyrus/bin/imapd" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ]; then
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt-get download fetches as _apt: give it the directory so that it need not fall back to root.
if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
download() { (cd "$work" && apt-get download -qq "${packages[@]/%/=$version}"); }
if ! download 2>/dev/null; then
    apt-get update -qq   # stale lists: the pinned version is no longer on the mirror they name
    download
fi

rm -rf "$dest.new"
mkdir -p "$dest.new"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$dest.new"
done
echo "$version" >"$dest.new/VERSION"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "fetch-cyrus.sh: Cyrus $version (imapd, pop3d, promstatsd) in $dest"
