"""This process's memory, read from Linux's /proc: now, the peak, and a reset of the peak.

The one place the course reads /proc for memory (the runner, the memory probes of Lab 03 and
the decode-speed measurements of Lab 01 all use it).

- ``rss_bytes()``: resident set size now (``/proc/self/statm``).
- ``peak_rss_bytes()``: the kernel's high-water mark ``VmHWM`` (``/proc/self/status``). It
  counts this process only; ``ru_maxrss`` survives the fork+exec of ``spawn``, so a child of a
  500 MB notebook would report the notebook's 500 MB as its own peak.
- ``reset_peak()``: sets the high-water mark back to the RSS now (``/proc/self/clear_refs``,
  Linux >= 4.0), so a peak can be taken over one step of work.

Example::

    >>> reset_peak(); buf = bytearray(10**8); peak_rss_bytes() - rss_bytes() < 10**6
    True
"""

from __future__ import annotations

import os
import resource


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak RSS of this process since it started or since :func:`reset_peak`."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB elsewhere


def reset_peak() -> None:
    """Set the peak RSS back to the current RSS (Linux >= 4.0; a no-op where unsupported)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
