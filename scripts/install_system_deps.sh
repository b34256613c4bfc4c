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
# It also unpacks Mesa's lavapipe software Vulkan driver (mesa-vulkan-drivers 25.x from bookworm-backports,
# libvulkan1) into .cache/vulkan/ without installing it system-wide (apt-get download + dpkg-deb -x): LiteRT's GPU
# accelerator runs on it, so `--target android-gpu` exports are checked on the real GPU delegate on machines
# without a GPU (mtmm_keras/export/gpu_delegate.py finds .cache/vulkan/lvp_icd.json). Lavapipe proves op coverage
# and numerics, never speed. This part never fails the script: without it the check reports that it could not
# run. MTMM_SKIP_VULKAN=1 skips it.
set -euo pipefail

PACKAGES=(dataset-fashion-mnist espeak-ng)
VULKAN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/vulkan"
VULKAN_DEBS=(mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports
             libvulkan1 libllvm15)

# The mirror this machine's own apt sources use for Debian bookworm (deb822 .sources or one-line sources.list).
debian_mirror() {
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri="$(awk '/^URIs:/ {u = $2} /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == "bookworm") {print u; exit}}' \
            /etc/apt/sources.list.d/*.sources)"
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri="$(awk '$1 == "deb" {i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++; if ($i ~ /\]$/ && $2 ~ /^\[/) i++;
                                 if ($(i + 1) == "bookworm") {print $i; exit}}' /etc/apt/sources.list)"
    fi
    printf '%s' "$uri"
}

install_lavapipe() {
    local note="install_system_deps: lavapipe (software Vulkan for the android-gpu export check)"
    if [ "${MTMM_SKIP_VULKAN:-}" = "1" ]; then echo "$note: skipped (MTMM_SKIP_VULKAN=1)"; return 0; fi
    if [ -f "$VULKAN_DIR/lvp_icd.json" ]; then echo "$note: already in $VULKAN_DIR"; return 0; fi
    local tool
    for tool in apt-get dpkg-deb mkdir find ln rm; do
        if ! command -v "$tool" >/dev/null 2>&1; then echo "$note: skipped, $tool not found"; return 0; fi
    done
    if ! grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
        echo "$note: skipped, set up for Debian 12 (bookworm); install mesa-vulkan-drivers >= 25 and libvulkan1 and" \
             "point MTMM_VK_ICD at lvp_icd.json"
        return 0
    fi
    local work="$VULKAN_DIR/apt"
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$VULKAN_DIR/root"
    local key=/usr/share/keyrings/debian-archive-keyring.gpg mirror
    mirror="$(debian_mirror)"
    if [ -z "$mirror" ]; then
        echo "$note: skipped, no Debian bookworm source in /etc/apt to take the backports suite from" >&2
        rm -rf "$work"
        return 0
    fi
    printf 'deb [signed-by=%s] %s bookworm main\ndeb [signed-by=%s] %s bookworm-backports main\n' \
        "$key" "$mirror" "$key" "$mirror" > "$work/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$work/lists"
                -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1)
    if ! { apt-get "${opts[@]}" update -qq >/dev/null 2>&1 \
            && (cd "$work/debs" && apt-get "${opts[@]}" download -qq "${VULKAN_DEBS[@]}" >/dev/null 2>&1); }; then
        echo "$note: WARNING: downloading ${VULKAN_DEBS[*]} failed (no network?); the check will say it could not run" >&2
        rm -rf "$work"
        return 0
    fi
    local deb lvp
    for deb in "$work/debs"/*.deb; do dpkg-deb -x "$deb" "$VULKAN_DIR/root"; done
    rm -rf "$work"
    lvp="$(find "$VULKAN_DIR/root" -name libvulkan_lvp.so | head -n 1)"
    if [ -z "$lvp" ]; then echo "$note: WARNING: libvulkan_lvp.so not in the packages" >&2; return 0; fi
    ln -sfn "$(dirname "$lvp")" "$VULKAN_DIR/lib"
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.4.305"}}\n' "$lvp" \
        > "$VULKAN_DIR/lvp_icd.json"
    echo "$note: unpacked into $VULKAN_DIR"
}
install_lavapipe || true

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
