"""Shared memory between a job's process and its worker processes: chunks and outputs without pipes.

A worker process's chunk (an Arrow table, ~10 MB for 20k encrypted records) and what it gives back
(a derived output's CSV lines) crossing a pipe cost more CPU than the chunk's own parsing: pickled,
then moved in 64 KB pieces, each piece a switch between the two processes, then unpickled. Measured
at 1M records on 2 cores: ~1.2 s of the job's process and ~1 s of its workers, where a copy through
shared memory costs ~0.2 s in all. So the job's process writes each chunk into a block of shared
memory (Arrow's IPC format: one copy) that its worker copies out, and a worker leaves its encoded
records in another block the job's process copies to the output.

Blocks are written and read on their file descriptors (``pwrite``/``pread``), never through a
mapping: a page of shared memory touched through a mapping counts in the process's resident memory
until unmapped, and faults in again each time after (~1.5 µs a page: 5 ms to write a 10 MB chunk and
unmap it, where ``pwrite`` takes ~1.5 ms).

The blocks are POSIX shared memory (``/dev/shm``): memory, never a disk, so a derive job's decrypted
records may go through them. Each block's space is reserved when it is made (``posix_fallocate``),
so a full ``/dev/shm`` (a container's is often 64 MB) is an error here, not a crash later; the job
then uses pipes (see :class:`Exchange`). A block's name is removed once its worker has opened it,
and Python's resource tracker removes any left by a job's process that was killed.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import shared_memory

import pyarrow as pa

log = logging.getLogger(__name__)

_MB = 1 << 20
#: copies out of a block go in pieces of this size (a reused buffer, not one fresh allocation per chunk)
COPY_BLOCK = _MB
#: a worker keeps this many blocks open (a job gives each worker at most four at a time)
_WORKER_OPEN = 8


@dataclass(frozen=True)
class SharedTable:
    """An Arrow table written in IPC format to the first ``size`` bytes of the block ``name``."""

    name: str
    size: int


@dataclass(frozen=True)
class SharedBytes:
    """``size`` bytes a worker process left at ``offset`` in the block ``name``."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Outbox:
    """Where a worker process leaves a chunk's encoded records: the block ``name`` of ``size`` bytes."""

    name: str
    size: int


class Block:
    """A block of shared memory made by the job's process, its space reserved."""

    def __init__(self, size: int) -> None:
        self.memory = shared_memory.SharedMemory(create=True, size=size)
        self.name, self.size = self.memory.name, size
        self._named = True
        try:
            os.posix_fallocate(self.memory._fd, 0, size)  # type: ignore[attr-defined]
        except BaseException:
            self.close()
            raise

    def unname(self) -> None:
        """Remove the block's name (its worker has it open): nothing is left behind, whatever happens next."""
        if self._named:
            self._named = False
            self.memory.unlink()

    def close(self) -> None:
        self.unname()
        self.memory.close()


