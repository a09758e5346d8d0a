#!/usr/bin/env bash
# The Debian package, checked by the real tools: built with cargo-deb from the release binary,
# installed with dpkg -i on this machine, its config checked by the installed binary, its unit
# verified and rated by systemd-analyze, then removed (dpkg -r) and purged.
#
#   cargo build --release --locked && sudo tests/deploy/check-deb.sh
#
# Needs root, cargo-deb (cargo install --locked cargo-deb), dpkg and systemd-analyze (systemd).
# Refuses to run where the package or its binary is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "check-deb: FAILED: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || fail "$1 is missing: $2"; }
need cargo-deb "cargo install --locked cargo-deb"
need dpkg "the Debian package dpkg"
need systemd-analyze "the Debian package systemd"
[ "$(id -u)" -eq 0 ] || fail "must run as root (dpkg -i)"
package=fargate-health-monitor
if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q installed \
    || [ -e /usr/bin/$package ]; then
    fail "$package is already installed here; this check installs and removes it"
fi

echo "--- cargo deb"
cargo deb --no-build --locked
deb=$(ls -t target/debian/${package}_*_amd64.deb | head -1)
echo "package: $deb ($(($(stat -c %s "$deb") / 1024)) KiB)"
dpkg-deb --info "$deb" | grep -E '^ (Package|Version|Depends|Installed-Size):'

installed=
cleanup() { [ -z "$installed" ] || dpkg --purge "$package" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "--- dpkg -i"
dpkg -i "$deb"
installed=1
unit=/usr/lib/systemd/system/$package.service
for file in /usr/bin/$package "$unit" /etc/$package/config.toml /etc/$package/environment \
    /usr/share/doc/$package/README.md /usr/share/doc/$package/CHANGELOG.md \
    /usr/share/doc/$package/copyright /usr/share/doc/$package/examples/config.toml; do
    [ -f "$file" ] || fail "$file is not installed"
done
[ "$(stat -c %a /etc/$package/credentials)" = 700 ] \
    || fail "/etc/$package/credentials is not a 0700 directory"
conffiles=$(dpkg-query -W -f='${Conffiles}' "$package")
for conffile in /etc/$package/config.toml /etc/$package/environment; do
    grep -q " $conffile " <<<"$conffiles" || fail "$conffile is not a conffile: $conffiles"
done
echo "installed: binary, unit, conffiles, credentials directory, docs"

echo "--- the installed binary checks the installed config"
/usr/bin/$package --version
/usr/bin/$package check --config /etc/$package/config.toml

echo "--- systemd-analyze on the installed unit"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify said: $out"
echo "verify: clean"
systemd-analyze security --offline=yes --threshold=15 "$unit" >"${TMPDIR:-/tmp}/fhm-security.$$" 2>&1 \
    || { cat "${TMPDIR:-/tmp}/fhm-security.$$"; rm -f "${TMPDIR:-/tmp}/fhm-security.$$"; fail "security"; }
grep -o "Overall exposure level for $package.service: .*" "${TMPDIR:-/tmp}/fhm-security.$$"
rm -f "${TMPDIR:-/tmp}/fhm-security.$$"

# The credential path the installed config names is where the installed unit puts the file.
id=$(sed -n "s|^LoadCredential=\([^:]*\):/etc/$package/credentials$|\1|p" "$unit")
[ -n "$id" ] || fail "the unit does not load /etc/$package/credentials"
grep -q "/run/credentials/$package.service/${id}_slack-webhook-url" /etc/$package/config.toml \
    || fail "the installed config does not name /run/credentials/$package.service/${id}_<file>"
echo "credentials: /etc/$package/credentials/<file> is /run/credentials/$package.service/${id}_<file>"

echo "--- dpkg -r, then --purge"
dpkg -r "$package"
[ ! -e /usr/bin/$package ] || fail "dpkg -r left the binary"
[ ! -e "$unit" ] || fail "dpkg -r left the unit"
[ -f /etc/$package/config.toml ] || fail "dpkg -r removed the conffile (only --purge should)"
dpkg --purge "$package"
installed=
[ ! -e /etc/$package ] || fail "dpkg --purge left /etc/$package"
echo "check-deb: all passed"
