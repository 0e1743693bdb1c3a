#!/bin/bash -eu
# Builds the cargo-fuzz targets for ClusterFuzzLite (and OSS-Fuzz, which runs the same script)
# and puts in $OUT what its runners look for: each target's binary, <target>_seed_corpus.zip
# and <target>.dict.
cd "$SRC/sockharness"
cargo fuzz build -O
release=fuzz/target/x86_64-unknown-linux-gnu/release
for target in $(cargo fuzz list); do
  # echo_socket talks to a server over loopback, and fuzzing bots have no network interface,
  # not even loopback; ci/fuzz.sh runs it.
  if [ "$target" = echo_socket ]; then
    continue
  fi
  cp "$release/$target" "$OUT/"
  if [ -d "fuzz/corpus/$target" ]; then
    (cd "fuzz/corpus/$target" && zip -q -r "$OUT/${target}_seed_corpus.zip" .)
  fi
  if [ -f "fuzz/dictionaries/$target.dict" ]; then
    cp "fuzz/dictionaries/$target.dict" "$OUT/$target.dict"
  fi
done