def _pwrite(fd: int, data: object, offset: int) -> None:
    """Write all of ``data`` (any buffer) at ``offset`` of the file ``fd``."""
    view = memoryview(data)  # type: ignore[arg-type]
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _pread(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` of the file ``fd`` (which holds them)."""
    data = os.pread(fd, size, offset)
    while len(data) < size:  # a short read (not seen on tmpfs)
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise EOFError(f"a block of shared memory ends before byte {offset + size}")
        data += more
    return data


#: a write to a block smaller than this is gathered with the next ones (a chunk Arrow parsed in ~40 record
#: batches is written as ~1,600 pieces, most of them a few bytes to a few KB)
_GATHER = 64 << 10


class _BlockWriter:
    """A file to Arrow (see ``pa.PythonFile``): writes a block's bytes from its start, on its descriptor.

    Small writes are gathered and go in together (one ``pwrite`` each costs ~2-5 µs, whatever its size).
    """

    def __init__(self, block: Block) -> None:
        self.fd, self.size = block.memory._fd, block.size  # type: ignore[attr-defined]
        self.pos = 0  # bytes written, gathered ones included
        self.closed = False
        self._gathered = bytearray()

    def write(self, data: object) -> int:
        size = memoryview(data).nbytes  # type: ignore[arg-type]
        if self.pos + size > self.size:
            raise ValueError(f"{self.pos + size} bytes do not fit a block of {self.size}")
        if size < _GATHER:
            self._gathered += data  # type: ignore[operator]
            self.pos += size
            if len(self._gathered) >= _GATHER:
                self.flush()
            return size
        self.flush()
        _pwrite(self.fd, data, self.pos)
        self.pos += size
        return size

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        if self._gathered:
            _pwrite(self.fd, self._gathered, self.pos - len(self._gathered))
            self._gathered.clear()

    def close(self) -> None:
        self.flush()
        self.closed = True


def ipc_size(table: pa.Table) -> int:
    """Bytes of ``table`` in Arrow's IPC stream format (measured without writing it)."""
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return int(sink.size())


class Exchange:
    """The job's process side: per worker slot, a block for chunks in and one for records out.

    A slot is one chunk a worker process may hold at a time (a job gives each worker two: the one
    it works on and the next). Blocks grow when a chunk or its output outgrows them. If shared
    memory cannot be had, :attr:`reason` says why and :meth:`put_table` returns None (use pipes).
    """

    def __init__(self) -> None:
        self._in: dict[object, Block] = {}
        self._out: dict[object, Block] = {}
        self._by_name: dict[str, Block] = {}
        self._out_need: dict[object, int] = {}
        self.reason: str | None = None

    def _block(self, blocks: dict[object, Block], slot: object, size: int) -> Block | None:
        block = blocks.get(slot)
        if block is not None and block.size >= size:
            return block
        if block is not None:
            del self._by_name[block.name]
            block.close()
            del blocks[slot]
        try:
            block = Block(-(-size // _MB) * _MB)
        except (OSError, AttributeError) as exc:  # no /dev/shm, full, or no posix_fallocate (not Linux)
            # blocks already made stay until the job ends: chunks in flight are in them
            self.reason = f"no shared memory for worker processes ({type(exc).__name__}: {exc}); using pipes"
            log.warning("%s", self.reason)
            return None
        blocks[slot] = self._by_name[block.name] = block
        return block

    def put_table(self, slot: object, table: pa.Table, outbox: bool) -> tuple[SharedTable, Outbox | None] | None:
        """Write ``table`` into the slot's block; with it (if ``outbox``), the slot's block for what the worker
        gives back (None: the worker hands its output back another way)."""
        if self.reason is not None:
            return None
        size = ipc_size(table)
        block = self._block(self._in, slot, size + size // 4)
        out = None
        if block is not None and outbox:
            out = self._block(self._out, slot, max(self._out_need.get(slot, 0), size + size // 4))
        if block is None or (outbox and out is None):
            return None
        sink = _BlockWriter(block)
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
            writer.write_table(table)
        sink.close()
        written = sink.pos
        return SharedTable(block.name, written), None if out is None else Outbox(out.name, out.size)

    def taken(self, table: SharedTable, outbox: Outbox | None, overflow: int) -> None:
        """The worker is done with a chunk: its blocks' names go; ``overflow`` bytes did not fit its outbox."""
        for name in [table.name] + ([outbox.name] if outbox is not None else []):
            block = self._by_name.get(name)
            if block is not None:
                block.unname()
        if overflow and outbox is not None:
            slot = next((s for s, b in self._out.items() if b.name == outbox.name), None)
            if slot is not None:
                self._out_need[slot] = (outbox.size + overflow) * 5 // 4

    def read(self, ref: SharedBytes) -> Iterator[bytes]:
        """What a worker left in a block, in pieces of at most :data:`COPY_BLOCK` bytes (copies)."""
        fd = self._by_name[ref.name].memory._fd  # type: ignore[attr-defined]
        end = ref.offset + ref.size
        for start in range(ref.offset, end, COPY_BLOCK):
            yield _pread(fd, min(COPY_BLOCK, end - start), start)

    def close(self) -> None:
        for block in self._by_name.values():
            block.close()
        self._in.clear()
        self._out.clear()
        self._by_name.clear()


# --------------------------------------------------------------------------- worker process side

_open: OrderedDict[str, shared_memory.SharedMemory] = OrderedDict()


def _attach(name: str) -> shared_memory.SharedMemory:
    memory = _open.get(name)
    if memory is None:
        memory = _open[name] = shared_memory.SharedMemory(name)
        while len(_open) > _WORKER_OPEN:  # blocks the job's process replaced by larger ones
            _open.popitem(last=False)[1].close()
    _open.move_to_end(name)
    return memory


def read_table(ref: SharedTable) -> pa.Table:
    """Worker side: the table the job's process wrote (copied out, so the block can be reused at once)."""
    data = _pread(_attach(ref.name)._fd, ref.size, 0)  # type: ignore[attr-defined]
    return pa.ipc.open_stream(data).read_all()


class OutboxWriter:
    """Worker side: fills an :class:`Outbox` from its start; what does not fit is counted as overflow."""

    def __init__(self, box: Outbox) -> None:
        self.box = box
        self.fd = _attach(box.name)._fd  # type: ignore[attr-defined]
        self.used = 0
        self.overflow = 0

    def put(self, data: bytes) -> SharedBytes | None:
        """Copy ``data`` into the block (None: it does not fit, and the caller sends it another way)."""
        size = len(data)
        if self.used + size > self.box.size:
            self.overflow += size
            return None
        _pwrite(self.fd, data, self.used)
        ref = SharedBytes(self.box.name, self.used, size)
        self.used += size
        return ref
