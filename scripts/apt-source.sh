#!/bin/sh
# Downloads a Debian source package without touching the system's apt
# configuration: deb-src entries are derived from the machine's own apt
# sources into a private list, updated into a private state directory.
#
#   scripts/apt-source.sh PACKAGE DESTDIR
#
# The upstream tarball (PACKAGE_*.orig.tar.*) is what callers use.
set -eu

pkg=$1
dest=$2
work=${SBX_CACHE:-$HOME/.cache/sandbox-gateway}/apt-src
mkdir -p "$work/lists/partial" "$dest"

list=$work/sources.list
: > "$list"

# one-line format
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^[:space:]]*debian[^[:space:]]*\)[[:space:]]\+\(.*\)$/deb-src \2 \3/p' "$f" >> "$list"
done

# deb822 format: a stanza per blank-line separated block
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
        function flush() {
            if (types ~ /deb/ && uris ~ /debian/ && suites != "")
                for (i = 1; i <= split(suites, s, " "); i++)
                    print "deb-src " uris " " s[i] " " comps
            types = uris = suites = comps = ""
        }
        /^[[:space:]]*$/ { flush(); next }
        /^Types:/      { sub(/^Types:[[:space:]]*/, "");      types = $0 }
        /^URIs:/       { sub(/^URIs:[[:space:]]*/, "");       uris = $0 }
        /^Suites:/     { sub(/^Suites:[[:space:]]*/, "");     suites = $0 }
        /^Components:/ { sub(/^Components:[[:space:]]*/, ""); comps = $0 }
        END { flush() }
    ' "$f" >> "$list"
done

[ -s "$list" ] || { echo "apt-source: no Debian apt source found" >&2; exit 1; }

opts="-o Dir::Etc::SourceList=$list -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists=$work/lists -o Debug::NoLocking=1
      -o APT::Sandbox::User=root"

# shellcheck disable=SC2086
apt-get $opts -qq update
cd "$dest"
# a security update's .dsc may be missing from the mirror while the
# upstream tarball (all that is needed here) is there: accept that
# shellcheck disable=SC2086
apt-get $opts -qq source --download-only "$pkg" \
    || ls "${pkg}"_*.orig.tar.* >/dev/null 2>&1
