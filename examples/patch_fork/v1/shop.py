"""The shop, version 1: ``ship`` has a bug (it divides by the number of parcels,
which is 0 for a digital order). Run by ``dbos-worker`` with DBOS__APPVERSION=v1."""

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
    per_parcel = order["weight"] / order["parcels"]  # the bug: a digital order has no parcels
    return f"shipped {order['parcels']} parcel(s) of {per_parcel} kg by {_who()}"


@DBOS.workflow()
def checkout(order: dict) -> list[str]:
    return [reserve(order), charge(order), ship(order)]
