# Shared helpers for the lab scripts.  Sourced, not run.
# shellcheck shell=sh

: "${PAPR_HVPIPE_CACHE:=/var/cache/papr-hvpipe}"
LAB_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(dirname "$LAB_DIR")
export PAPR_HVPIPE_CACHE LAB_DIR REPO_DIR

# The QEMU the series is based on: the newest point release of this series
# that this Debian suite has (lab/setup fetches it).
QEMU_SERIES=10.0
QEMU_SUITE=trixie

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

# Serialise every compiler run of the project (the machine has two cores) and
# every use of the shared source trees: one holder at a time syncs a tree to
# its clone's series and builds from it.  Children inherit the lock.  The
# holder's PID is in the lock file, so that a command that has to wait says
# for whom.
build_lock() {
	[ -n "${PAPR_HVPIPE_LOCKED:-}" ] && return
	bl_file=$PAPR_HVPIPE_CACHE/build.lock
	mkdir -p "$PAPR_HVPIPE_CACHE"
	exec 9<>"$bl_file"
	if ! flock -n 9; then
		read -r bl_pid < "$bl_file" || bl_pid=
		echo "$(basename "$0"): waiting for the lab lock held by PID" \
			"${bl_pid:-unknown}${bl_pid:+ ($(ps -o args= -p "$bl_pid" |
			cut -c1-60))} ($bl_file)" >&2
		flock 9
	fi
	echo $$ > "$bl_file"
	export PAPR_HVPIPE_LOCKED=1
}

# Version of an installed Debian package, or nothing.
deb_version() {
	dpkg-query -W -f '${Status} ${Version}\n' "$1" 2>/dev/null |
		sed -n 's/^install ok installed //p'
}

# suite_apt SUITE ARCH apt-get|apt-cache ARGUMENTS...: run apt on another Debian
# suite (or another architecture) with an apt state of the lab's own, kept in
# $PAPR_HVPIPE_CACHE/apt/SUITE-ARCH: the system's sources, indexes and
# architectures stay as they are.  The archive is the one the system's own
# sources name for its release (same URI, same keyring), with SUITE instead
# of the release; both deb and deb-src indexes, component main.  The indexes
# are fetched on first use and again once a day.  ARCH "" is the host's.
# Run it in the directory that should receive the files:
#   (cd DIR && suite_apt trixie-backports "" apt-get download linux-source-7.3)
#   (cd DIR && suite_apt trixie "" apt-get source qemu=1:10.0.13+ds-1)
#   suite_apt trixie "" apt-cache showsrc qemu
suite_apt() {
	sa_suite=$1 sa_arch=${2:-$(dpkg --print-architecture)}
	sa_dir=$PAPR_HVPIPE_CACHE/apt/$sa_suite-$sa_arch
	shift 2
	if [ -z "$(find "$sa_dir/lists" -maxdepth 1 -name '*_Release' \
	     -mtime -1 2>/dev/null)" ]; then
		mkdir -p "$sa_dir/lists/partial" "$sa_dir/cache/archives/partial" \
			"$sa_dir/sources"
		debian_archive > "$sa_dir/archive" ||
			die "no Debian archive for $(os_codename) in the system's apt sources"
		read -r sa_uri sa_key < "$sa_dir/archive"
		{
			echo "Types: deb deb-src"
			echo "URIs: $sa_uri"
			echo "Suites: $sa_suite"
			echo "Components: main"
			[ -z "$sa_key" ] || echo "Signed-By: $sa_key"
		} > "$sa_dir/sources/$sa_suite.sources"
		# An index in mid-sync fails the update of its suite only;
		# what was fetched before stays, and the command that follows
		# says what it lacks.
		suite_apt_state apt-get update > "$sa_dir/update.log" 2>&1 ||
			echo "$(basename "$0"): warning: apt-get update of" \
				"$sa_suite failed, see $sa_dir/update.log" >&2
	fi
	suite_apt_state "$@"
}

# apt-get|apt-cache ARGUMENTS... in the state of suite_apt's $sa_dir.
suite_apt_state() {
	sa_tool=$1
	shift
	"$sa_tool" -q -o APT::Architecture="$sa_arch" \
		-o APT::Architectures::="$sa_arch" \
		-o Dir::State::Lists="$sa_dir/lists" \
		-o Dir::Cache="$sa_dir/cache" \
		-o Dir::Etc::SourceList=/dev/null \
		-o Dir::Etc::SourceParts="$sa_dir/sources" \
		-o Dir::Etc::Preferences=/dev/null \
		-o Dir::Etc::PreferencesParts="$sa_dir/sources" \
		-o Dir::State::status=/dev/null -o Debug::NoLocking=1 "$@"
}

os_codename() {
	. /etc/os-release && echo "$VERSION_CODENAME"
}

# The URI and keyring (or nothing) of the system's Debian archive: the deb
# entry of its sources whose suite is the release itself.
debian_archive() {
	da_rel=$(os_codename)
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v rel="$da_rel" '
			function flush() {
				if (deb && suite && uri != "")
					{ print uri, key; found = 1; exit }
				deb = suite = 0; uri = key = ""
			}
			/^[ \t]*$/ { flush(); next }
			tolower($1) == "types:" {
				for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1
			}
			tolower($1) == "suites:" {
				for (i = 2; i <= NF; i++) if ($i == rel) suite = 1
			}
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "signed-by:" && NF == 2 { key = $2 }
			END { if (!found) flush(); exit !found }
		' "$f" && return 0
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v rel="$da_rel" '
			$1 != "deb" { next }
			{
				key = ""; i = 2
				if ($2 ~ /^\[/) {
					for (; i <= NF; i++) {
						if ($i ~ /^\[?signed-by=/) {
							key = $i
							sub(/^\[?signed-by=/, "", key)
							sub(/\]$/, "", key)
						}
						if ($i ~ /\]$/) { i++; break }
					}
				}
				if ($(i + 1) == rel) { print $i, key; found = 1; exit }
			}
			END { exit !found }
		' "$f" && return 0
	done
	return 1
}

# The kernels the series are based on (the one place that names them):
# mainline, the newest point release of MAINLINE_SERIES that Debian's
# MAINLINE_SUITE has (lab/setup fetches it and keeps it in the cache), and
# the LTS backport, linux-source-LTS_SERIES from the system's own suites.
MAINLINE_SERIES=7.3
MAINLINE_SUITE=trixie-backports
LTS_SERIES=6.12

# kernel_base NAME: mainline or lts for a base named by role or series.
kernel_base() {
	case $1 in
	mainline | "$MAINLINE_SERIES") echo mainline ;;
	lts | "$LTS_SERIES") echo lts ;;
	*) die "no kernel base $1 (mainline or $MAINLINE_SERIES, lts or $LTS_SERIES)" ;;
	esac
}
