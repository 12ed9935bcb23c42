"""The serving engine without HTTP: what its thread does when the generator fails."""
from __future__ import annotations

import pytest


def test_an_engine_failure_reaches_the_waiting_client():
    """Whatever fails inside the engine thread (here the generator's first step) is answered to every job it had
    taken, instead of leaving the client waiting."""
    import asyncio
    from codegeex_ms.generation import SamplingConfig
    from codegeex_ms.serving import Engine

    class FailingGenerator:
        max_len, cached = 64, None

        def run(self, pull, on_text, on_done, cancelled, stats):
            pull(4, False)
            raise RuntimeError("the device went away")

    class Tokenizer:
        vocab_size = 100

    async def ask():
        engine = Engine(FailingGenerator(), Tokenizer(), "failing")
        job = engine.submit([1, 2, 3], SamplingConfig(max_new_tokens=2), 2)
        try:
            await asyncio.wait_for(job.done, timeout=30)
        finally:
            engine.close(timeout=5)

    with pytest.raises(RuntimeError, match="the device went away"):
        asyncio.run(ask())
