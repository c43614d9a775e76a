# Shared helpers for the lab scripts.  Sourced, not run.
# shellcheck shell=sh

: "${PAPR_HVPIPE_CACHE:=/var/cache/papr-hvpipe}"
LAB_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(dirname "$LAB_DIR")
export PAPR_HVPIPE_CACHE LAB_DIR REPO_DIR

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

# Serialise every compiler run of the project (the machine has two cores) and
# every use of the shared source trees: one holder at a time syncs a tree to
# its clone's series and builds from it.  Children inherit the lock.
build_lock() {
	[ -n "${PAPR_HVPIPE_LOCKED:-}" ] && return
	mkdir -p "$PAPR_HVPIPE_CACHE"
	exec 9>"$PAPR_HVPIPE_CACHE/build.lock"
	flock 9
	export PAPR_HVPIPE_LOCKED=1
}

# Version of an installed Debian package, or nothing.
deb_version() {
	dpkg-query -W -f '${Status} ${Version}\n' "$1" 2>/dev/null |
		sed -n 's/^install ok installed //p'
}
