"""Adaptive micro-batching: concurrent requests for the same model share one ``predict_proba`` call.

scikit-learn pays about 3 ms per call whatever the size (one row or a thousand), so one call per request
caps a core near 300 requests/s. Requests are queued; the scoring loop takes everything queued (up to
``max_batch`` records, waiting at most ``max_wait`` for more) and scores it in one call on a worker thread,
while the event loop keeps accepting requests, which form the next batch. Idle, a request is scored at
once; under load, batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctloop.estimators.scoring import ScoringError, predict_scores, records_frame

if TYPE_CHECKING:
    from ctloop.core.params import DatasetSpec
    from ctloop.estimators.compiled import Scorer
    from ctloop.serving.metrics import ServingMetrics

# up to this many records a compiled scorer (linear or ONNX) runs on the event loop: well under a millisecond
INLINE_RECORDS = 64

@dataclass(frozen=True)
class LoadedModel:
    alias: str
    version: str
    model: Any
    loaded_at: str
    compiled: Scorer | None = None  # a verified compiled path (ctloop.estimators.compiled / .onnx), when there is one
    path: str = "scikit-learn"


@dataclass
class _Job:
    model: LoadedModel
    records: list[dict[str, Any]]
    future: asyncio.Future[Any]


def _limit_threads(threads: int | None) -> None:
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


class MicroBatcher:
    def __init__(self, contract: DatasetSpec, max_batch: int, max_wait_ms: float,
                 metrics: ServingMetrics | None = None, threads: int | None = 1) -> None:
        self.contract = contract
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.metrics = metrics
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        # OpenMP/BLAS pools of the threads that score (this one, and the event loop's, which scores small
        # batches of compiled models inline): a one-row gradient-boosting call takes 5.8 ms starting two
        # OpenMP threads and 0.4 ms on one (measured here); throughput comes from replicas
        self.threads = threads
        self._limited = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ctloop-scoring", initializer=_limit_threads,
                                            initargs=(threads,))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._limited = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ctloop-batcher")

    async def close(self) -> None:
        """Score everything queued, then stop."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def score(self, model: LoadedModel, records: list[dict[str, Any]]) -> Any:
        """Scores for ``records`` (an array in their order); :class:`ScoringError` when the model fails."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(model, records, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            job = await self._queue.get()
            if job is None:
                break
            jobs, size = [job], len(job.records)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if nxt is None:
                    stopping = True
                    break
                jobs.append(nxt)
                size += len(nxt.records)
            # a few records through a compiled path take microseconds: no thread hand-off; more go to the pool
            if size <= INLINE_RECORDS and all(j.model.compiled is not None for j in jobs):
                if not self._limited:  # the event loop's thread, once a model (and its OpenMP runtime) is loaded
                    _limit_threads(self.threads)
                    self._limited = True
                results = self._score_jobs(jobs)
            else:
                results = await loop.run_in_executor(self._executor, self._score_jobs, jobs)
            for j, result in zip(jobs, results, strict=True):
                if j.future.done():  # the request was cancelled (client went away)
                    continue
                if isinstance(result, ScoringError):
                    j.future.set_exception(result)
                else:
                    j.future.set_result(result)

    def scores_now(self, model: LoadedModel, records: list[dict[str, Any]]) -> Any:
        """Scores through the model's serving path, off the queue (warm-up calls and batches)."""
        if model.compiled is None:
            return predict_scores(model.model, records_frame(records, self.contract), self.contract.task,
                                  self.contract.classes)
        import numpy as np

        try:
            scores = model.compiled(records)
        except Exception as e:  # same contract as predict_scores: a failure is a ScoringError
            raise ScoringError(f"compiled scorer: {type(e).__name__}: {e}") from e
        if not np.all(np.isfinite(scores)):
            raise ScoringError("compiled scorer returned a score that is not finite")
        return scores

    def _score_jobs(self, jobs: list[_Job]) -> list[Any]:
        """One call per model; when a shared call fails, each job is retried alone so one bad request
        cannot fail the others."""
        results: list[Any] = [None] * len(jobs)
        groups: dict[int, list[int]] = {}
        for i, j in enumerate(jobs):
            groups.setdefault(id(j.model), []).append(i)
        for members in groups.values():
            records = [r for i in members for r in jobs[i].records]
            model = jobs[members[0]].model
            try:
                scores = self.scores_now(model, records)
            except ScoringError as e:
                if len(members) == 1:
                    results[members[0]] = e
                    continue
                for i in members:
                    try:
                        results[i] = self.scores_now(model, jobs[i].records)
                    except ScoringError as e_one:
                        results[i] = e_one
                continue
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(records))
            start = 0
            for i in members:
                n = len(jobs[i].records)
                results[i] = scores[start:start + n]
                start += n
        return results
