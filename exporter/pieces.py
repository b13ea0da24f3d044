"""One content type's pool series kept as pieces: each pool rendered apart, joined per family, gzipped in parts."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

# Pools per group: the unit a change re-joins and re-compresses, one piece per family. Smaller
# groups cost less per change, larger ones compress better (each piece is compressed alone).
GROUP = 32
LEVEL = 6
# A piece is a few KiB whose repeats are a line or two apart: a 4 KiB window and a smaller hash table
# compress it as well as the defaults, and a compressor costs a sixth to set up (12 us instead of 70).
WINDOW_BITS = 12
MEMORY_LEVEL = 6

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS


def deflate(data: bytes) -> bytes:
    """Raw deflate of `data`, ended on a byte boundary with no final block: such parts concatenate."""
    if not data:
        return b""
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, MEMORY_LEVEL)
    return packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)


_LAST_BLOCK = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, MEMORY_LEVEL).flush()  # an empty final block


def gzip_member(parts: Iterable[bytes], plain: Iterable[bytes]) -> bytes:
    """One gzip member from deflate `parts` (see deflate) whose output is the concatenation of `plain`."""
    crc, size = 0, 0
    for piece in plain:
        crc = zlib.crc32(piece, crc)
        size += len(piece)
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return b"".join([_GZIP_HEADER, *parts, _LAST_BLOCK, trailer])


class Families(Collector):
    """A collector-like list of families, for prometheus_client's encoders (they only call collect())."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        """The families given."""
        return self._families


def split(text: bytes) -> list[tuple[bytes, bytes]]:
    """An encoder's output cut per family: (its HELP/TYPE lines, its samples); `# EOF` dropped.

    Sample lines never start with `#` and escape newlines in label values, so a line starting with
    `# ` is a family's header or the end.
    """
    out: list[tuple[bytes, bytes]] = []
    head: list[bytes] = []
    samples: list[bytes] = []
    for line in text.split(b"\n")[:-1]:
        if line.startswith(b"# "):
            if line == b"# EOF":
                continue
            if line.startswith(b"# HELP ") and (samples or head):
                out.append((b"".join(head), b"".join(samples)))
                head, samples = [], []
            head.append(line + b"\n")
        else:
            samples.append(line + b"\n")
    if head:
        out.append((b"".join(head), b"".join(samples)))
    return out


@dataclass
class Rendered:
    """What a pool's part was rendered from: its families, and the monotonic time its staleness decisions lapse."""

    families: list[Metric]
    expires: float


@dataclass
class _Pool:
    """One pool's place and pieces (its samples, per family)."""

    state: object
    group: int
    samples: tuple[bytes, ...] = ()  # tuples of bytes leave the garbage collector's watch


class Assembly:
    """The pool series of one content type: pieces per (family, group of pools), the plain and gzipped joins.

    `work()` brings everything up to date, a small step per iteration (a pool rendered, a group
    re-joined and re-compressed, the body joined), so its caller can yield to the event loop between steps.
    """

    def __init__(self, encoder: Callable[[Collector], bytes], headers: Sequence[Metric]) -> None:
        self._encode = encoder
        cut = split(encoder(Families(headers)))
        if len(cut) != len(headers):
            raise ValueError(f"expected {len(headers)} families, the encoder wrote {len(cut)}")
        self.headers = [head for head, _ in cut]
        self.eof = encoder(Families([]))  # b"# EOF\n" for OpenMetrics, b"" for the Prometheus text
        self._packed_headers = [deflate(h) for h in self.headers]
        self._pools: dict[str, _Pool] = {}
        self._synced = False
        self._groups: list[list[str]] = []
        self._plain: list[list[bytes]] = [[] for _ in headers]  # [family][group]
        self._packed: list[list[bytes]] = [[] for _ in headers]  # same, deflated
        self.dirty: set[str] = set()  # pools to render again
        self._dirty_groups: set[int] = set()
        self.body: tuple[bytes, ...] | None = None  # the last join: the pool series, plain, in pieces
        self.parts: tuple[bytes, ...] = ()  # and deflated

    @property
    def size(self) -> int:
        """Pools followed (-1 before the first sync)."""
        return len(self._pools) if self._synced else -1

    @property
    def outdated(self) -> bool:
        """A pool or group awaits its rendering, or the body was never joined."""
        return bool(self.dirty or self._dirty_groups) or self.body is None

    def everything(self) -> None:
        """Render every pool again at the next work()."""
        self.dirty.update(self._pools)

    def sync(self, pools: Iterable[tuple[str, object]]) -> None:
        """Follow the pool set: new pools (or a new state under a known name) are rendered, vanished ones dropped."""
        self._synced = True
        seen: set[str] = set()
        for name, state in pools:
            seen.add(name)
            known = self._pools.get(name)
            if known is None:
                self._pools[name] = _Pool(state, self._place(name))
                self.dirty.add(name)
            elif known.state is not state:
                known.state = state
                self.dirty.add(name)
        for name in [n for n in self._pools if n not in seen]:
            gone = self._pools.pop(name)
            self._groups[gone.group].remove(name)
            self._dirty_groups.add(gone.group)
            self.dirty.discard(name)

    def _place(self, name: str) -> int:
        """The first group with room (the last one grows, or a new one is made)."""
        for index, members in enumerate(self._groups):
            if len(members) < GROUP:
                members.append(name)
                return index
        self._groups.append([name])
        for plain in self._plain:
            plain.append(b"")
        for packed in self._packed:
            packed.append(b"")
        return len(self._groups) - 1

    def work(self, render: Callable[[object], Rendered], expires: Callable[[str, float], None]) -> Iterator[None]:
        """Render the dirty pools, re-join and re-compress their groups, join the body; yields between steps."""
        while self.dirty:
            name = self.dirty.pop()
            pool = self._pools.get(name)
            if pool is None:
                continue
            rendered = render(pool.state)
            cut = split(self._encode(Families(rendered.families)))
            if len(cut) != len(self.headers):
                raise ValueError(f"pool {name!r}: expected {len(self.headers)} families, got {len(cut)}")
            pool.samples = tuple(samples for _, samples in cut)
            self._dirty_groups.add(pool.group)
            expires(name, rendered.expires)
            yield
        while self._dirty_groups:
            group = self._dirty_groups.pop()
            members = [self._pools[n] for n in self._groups[group]]
            for family, plain in enumerate(self._plain):
                plain[group] = b"".join(p.samples[family] for p in members if p.samples)
                self._packed[family][group] = deflate(plain[group])
            yield
        body: list[bytes] = []
        parts: list[bytes] = []
        for family, head in enumerate(self.headers):
            body.append(head)
            body.extend(self._plain[family])
            parts.append(self._packed_headers[family])
            parts.extend(self._packed[family])
        self.body = tuple(body)
        self.parts = tuple(parts)
