#!/usr/bin/env bash
# Make Fashion-MNIST available offline: Debian's dataset-fashion-mnist puts the IDX
# files in /usr/share/datasets/fashion-mnist. Does nothing when the files exist or
# RESLAB_DATA points elsewhere.
set -eu
dir=/usr/share/datasets/fashion-mnist
if [ -n "${RESLAB_DATA:-}" ] || ls "$dir"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing Fashion-MNIST from Debian's package dataset-fashion-mnist ..."
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "Fashion-MNIST not found in $dir. Install Debian's dataset-fashion-mnist, or put the" >&2
  echo "IDX .gz files in a folder and set RESLAB_DATA=/that/folder (or pass --data-dir)." >&2
  exit 1
fi
