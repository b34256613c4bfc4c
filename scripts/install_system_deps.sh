#!/usr/bin/env bash
# Installs the Debian packages the offline datasets read (idempotent; safe to run again):
#   dataset-fashion-mnist  -> /usr/share/datasets/fashion-mnist/*.gz  (mk.data "multi_fashion")
#   espeak-ng              -> speech synthesiser                      (mk.data "av_digits")
# Exits 0 when they are installed (already, or now: apt-get as root, or through sudo when it works
# without a password). When they are missing and cannot be installed (no apt-get, not root and no
# password-less sudo, apt-get failing) it prints the packages and the command to run and exits 1, so
# `make install` stops instead of leaving a suite whose dataset tests cannot run.
# MTMM_SKIP_SYSTEM_DEPS=1 turns that failure into a warning (exit 0): the library and most tests work
# without them; the multi_fashion/av_digits datasets then raise a clear error naming the package.
set -euo pipefail

PACKAGES=(dataset-fashion-mnist espeak-ng)

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            echo "$pkg"
        fi
    done
}

# cannot_install WHY COMMAND: the packages are missing and this script cannot install them.
cannot_install() {
    echo "install_system_deps: ERROR: $1; the Debian packages ${missing[*]} are not installed." >&2
    echo "install_system_deps: the multi_fashion/av_digits datasets (and their tests) need them. Run:" >&2
    echo "  $2" >&2
    if [ "${MTMM_SKIP_SYSTEM_DEPS:-}" = "1" ]; then
        echo "install_system_deps: MTMM_SKIP_SYSTEM_DEPS=1: going on without them." >&2
        exit 0
    fi
    echo "install_system_deps: (or set MTMM_SKIP_SYSTEM_DEPS=1 to go on without those two datasets)" >&2
    exit 1
}

mapfile -t missing < <(missing_packages)
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_system_deps: already installed: ${PACKAGES[*]}"
    exit 0
fi

APT_COMMAND="sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"

if ! command -v apt-get >/dev/null 2>&1; then
    cannot_install "apt-get not found (install ${missing[*]} with your package manager instead)" "$APT_COMMAND"
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    cannot_install "not root (and no password-less sudo)" "$APT_COMMAND"
fi

echo "install_system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq \
        && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    cannot_install "apt-get failed (no network? a locked dpkg?)" "$APT_COMMAND"
fi
mapfile -t missing < <(missing_packages)
if [ ${#missing[@]} -ne 0 ]; then
    cannot_install "apt-get succeeded but dpkg still does not list them as installed" "$APT_COMMAND"
fi
echo "install_system_deps: done"
