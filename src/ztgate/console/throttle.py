"""Login throttling: failed attempts per name and per client address, in the hot state.

Each name and each address has a count of attempts that expires `window`
seconds after its first one (`HotState.charge`, atomic). In Redis, every
replica and worker counts against the same totals, so running N gateways
does not give an attacker N times the tries. Throttling applies the same to
names that exist and names that do not, so it tells an attacker nothing.

An attempt is counted *before* the password is checked (`attempt`), so
that guesses sent in parallel cannot all pass first; a good login clears
its name's count and gives its address's attempt back (`succeeded`). A hot
state that does not answer raises `HotStateUnavailableError`: the login is
refused (fail closed), not let through unthrottled.
"""

from __future__ import annotations

import hashlib

from ztgate.store.hot import HotState

PREFIX = "login:"


class LoginThrottle:
    """Counts login attempts per name and per address within a window."""

    def __init__(self, hot: HotState, *, per_name: int, per_address: int, window: float) -> None:
        """At most `per_name` / `per_address` failed attempts within `window` seconds."""
        self._hot = hot
        self._limits = {"name": per_name, "address": per_address}
        self.window = window

    async def attempt(self, name: str, address: str) -> bool:
        """Count an attempt for `name` from `address`; False (nothing counted): throttled."""
        name_key, address_key = _key("name", name), _key("address", address)
        counted, _ = await self._hot.charge(name_key, [1], [self._limits["name"]], self.window)
        if not counted:
            return False
        counted, _ = await self._hot.charge(
            address_key, [1], [self._limits["address"]], self.window
        )
        if not counted:
            await self._hot.charge(name_key, [-1], [None], self.window)
            return False
        return True

    async def succeeded(self, name: str, address: str) -> None:
        """A good login: its name starts afresh, and its address's attempt is given back."""
        await self._hot.forget(_key("name", name))
        await self._hot.charge(_key("address", address), [-1], [None], self.window)


def _key(kind: str, value: str) -> str:
    # Names and addresses are the client's input: a fixed-size key of them.
    return PREFIX + kind + ":" + hashlib.sha256(value.encode()).hexdigest()[:32]
