#!/usr/bin/env python3
"""MPI collective benchmark for CPU queues (mpi4py + numpy on the cluster's Open MPI).

Prints nccl-tests' 2.13+ table, so one parser and one report serve GPU and CPU queues:
``size count type redop root | time algbw busbw #wrong | time algbw busbw #wrong``, time in us,
bandwidth in 1e9 B/s, bus bandwidth = algorithm bandwidth x the collective's factor
(all_reduce 2(n-1)/n, sendrecv 1). Every result is checked: each rank sends rank+1, so an
all_reduce element must equal n(n+1)/2 and a sendrecv element its peer's rank+1; ``#wrong``
counts the elements that differ.

Only rank 0 prints. Run it under mpirun or srun inside a Slurm allocation.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import time

FACTORS = {"all_reduce": lambda n: 2.0 * (n - 1) / n, "sendrecv": lambda n: 1.0}


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def sizes(low: int, high: int, factor: int) -> list[int]:
    out, size = [], max(low, 4)
    while size <= high:
        out.append(size - size % 4)
        size *= factor
    return out


def float_str(value: float, width: int) -> str:
    """Fixed-width numbers the way nccl-tests prints them."""
    power, limit = 0, 1
    while value >= limit:
        power += 1
        limit *= 10
    if power < width - 2:
        return f"{value:{width}.2f}"
    if power < width - 1:
        return f"{value:{width}.1f}"
    if power < width + 1:
        return f"{value:{width}.0f}"
    return f"{value:{width}.1e}"


def once(collective: str, comm, send, recv, in_place: bool, peer: int) -> None:
    """One collective call; mpi4py and numpy objects are passed in (imported in main)."""
    from mpi4py import MPI

    if collective == "all_reduce":
        if in_place:
            recv[:] = send
            comm.Allreduce(MPI.IN_PLACE, recv, op=MPI.SUM)
        else:
            comm.Allreduce(send, recv, op=MPI.SUM)
    else:
        comm.Sendrecv(send, dest=peer, recvbuf=recv, source=peer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collective", choices=sorted(FACTORS), default="all_reduce")
    parser.add_argument("-b", "--min-bytes", default="1K")
    parser.add_argument("-e", "--max-bytes", default="16M")
    parser.add_argument("-f", "--step-factor", type=int, default=4)
    parser.add_argument("-n", "--iters", type=int, default=20)
    parser.add_argument("-w", "--warmup-iters", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, nranks = comm.Get_rank(), comm.Get_size()
    if args.collective == "sendrecv" and nranks % 2:
        if rank == 0:
            print("# sendrecv needs an even number of ranks", flush=True)
        return 2
    out = sys.stdout if rank == 0 else None

    def say(line: str) -> None:
        if out:
            out.write(line + "\n")
            out.flush()

    library = MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()
    say(
        f"# xpu mpi benchmark: mpi4py {__import__('mpi4py').__version__},"
        f" numpy {np.__version__}, {library}"
    )
    say(f"# Collective test starting: {args.collective}_mpi")
    say(
        f"# nThread 1 nGpus 0 minBytes {parse_size(args.min_bytes)}"
        f" maxBytes {parse_size(args.max_bytes)}"
        f" step: {args.step_factor}(factor) warmup iters: {args.warmup_iters} iters: {args.iters}"
        " agg iters: 1 validation: 1 graph: 0"
    )
    say("#")
    say("# Using devices")
    info = (
        f"#  Rank {rank:2d} Group  0 Pid {os.getpid():6d} on {socket.gethostname():>10s}"
        f" device  0 [cpu] {platform.machine()}"
    )
    for line in comm.gather(info, root=0) or []:
        say(line)
    say("#")
    say(
        f"# {'size':>10s}  {'count':>12s}  {'type':>8s}  {'redop':>6s}  {'root':>6s}  "
        + "  ".join(
            f"{c:>7s}" if c == "time" else f"{c:>6s}"
            for c in ("time", "algbw", "busbw", "#wrong") * 2
        )
    )
    say(
        f"# {'(B)':>10s}  {'(elements)':>12s}  {'':>8s}  {'':>6s}  {'':>6s}  "
        + "  ".join(
            f"{c:>7s}" if c == "(us)" else f"{c:>6s}" for c in ("(us)", "(GB/s)", "(GB/s)", "") * 2
        )
    )

    factor = FACTORS[args.collective](nranks)
    redop = "sum" if args.collective == "all_reduce" else "none"
    peer = (rank + nranks // 2) % nranks
    busbws, errors = [], 0
    for size in sizes(parse_size(args.min_bytes), parse_size(args.max_bytes), args.step_factor):
        count = size // 4
        send = np.full(count, rank + 1, dtype=np.float32)
        halves = []
        for in_place in (False, True):
            recv = np.empty_like(send)

            for _ in range(args.warmup_iters):
                once(args.collective, comm, send, recv, in_place, peer)
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(args.iters):
                once(args.collective, comm, send, recv, in_place, peer)
            elapsed = (time.perf_counter() - start) / args.iters
            slowest = comm.allreduce(elapsed, op=MPI.MAX)
            expected = nranks * (nranks + 1) / 2 if args.collective == "all_reduce" else peer + 1
            wrong = comm.allreduce(int(np.count_nonzero(recv != expected)), op=MPI.SUM)
            algbw = size / slowest / 1e9
            busbw = algbw * factor
            halves.append(
                f"  {float_str(slowest * 1e6, 7)}  {float_str(algbw, 6)}"
                f"  {float_str(busbw, 6)}  {wrong:6d}"
            )
            busbws.append(busbw)
            errors += wrong
        say(f"{size:12d}  {count:12d}  {'float':>8s}  {redop:>6s}  {-1:6d}{halves[0]}{halves[1]}")
    say(f"# Out of bounds values : {1 if errors else 0} {'FAILED' if errors else 'OK'}")
    say(f"# Avg bus bandwidth    : {sum(busbws) / max(len(busbws), 1):g} ")
    say("#")
    say(f"# Collective test concluded: {args.collective}_mpi")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
