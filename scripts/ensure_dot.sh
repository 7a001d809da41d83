#!/usr/bin/env bash
# Make sure graphviz's `dot` binary is on PATH: install it with apt-get when we are root, else say how.
if command -v dot >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "graphviz's dot is missing: installing it with apt-get ..."
  (apt-get install -y -q graphviz >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q graphviz >/dev/null 2>&1; }) \
    && command -v dot >/dev/null 2>&1 && { echo "installed: $(dot -V 2>&1)"; exit 0; }
fi
cat >&2 <<'MSG'
graphviz's `dot` binary was not found, so diagrams can only be written as .dot files.
Install it, then run the command again:
  Debian/Ubuntu: sudo apt-get install graphviz
  macOS:         brew install graphviz
  conda:         conda install -c conda-forge graphviz
MSG
exit 0
