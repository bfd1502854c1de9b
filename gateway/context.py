"""The Context: every long-lived dependency, built once in serve() and handed to each handler."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .config import Config
from .keys import KeyRing
from .quota import SlidingWindowQuota
from .record import Interaction
from .upstream import Upstream

if TYPE_CHECKING:
    from .providers.base import Provider


class _NoPrices:
    def cost(self, model: str, usage: Any) -> float | None:
        return None


@dataclass
class Context:
    """What handlers need; nothing here is a module-level global."""

    config: Config
    keys: KeyRing
    quota: SlidingWindowQuota
    upstream: Upstream
    providers: dict[str, "Provider"]
    record_sinks: list[Callable[[Interaction], None]] = field(default_factory=list)
    prices: Any = field(default_factory=_NoPrices)
    store: Any = None
    recorder: Any = None
    metrics: Any = None
    health: Any = None
    connections: Any = None  # the CappedHTTPServer: open/limit/refused client connections
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # for keys' api_key_env on reload
    admin_key: str = ""  # GATEWAY_ADMIN_KEY, or one generated at start
    started_at: float = field(default_factory=time.time)
    shutting_down: bool = False
    in_flight: int = 0  # requests being handled, for graceful shutdown

    def reload_keys(self) -> int:
        """Reread the keys file. A valid file serves new requests at once (in-flight ones keep the key they
        authenticated with; a removed key is refused from now on); an invalid one raises KeysFileError and
        changes nothing."""
        keys = KeyRing.load(self.config.keys_file, self.environ)
        self.keys = keys
        return len(keys)

    def observe(self, record: Interaction) -> None:
        """Hand a finished interaction to every sink (recorder queue, metrics); none may block."""
        for sink in self.record_sinks:
            sink(record)
