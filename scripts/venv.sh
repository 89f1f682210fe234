# Sourced by the tool installers: `tools_venv DIR` makes DIR/venv a Python virtual
# environment, installing python3-venv first where Debian left it out.
tools_venv() {
  local dir=$1
  [ -x "$dir/venv/bin/python" ] && return 0
  if ! python3 -m venv "$dir/venv" 2>/dev/null; then
    printf '[tools] installing python3-venv\n' >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq python3-venv >/dev/null; else sudo apt-get install -y -qq python3-venv >/dev/null; fi
    python3 -m venv "$dir/venv"
  fi
}
