#!/usr/bin/env bash
# Builds the container image without a container engine: the contents of the Dockerfile's
# runtime stage (the binary, what it needs from glibc, CA certificates, /etc/passwd with user
# 65532, the default config) from a binary built on this machine, as an OCI image layout.
#
#   cargo build --release --locked
#   deploy/image/build.sh [--binary PATH] [--out DIR] [--tag TAG]
#
# Needs umoci (Debian package umoci) and root (the image's files are owned by root and 65532).
# The result is an OCI layout at DIR (default target/image/oci) holding TAG (default the
# crate's version); push it with skopeo:
#   skopeo copy oci:target/image/oci:0.1.0 docker://ghcr.io/OWNER/fargate-health-monitor:0.1.0
set -euo pipefail

die() { echo "build.sh: $*" >&2; exit 1; }
# Paths given are relative to where the script was called from.
absolute() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
binary=$repo/target/release/fargate-health-monitor
out=$repo/target/image/oci
tag=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case "$1" in
        --binary) binary=$(absolute "$2"); shift 2 ;;
        --out) out=$(absolute "$2"); shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--tag TAG]" >&2; exit 64 ;;
    esac
done
cd "$repo"
command -v umoci >/dev/null || die "umoci is missing: apt-get install umoci"
[ "$(id -u)" -eq 0 ] || die "run as root: the image's files must be owned by root and 65532"
[ -x "$binary" ] || die "no binary at $binary: cargo build --release --locked first"
# The image's architecture is the binary's (ELF e_machine); ldd below runs it through this
# machine's loader, so it must also be this machine's.
case "$(od -An -t x2 -j 18 -N 2 "$binary" | tr -d ' ')" in
    003e) arch=amd64 ;;
    00b7) arch=arm64 ;;
    *) die "$binary is not an x86_64 or aarch64 ELF binary" ;;
esac
[ "$arch" = "$(dpkg --print-architecture)" ] \
    || die "$binary is $arch but this machine is $(dpkg --print-architecture): build the image on an $arch machine"
# The layout is replaced: refuse a directory that holds anything else.
if [ -e "$out" ] && { [ ! -d "$out" ] || { [ -n "$(ls -A "$out")" ] && [ ! -f "$out/oci-layout" ]; }; }; then
    die "$out exists and is not an OCI layout: give --out an empty or new directory"
fi
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || die "no CA bundle at $certs: apt-get install ca-certificates"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{etc/ssl/certs,etc/fargate-health-monitor,usr/local/bin,tmp,home/nonroot}
mkdir -p "$root"/{usr/share/doc/fargate-health-monitor,var/lib/fargate-health-monitor}

install -m 0755 "$binary" "$root/usr/local/bin/fargate-health-monitor"

# The shared libraries the binary loads, the dynamic loader, and glibc's NSS modules for files
# and DNS (getaddrinfo loads them for /etc/hosts and resolv.conf; distroless carries them too).
libs=$(ldd "$binary" | awk '/=> \// { print $3 } /^[[:space:]]*\/.*ld-linux/ { print $1 }')
libdir=$(dirname "$(ldd "$binary" | awk '/libc\.so/ { print $3 }')")
for nss in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
    [ -e "$libdir/$nss" ] && libs="$libs $libdir/$nss"
done
for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
cat >"$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS
cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
HOSTS
cp deploy/image/config.toml "$root/etc/fargate-health-monitor/config.toml"
cp LICENSE "$root/usr/share/doc/fargate-health-monitor/LICENSE"

chown -R 0:0 "$root"
chmod 0755 "$root" "$root"/etc "$root"/usr "$root"/home
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot" "$root/var/lib/fargate-health-monitor"
chmod 0700 "$root/var/lib/fargate-health-monitor"
chmod 0644 "$root"/etc/{passwd,group,nsswitch.conf,hosts} "$root/etc/fargate-health-monitor/config.toml"

# The OCI layout: one layer from the root filesystem, the Dockerfile's config and labels.
rm -rf "$out"
mkdir -p "$(dirname "$out")"
umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
rm -rf "$work/bundle/rootfs"
mv "$root" "$work/bundle/rootfs"
umoci repack --image "$out:$tag" "$work/bundle"
source_url=https://github.com/fargate-health-monitor/fargate-health-monitor
umoci config --image "$out:$tag" \
    --os linux --architecture "$arch" \
    --config.user 65532:65532 \
    --config.workingdir / \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.exposedports 9877/tcp \
    --config.entrypoint /usr/local/bin/fargate-health-monitor \
    --config.cmd run --config.cmd --config --config.cmd /etc/fargate-health-monitor/config.toml \
    --config.label org.opencontainers.image.title=fargate-health-monitor \
    --config.label "org.opencontainers.image.description=Watches the health of Amazon EKS Fargate profiles: Prometheus metrics and alerts when issues open, change or resolve" \
    --config.label "org.opencontainers.image.version=$tag" \
    --config.label org.opencontainers.image.licenses=Apache-2.0 \
    --config.label "org.opencontainers.image.source=$source_url" \
    --config.label "org.opencontainers.image.url=$source_url"
umoci gc --layout "$out"

layers=$(find "$out/blobs" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
echo "built $out:$tag ($((layers / 1024)) KiB in the layout)"
