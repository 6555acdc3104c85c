"""The batcher of `personkit serve` (issue #32): partial batches on every Python the package
declares, failures that stay with their request, a bounded queue, and waiting requests that
fail (503) instead of hanging when its worker dies or the server stops."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from personkit.serve.batching import Batcher, BatcherBusy, BatcherStopped

BATCHING = Path(__file__).resolve().parents[2] / "personkit" / "serve" / "batching.py"


def run(coro):
    return asyncio.run(coro)


def double(items):
    if any(i == "bad" for i in items):
        raise ValueError("bad item")
    return [2 * i for i in items]


def test_partial_batches_and_one_failing_item_fails_alone():
    sizes = []

    async def main():
        b = Batcher(double, max_batch=8, max_wait_ms=30, on_batch=sizes.append)
        out = await asyncio.gather(*(b.submit(i) for i in (1, 2, "bad", 4)),
                                   return_exceptions=True)
        alone = await b.submit(5)  # a batch of one, after the wait: the worker lives on
        await b.close()
        return out, alone

    out, alone = run(main())
    assert out[:2] == [2, 4] and out[3] == 8 and isinstance(out[2], ValueError)
    assert alone == 10 and sizes == [4, 1]


def test_a_wrong_number_of_results_fails_its_batch_not_the_worker():
    calls = []

    def short(items):
        calls.append(len(items))
        return [0] * (len(items) - 1) if len(items) > 1 else [len(items)]

    async def main():
        b = Batcher(short, max_batch=4, max_wait_ms=30)
        out = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
        return out, await b.submit(9)

    out, later = run(main())
    assert out == [1, 1, 1]  # the short batch was rerun item by item
    assert later == 1 and calls[0] == 3


def test_a_full_queue_refuses_and_a_dead_worker_fails_the_waiting():
    def slow(items):
        import time

        time.sleep(0.3)
        return list(items)

    async def main():
        b = Batcher(slow, max_batch=1, max_wait_ms=0, max_queue=2)
        first = [asyncio.ensure_future(b.submit(0))]
        await asyncio.sleep(0.05)  # it runs
        first += [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)  # two wait: the queue is full
        with pytest.raises(BatcherBusy):
            await b.submit(3)
        b._worker.cancel()  # the worker dies (a bug, or cancelled): nothing waits forever
        done = await asyncio.gather(*first, return_exceptions=True)
        again = await b.submit(7)  # a new worker starts
        await b.close()
        with pytest.raises(BatcherStopped):
            await b.submit(8)
        return done, again

    done, again = run(main())
    assert all(isinstance(d, BatcherStopped) for d in done) and again == 7


def test_close_fails_the_requests_still_waiting():
    async def main():
        def slow(items):
            import time

            time.sleep(0.3)
            return list(items)

        b = Batcher(slow, max_batch=1, max_wait_ms=0)
        waiting = [asyncio.ensure_future(b.submit(i)) for i in range(3)]
        await asyncio.sleep(0.05)  # the first is running
        await b.close()
        return await asyncio.gather(*waiting, return_exceptions=True)

    out = run(main())
    assert all(isinstance(o, BatcherStopped) for o in out)


def _python310() -> str | None:
    """A working Python 3.10 (pyenv's, or one on the PATH), or None."""
    for found in [*sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))),
                  shutil.which("python3.10")]:
        if found and subprocess.run([found, "-c", "pass"], capture_output=True).returncode == 0:
            return found
    return None


@pytest.mark.skipif(sys.version_info < (3, 11) or _python310() is None,
                    reason="no Python 3.10 interpreter on this machine")
def test_the_batcher_works_on_python_3_10(tmp_path):
    """``pyproject.toml`` allows 3.10, whose ``asyncio.wait_for`` raises
    ``asyncio.TimeoutError`` (not the builtin): a batch smaller than ``max_batch`` killed the
    worker there. The module (standard library only) is run by a 3.10 interpreter."""
    script = tmp_path / "check.py"
    script.write_text(f"""
import asyncio, importlib.util, sys
spec = importlib.util.spec_from_file_location("batching", {str(BATCHING)!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
async def main():
    b = m.Batcher(lambda items: [i * 2 for i in items], max_batch=8, max_wait_ms=20)
    first = await asyncio.gather(*(b.submit(i) for i in range(3)))
    second = await asyncio.wait_for(b.submit(5), 10)
    await b.close()
    return first, second
print(sys.version_info[:2], asyncio.run(main()))
""")
    out = subprocess.run([_python310(), str(script)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(3, 10) ([0, 2, 4], 10)"
