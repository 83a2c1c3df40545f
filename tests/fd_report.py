"""Run by tests/test_zygote.py as a forked child (`python -m tests.fd_report`): prints the fds it holds."""

import os

print(sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
