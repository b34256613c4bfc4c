#!/usr/bin/env bash
# Installs the Debian packages the offline datasets read (idempotent; safe to run again):
#   dataset-fashion-mnist  -> /usr/share/datasets/fashion-mnist/*.gz  (mk.data "multi_fashion")
#   espeak-ng              -> speech synthesiser                      (mk.data "av_digits")
# Uses apt-get as root, or through sudo when it works without a password; otherwise prints what to
# run and exits 0, so `make install` still succeeds (the datasets then raise a clear error naming it).
set -euo pipefail

PACKAGES=(dataset-fashion-mnist espeak-ng)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_system_deps: already installed: ${PACKAGES[*]}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: apt-get not found; skipping. Install ${missing[*]} with your package manager" \
         "to use the multi_fashion/av_digits datasets." >&2
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "install_system_deps: not root (and no password-less sudo); skipping. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 0
fi

echo "install_system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if "${SUDO[@]}" apt-get update -qq \
        && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "install_system_deps: done"
else  # e.g. no network or a locked dpkg: the rest of the install still works
    echo "install_system_deps: apt-get failed; install ${missing[*]} later to use those datasets." >&2
fi
