"""The shop, version 2: the same workflow with ``ship`` fixed (a digital order
has nothing to ship). Forked workflows of v1 resume here from the failed step."""

from __future__ import annotations

import os

from dbos import DBOS, Queue

orders = Queue("orders")


def _who() -> str:
    return f"{os.environ.get('DBOS__VMID', '?')} ({os.environ.get('DBOS__APPVERSION', '?')})"


@DBOS.step()
def reserve(order: dict) -> str:
    return f"reserved {order['item']} by {_who()}"


@DBOS.step()
def charge(order: dict) -> str:
    return f"charged {order['price']} by {_who()}"


@DBOS.step()
def ship(order: dict) -> str:
    if order["parcels"] == 0:  # the fix
        return f"nothing to ship (digital) by {_who()}"
    return f"shipped {order['parcels']} parcel(s) of {order['weight'] / order['parcels']} kg by {_who()}"


@DBOS.workflow()
def checkout(order: dict) -> list[str]:
    return [reserve(order), charge(order), ship(order)]
