# debian-apt.sh: what the fetch-* scripts share, sourced by them (bash).
# It reads Debian packages from the archive this machine's own apt
# configuration names, with private apt state, so nothing of the machine's
# apt state is touched and no mirror host name is written in the repo.
#
# The sourcing script sets: log and die (its messages), cache (the cache
# root), keyring (the Debian archive keyring). Then:
#   need COMMAND PACKAGE     install PACKAGE with the machine's apt if COMMAND is missing
#   install_pkg PACKAGE
#   mirror_uri               print the machine's Debian archive URI
#   apt_private SUITE URI    make $tmp (a fresh directory of the caller's, removed by
#                            it) hold private apt state for SUITE at URI, set the
#                            array aptopts for apt-get/apt-cache, and update the index
#   apt_download PKG VER     make sure $cache/debs holds PKG=VER; set deb to its path

apt_updated=0
install_pkg() { # install_pkg PACKAGE (with the machine's own apt configuration)
	log "installing $1"
	[ "$(id -u)" = 0 ] || die "$1 is missing and we are not root to install it"
	if [ "$apt_updated" = 0 ]; then
		apt-get update -qq >&2 || die "apt-get update failed"
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2 || die "apt-get install $1 failed"
}
need() { # need COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 && return 0
	install_pkg "$2"
	command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

# mirror_uri: the URI of the Debian archive (not the security archive) the
# machine itself uses.
mirror_uri() {
	if [ -n "${VMSUP_DEBIAN_MIRROR:-}" ]; then
		printf '%s\n' "${VMSUP_DEBIAN_MIRROR%/}"
		return 0
	fi
	local f uri
	# deb822 .sources: stanzas separated by blank lines; pick a "deb" stanza
	# whose suites include a plain release name (no -security/-updates/...),
	# or failing that any deb stanza whose URI does not look like the
	# security archive.
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk '
			function flush() {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "" && enabled != "no") {
					n = split(suites, s, /[ \t]+/)
					for (i = 1; i <= n; i++)
						if (s[i] != "" && s[i] !~ /[-\/]/) { split(uris, u, /[ \t]+/); if (best == "") best = u[1] }
					if (uris !~ /security/) { split(uris, u, /[ \t]+/); if (any == "") any = u[1] }
				}
				types = uris = suites = enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				line = $0
				key = tolower(line); sub(/:.*/, "", key)
				val = line; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
			}
			END { flush(); if (best != "") print best; else if (any != "") print any }
		' "$f")
		if [ -n "$uri" ]; then
			printf '%s\n' "${uri%/}"
			return 0
		fi
	done
	# One-line format: deb [options] URI suite components...
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		uri=$(awk '
			$1 != "deb" { next }
			{
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				uri = $i; suite = $(i + 1)
				if (suite != "" && suite !~ /[-\/]/ && best == "") best = uri
				if (uri !~ /security/ && any == "") any = uri
			}
			END { if (best != "") print best; else if (any != "") print any }
		' "$f")
		if [ -n "$uri" ]; then
			printf '%s\n' "${uri%/}"
			return 0
		fi
	done
	return 1
}

apt_private() { # apt_private SUITE URI
	local suite=$1 uri=$2
	mkdir -p "$tmp/state/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc/sources.list.d" \
		"$tmp/etc/preferences.d" "$tmp/etc/apt.conf.d" "$tmp/etc/trusted.gpg.d"
	printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$uri" "$suite" >"$tmp/etc/sources.list"
	: >"$tmp/state/status"

	aptopts=(
		-o "Dir::State=$tmp/state"
		-o "Dir::State::status=$tmp/state/status"
		-o "Dir::Cache=$tmp/cache"
		-o "Dir::Etc::SourceList=$tmp/etc/sources.list"
		-o "Dir::Etc::SourceParts=$tmp/etc/sources.list.d"
		-o "Dir::Etc::Preferences=$tmp/etc/preferences"
		-o "Dir::Etc::PreferencesParts=$tmp/etc/preferences.d"
		-o "Dir::Etc::Trusted=$tmp/etc/trusted.gpg"
		-o "Dir::Etc::TrustedParts=$tmp/etc/trusted.gpg.d"
		-o "APT::Architecture=amd64"
		-o "APT::Architectures::=amd64"
		-o "Acquire::Languages=none"
		-o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
		-o "Debug::NoLocking=true"
	)
	# apt drops privileges to _apt for downloads; it must be able to write there.
	if id _apt >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		chown -R _apt "$tmp/state/lists" "$tmp/cache/archives" 2>/dev/null || true
		chmod 755 "$tmp"
	fi

	log "apt-get update ($suite)"
	apt-get "${aptopts[@]}" -q update >"$tmp/update.log" 2>&1 || {
		cat "$tmp/update.log" >&2
		die "apt-get update for $suite failed"
	}
	# apt-get update exits 0 on some fetch/verification errors; reject them.
	if grep -qE '^(W|E): ' "$tmp/update.log"; then
		cat "$tmp/update.log" >&2
		if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG|BADSIG' "$tmp/update.log"; then
			die "the $suite Release file could not be verified with $keyring; it needs a debian-archive-keyring that carries the trixie keys (bookworm's 2023.3+deb12u2 does)"
		fi
		grep -qE '^E: ' "$tmp/update.log" && die "apt-get update for $suite reported errors"
		grep -qE 'Failed to fetch|index files failed' "$tmp/update.log" &&
			die "could not download the $suite package index from $uri"
	fi
}

apt_download() { # apt_download PKG VER
	local pkg=$1 ver=$2 debname got
	debname="${pkg}_${ver//:/%3a}_amd64.deb"
	deb=$cache/debs/$debname
	if [ ! -s "$deb" ]; then
		log "downloading $pkg=$ver"
		(cd "$tmp/cache/archives" && apt-get "${aptopts[@]}" -q download "$pkg=$ver" >&2) ||
			die "apt-get download $pkg=$ver failed"
		got=$(ls "$tmp/cache/archives/"*.deb 2>/dev/null | head -n1)
		[ -n "$got" ] || die "apt-get download produced no .deb"
		mv "$got" "$deb.tmp"
		mv "$deb.tmp" "$deb"
	fi
}
