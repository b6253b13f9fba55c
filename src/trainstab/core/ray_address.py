"""Where a run on Ray connects, checked before any model's code runs: never a Ray beyond loopback, never a hang.

The front ends call these as soon as the options say ``executor=ray``, before a model module is imported
(it may import Ray and call ``ray.init()`` itself): a one-machine Ray started in this process then listens on
loopback only, and a ``RAY_ADDRESS`` where nothing answers fails in seconds. :mod:`trainstab.train.ray_executor`
connects. Imports neither Ray nor torch: the pytest plugin calls it at start-up.
"""

from __future__ import annotations

import os
import socket
import sys

from trainstab.core.errors import TrainstabError

#: Ray's switch for a one-machine Ray (its default on macOS and Windows): the node is 127.0.0.1 and every Ray
#: server binds there. Without it a Linux Ray listens on every interface, even when told 127.0.0.1.
LOOPBACK_ONLY = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

#: How long the address RAY_ADDRESS names may take to accept a connection. Ray itself retries an address
#: where nothing listens for over ten minutes (20 tries of 40 s each, measured with Ray 2.60).
CONNECT_SECONDS = 5.0

#: RAY_ADDRESS values found unreachable, with why: every later sweep of the run (one per test) fails at once.
_unreachable: dict[str, str] = {}


def cluster_address() -> str | None:
    """The cluster ``RAY_ADDRESS`` names; None when a one-machine Ray is started here (unset, empty or ``local``)."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    return None if address in ("", "local") else address


def keep_local_ray_on_loopback() -> None:
    """Before any model's code runs in a run on Ray: a one-machine Ray started in this process, by trainstab or
    by a model module calling ``ray.init()``, listens on loopback only (:data:`LOOPBACK_ONLY`).

    Ray reads the switch once, when it is imported. Nothing to do for a cluster (``RAY_ADDRESS``), or once Ray
    is imported (:func:`trainstab.train.ray_executor.ray_module` then refuses a Ray that listens beyond loopback).
    """
    if cluster_address() is None and "ray" not in sys.modules:
        os.environ.setdefault(*LOOPBACK_ONLY)


def host_and_port(address: str) -> tuple[str, int] | None:
    """The server ``host:port``, ``[v6]:port`` or ``ray://host:port`` names; None for a name without a port."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_cluster_reachable(address: str | None = None) -> None:
    """Fail in seconds, in one line naming ``RAY_ADDRESS``, when nothing accepts a connection where it points.

    ``address`` is where ``RAY_ADDRESS`` resolved to (``auto``: the cluster Ray found), default
    ``RAY_ADDRESS`` itself. A TCP connect with a :data:`CONNECT_SECONDS` timeout, before ``ray.init``; an
    address without a port (``auto`` unresolved) is left to Ray, which says at once when it finds none.
    """
    named = cluster_address()
    target = address or named
    if named is None or target is None:
        return
    if target not in _unreachable:
        server = host_and_port(target)
        if server is None:
            return
        try:
            with socket.create_connection(server, timeout=CONNECT_SECONDS):
                return
        except TimeoutError:
            _unreachable[target] = f"no answer within {CONNECT_SECONDS:g} s"
        except OSError as error:  # refused, no route, unknown host
            _unreachable[target] = error.strerror or str(error) or type(error).__name__
    shown = named if target == named else f"{named} ({target})"
    raise TrainstabError(
        f"nothing answers at RAY_ADDRESS={shown} ({_unreachable[target]}): start the cluster (ray start --head) "
        "and set RAY_ADDRESS to the address it prints, or unset RAY_ADDRESS to run a Ray on this machine"
    )
