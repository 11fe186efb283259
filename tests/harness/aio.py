"""One asyncio event loop in a background thread, shared by every XMPP
client of the test session, so tests stay plain synchronous functions.

`LOOP.run(coro, timeout)` runs a coroutine there and returns its result;
`LOOP.call(fn, *args)` runs a plain function there (slixmpp objects must be
created and touched on the loop's thread).
"""
import asyncio
import concurrent.futures
import threading


def _quiet(loop, context):
    # slixmpp leaves its filter task pending when a stream closes: not an error of a test
    if str(context.get("message", "")).startswith("Task was destroyed but it is pending"):
        return
    loop.default_exception_handler(context)


class _Loop:
    def __init__(self):
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()

                def main():
                    self._loop = asyncio.new_event_loop()
                    self._loop.set_exception_handler(_quiet)
                    asyncio.set_event_loop(self._loop)
                    ready.set()
                    self._loop.run_forever()

                self._thread = threading.Thread(target=main, name="harness-asyncio", daemon=True)
                self._thread.start()
                ready.wait()
            return self._loop

    def in_loop(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro, timeout=None):
        """Runs a coroutine on the loop; waits at most `timeout` seconds."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"timed out after {timeout} s") from None

    def call(self, fn, *args, **kwargs):
        """Runs `fn(*args, **kwargs)` on the loop's thread and returns its result."""
        if self.in_loop():
            return fn(*args, **kwargs)

        async def wrapper():
            return fn(*args, **kwargs)

        return self.run(wrapper(), timeout=30)


LOOP = _Loop()
