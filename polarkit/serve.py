"""`polarkit serve`: registered models (or any model specs) behind an HTTP API, plus a page for people.

    polarkit serve                                  # every registered task's champion, 127.0.0.1:8000
    polarkit serve sentiment@champion sts/3 outputs/06_sts/<run>   # or name them (TASK@ALIAS, TASK/VERSION, folders)
    curl -s localhost:8000/predict/sentiment -H 'Content-Type: application/json' -d '{"inputs": ["배송 빨라요"]}'

Endpoints (JSON in and out; errors are `{"detail": "<what was wrong and what was expected>"}`):

    POST /predict/{task}   {"inputs": ["text", ...]}; pair tasks (sts): {"inputs": [["sentence 1", "sentence 2"], ...]}
                           -> {"task", "version", "spec", "outputs": [predictor.predict's dicts], "batch"}
    POST /explain/{task}   {"inputs": [one input]} -> the attention heatmap of that input (PNG, base64) and its tokens
    GET  /models           the served models (task, version, spec, metric) and the registry (versions, aliases, metrics)
    GET  /health           {"status": "ok", "tasks": [...], ...}
    POST /reload           re-resolve the specs (aliases) and swap in what changed; also on SIGHUP
    POST /promote          {"task", "version"?, "force"?} -> polarkit.registry.promote (the page's promote button)
    GET  /                 the page: pick a task, type a review or two sentences, see label/score + attention;
                           the registry table with a promote button

Each model is loaded once at start-up (and run once, to warm it up). Requests for one task that arrive
together are merged into one model call (dynamic batching): one queue per task; when a model thread is
free, the task's batcher takes what is queued (up to `max_batch` inputs), waits at most `batch_window_ms`
for requests that are already arriving (never on an idle server), and runs the model in that thread
while the event loop keeps accepting requests, so the next batch forms during the current one.
`workers` model calls may be in flight at once, each in its own thread with `threads` torch threads
(default: the cores shared out); inside a call the predictor runs length-sorted forward passes of
`micro_batch` inputs (less padding). `batching=False` runs every request alone (the benchmark's baseline).

`/reload` loads the newly resolved models first (beside the ones serving), then swaps the reference:
a batch already running finishes on the old model and says so in its answer's `version`.

Safety: binds 127.0.0.1 unless told otherwise; POST bodies must be `Content-Type: application/json`
(so a web page elsewhere cannot post a form here without a CORS preflight, which this server does not
answer); with a loopback host, requests must name a loopback Host (DNS rebinding); `admin=False`
(`--read-only`) turns /promote and /reload off. Before exposing it, put a reverse proxy with TLS and
authentication in front (and use --read-only there).

This is a core module: it loads models through `polarkit.predictors` (which imports the task loader a
model card names), never `polarkit.tasks` directly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import copy
import difflib
import functools
import inspect
import io
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polarkit import predictors

try:  # the serve extra; without it this module still imports (the CLI adds `serve` and explains what is missing)
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, Response
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    MISSING = None
except ImportError as e:  # pragma: no cover - the serve extra is optional
    MISSING = f"the serve extra is not installed: pip install -e '.[serve]' (no module {e.name!r})"

log = logging.getLogger("polarkit.serve")

PAGE = Path(__file__).with_name("serve_page")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CHAMPION = "champion"
MAX_CHARS = 2000  # per text; the predictors truncate at their max_length tokens anyway
MAX_BATCH = 32  # inputs per request, and per merged model call
BATCH_WINDOW_MS = 10.0  # how long a batch may wait for requests already arriving (an idle server never waits)
MAX_QUEUE = 4096  # queued inputs per task before requests are turned away (503)
# Model calls in flight at once, each on cores / WORKERS torch threads, and inputs per forward pass inside a
# call. Chosen on this 2-core CPU (benchmarks/bench_serve.py, server CPU time per request, e5-small-ko):
# one review alone costs ~25-30 ms of CPU, in length-sorted passes of 8 ~11-14 ms (passes of 32 pad more:
# ~16); two single-threaded calls side by side use both cores at full efficiency, where two torch threads
# on one small call do not.
WORKERS = 2
MICRO_BATCH = 8
EXPLAIN_TOKENS = 64  # tokens shown in an attention heatmap (bertviz/heatmap cost grows with T^2)


class Refused(Exception):
    """A request the server answers with a 4xx/5xx and a message (raised inside the model plumbing)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ---- models ----


@dataclass
class Served:
    """One loaded model and where it came from."""

    task: str
    spec: str
    version: int | None
    folder: Path
    card: dict
    predictor: Any
    fingerprint: tuple
    loaded_at: float = field(default_factory=time.time)
    explain_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    explain_tokenizers: dict = field(
        default_factory=dict, repr=False
    )  # private copies (tokenizers, encoders) for /explain

    @property
    def kind(self) -> str:
        return self.card["kind"]

    @property
    def pair(self) -> bool:
        return self.kind in predictors.PAIR_KINDS or bool(self.card.get("pair"))

    def info(self) -> dict:
        c = self.card
        return {
            "task": self.task,
            "version": self.version,
            "spec": self.spec,
            "kind": self.kind,
            "pair": self.pair,
            "labels": c.get("labels"),
            "metric": c.get("metric"),
            "value": _finite(c.get("value")),
            "run_id": c.get("run_id"),
            "folder": str(self.folder),
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.loaded_at)),
        }


def store_missing(uri: str | None = None) -> str | None:
    """The redacted store URI when it is a SQLite file that does not exist (listing it would create it)."""
    from polarkit import tracking

    uri = uri or tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return tracking.redact(uri)
    return None


def champion_specs(uri: str | None = None) -> list[str]:
    """`TASK@champion` for every registered task that has a champion; ValueError when there is none."""
    from polarkit import registry, tracking

    if missing := store_missing(uri):
        raise ValueError(
            f"no model registry at {missing} yet: run a notebook with register=True and "
            "`polarkit promote TASK`, or name what to serve: polarkit serve a model or run folder"
        )
    table = registry.list_models(uri)
    tasks = sorted({row.task for row in table.itertuples() if CHAMPION in str(row.aliases or "").split(", ")})
    if not tasks:
        where = tracking.redact(uri or tracking.tracking_uri())
        raise ValueError(
            f"no champion in the registry at {where}: promote one (`polarkit promote TASK`), or name "
            "what to serve: polarkit serve sentiment@champion | TASK/VERSION | a run or model folder"
        )
    return [f"{t}@{CHAMPION}" for t in tasks]


def resolve(spec: str, uri: str | None = None) -> tuple[int | None, Path]:
    """(registry version or None, local model folder) of a spec. An alias is resolved to its version
    first, and that version is what is loaded (so a promotion in between cannot mix the two)."""
    kind, *rest = predictors.parse_spec(spec)
    if kind == "path":
        return None, predictors.model_dir_in(Path(rest[0]))
    from polarkit import registry

    task, ref = rest
    version = registry.version_of(
        task, alias=ref if kind == "alias" else None, version=ref if kind == "version" else None, uri=uri
    )
    return int(version), predictors.resolve(f"{task}/{version}", uri=uri)


def _fingerprint(folder: Path) -> tuple:
    """What says a folder now holds another model: its path and its card's mtime and size."""
    st = (folder / predictors.CARD).stat()
    return str(folder.resolve()), st.st_mtime_ns, st.st_size


def load_served(spec: str, quantize: bool = False, uri: str | None = None) -> Served:
    """Resolve and load one spec, and run it once: the first call's set-up (the tokenizer's truncation and
    padding settings, allocations) happens here, not in a request and not in two model threads at once."""
    version, folder = resolve(spec, uri)
    card = predictors.read_card(folder)
    predictor = predictors.load_model_dir(folder, quantize=quantize)
    s = Served(card["task"], str(spec), version, folder, card, predictor, _fingerprint(folder))
    predictor.predict([("warm up", "warm up")] if s.pair else ["warm up"])
    return s


# ---- request checks ----


def _jtype(x: Any) -> str:
    """The JSON name of a parsed value's type."""
    if isinstance(x, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number", type(None): "null"}.get(
        type(x), type(x).__name__
    )


def _short(x: Any, limit: int = 60) -> str:
    s = json.dumps(x, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def example(pair: bool) -> str:
    return '{"inputs": [["sentence 1", "sentence 2"], ...]}' if pair else '{"inputs": ["text", ...]}'


def parse_body(raw: bytes, what: str) -> Any:
    """UTF-8 JSON -> value; Refused(400) naming the problem and `what` was expected."""
    if not raw.strip():
        raise Refused(400, f"the request body is empty: expected JSON such as {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Refused(
            400,
            f"the request body is not UTF-8 text (byte 0x{raw[e.start]:02x} at position {e.start}): "
            f"send JSON encoded as UTF-8, such as {what}",
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Refused(
            400, f"the request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): expected {what}"
        ) from None
    except RecursionError:
        raise Refused(400, f"the request body nests too deeply to parse: expected {what}") from None


def check_inputs(
    body: Any, pair: bool, max_batch: int = MAX_BATCH, max_chars: int = MAX_CHARS, exactly_one: bool = False
) -> list:
    """The `inputs` list of a predict body, checked; Refused(422) saying what was expected otherwise.

    Texts: non-empty strings (not only spaces) of at most `max_chars` characters, valid Unicode.
    Pairs: two such strings each. At most `max_batch` inputs (exactly one with `exactly_one`)."""
    ex = example(pair)
    if not isinstance(body, dict):
        raise Refused(422, f"expected a JSON object {ex}, got a JSON {_jtype(body)}")
    if "inputs" not in body:
        near = difflib.get_close_matches("inputs", [str(k) for k in body], n=1, cutoff=0.6)
        hint = f" (found {near[0]!r}: did you mean 'inputs'?)" if near else ""
        raise Refused(422, f"the object has no 'inputs' field{hint}: expected {ex}")
    extra = sorted(set(body) - {"inputs"})
    if extra:
        raise Refused(422, f"unknown field(s) {', '.join(map(repr, extra))}: expected only 'inputs', as in {ex}")
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise Refused(422, f"'inputs' must be a list, got a JSON {_jtype(inputs)}: expected {ex}")
    if not inputs:
        raise Refused(422, f"'inputs' is empty: send at least one {'pair' if pair else 'text'}, as in {ex}")
    if exactly_one and len(inputs) != 1:
        one = '["sentence 1", "sentence 2"]' if pair else '"text"'
        raise Refused(422, f'send exactly one input here ({len(inputs)} given): {{"inputs": [{one}]}}')
    if len(inputs) > max_batch:
        split = "split the list into several requests; the server merges concurrent requests into batches itself"
        raise Refused(422, f"{len(inputs)} inputs in one request: at most {max_batch} ({split})")
    for i, x in enumerate(inputs):
        if pair:
            if not (isinstance(x, list) and len(x) == 2 and all(isinstance(s, str) for s in x)):
                got = f"a string ({_short(x)})" if isinstance(x, str) else _short(x)
                expected = '["sentence 1", "sentence 2"]'
                raise Refused(422, f"inputs[{i}]: this task scores sentence pairs; expected {expected}, got {got}")
            texts = x
        else:
            if not isinstance(x, str):
                hint = " (this task takes single texts, not pairs)" if isinstance(x, list) else ""
                raise Refused(422, f"inputs[{i}]: expected a string, got a JSON {_jtype(x)} {_short(x)}{hint}")
            texts = [x]
        for j, t in enumerate(texts):
            where = f"inputs[{i}][{j}]" if pair else f"inputs[{i}]"
            if not t.strip():
                raise Refused(422, f"{where} is empty{' (only spaces)' if t else ''}: send some text")
            if len(t) > max_chars:
                fix = "shorten it, or start the server with a larger --max-chars"
                raise Refused(422, f"{where} has {len(t):,} characters; the limit is {max_chars:,} per text ({fix})")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise Refused(
                    422,
                    f"{where} holds an unpaired surrogate (\\u{ord(t[e.start]):04x} at character "
                    f"{e.start}): not valid Unicode text",
                ) from None
    return [tuple(x) for x in inputs] if pair else inputs


# ---- batching ----


@dataclass
class Job:
    inputs: list
    future: asyncio.Future


class Batcher:
    """One task's queue and the worker that merges queued requests into model calls."""

    def __init__(self, state: State, task: str):
        self.state, self.task = state, task
        self.pending: collections.deque[Job] = collections.deque()
        self.queued_inputs = 0
        self.arriving = 0  # requests for this task received but not yet queued (body being read/checked)
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(state.workers)  # model calls of this task in flight at once
        self.running: set[asyncio.Task] = set()
        self.worker: asyncio.Task | None = None
        self.calls = self.inputs_done = 0

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.task}")

    async def submit(self, inputs: list):
        """-> (outputs, the Served that answered, inputs in its model call)."""
        if self.queued_inputs + len(inputs) > self.state.max_queue:
            raise Refused(503, f"the {self.task} queue is full ({self.queued_inputs} inputs waiting): retry shortly")
        job = Job(inputs, asyncio.get_running_loop().create_future())
        self.pending.append(job)
        self.queued_inputs += len(inputs)
        self.wake.set()
        return await job.future

    def _take(self, batch: list[Job], n: int) -> int:
        """Move queued jobs into `batch` while they fit in max_batch inputs; returns the input count."""
        while self.pending and n + len(self.pending[0].inputs) <= self.state.max_batch:
            job = self.pending.popleft()
            self.queued_inputs -= len(job.inputs)
            batch.append(job)
            n += len(job.inputs)
        return n

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        window = self.state.batch_window_ms / 1000
        while True:
            try:
                while not self.pending:
                    self.wake.clear()
                    await self.wake.wait()
                await self.slots.acquire()  # a model thread is free: while none is, requests pile up (bigger batches)
                batch: list[Job] = []
                try:
                    n = self._take(batch, 0)
                    deadline = loop.time() + window
                    # wait (at most the window) only for requests already arriving, never on an idle server
                    while n < self.state.max_batch and not self.pending and self.arriving > 0:
                        left = deadline - loop.time()
                        if left <= 0:
                            break
                        self.wake.clear()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self.wake.wait(), left)
                        n = self._take(batch, n)
                        if self.pending:  # the next job does not fit: run this batch now
                            break
                except BaseException:
                    self.slots.release()
                    for job in batch:  # taken but not run (shutdown): their requests end now
                        _settle(job.future, exc=Refused(503, "the server is shutting down"))
                    raise
                task = loop.create_task(self._run_then_release(batch))
                self.running.add(task)
                task.add_done_callback(self.running.discard)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the worker must survive anything
                log.exception("batcher %s: unexpected error", self.task)

    async def _run_then_release(self, batch: list[Job]) -> None:
        try:
            await self._run(batch)
        except Exception as e:  # noqa: BLE001
            log.exception("batcher %s: unexpected error", self.task)
            for job in batch:
                _settle(job.future, exc=Refused(500, f"internal error: {type(e).__name__}: {e}"))
        finally:
            self.slots.release()

    async def _run(self, batch: list[Job]) -> None:
        served = self.state.models[self.task]  # a reload swaps the entry; this batch finishes on this model
        inputs = [x for job in batch for x in job.inputs]
        try:
            outputs = await self.state.predict(served, inputs)
            if len(outputs) != len(inputs):
                raise RuntimeError(f"the predictor returned {len(outputs)} outputs for {len(inputs)} inputs")
        except Exception as e:  # noqa: BLE001
            if len(batch) > 1:  # find the request that failed: each alone, so only it gets the error
                for job in batch:
                    await self._run([job])
                return
            _settle(batch[0].future, exc=model_error(self.task, served, e))
            return
        self.calls += 1
        self.inputs_done += len(inputs)
        i = 0
        for job in batch:
            _settle(job.future, result=(outputs[i : i + len(job.inputs)], served, len(inputs)))
            i += len(job.inputs)


def _settle(fut: asyncio.Future, result=None, exc: BaseException | None = None) -> None:
    if fut.done():  # the client went away
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def model_error(task: str, served: Served, e: BaseException) -> Refused:
    log.error("%s v%s failed on a request: %s: %s", task, served.version, type(e).__name__, e, exc_info=e)
    return Refused(500, f"the {task} model ({served.spec}) failed on this input: {type(e).__name__}: {e}")


# ---- application state ----


class State:
    """Everything the app shares: the served models, their batchers, the model thread, settings."""

    def __init__(
        self,
        specs: list[str] | None,
        *,
        batching: bool,
        batch_window_ms: float,
        max_batch: int,
        max_chars: int,
        max_queue: int,
        quantize: bool,
        workers: int,
        admin: bool,
        uri: str | None,
        micro_batch: int | None = MICRO_BATCH,
    ):
        self.given_specs = list(specs) if specs else None  # None: every registered champion, re-listed on reload
        self.batching, self.batch_window_ms, self.max_batch = batching, float(batch_window_ms), int(max_batch)
        self.micro_batch = micro_batch or None  # inputs per forward pass inside one model call (None: the predictor's)
        self.max_chars, self.max_queue, self.quantize, self.admin, self.uri = max_chars, max_queue, quantize, admin, uri
        if min(self.max_batch, self.max_chars, workers) < 1 or self.batch_window_ms < 0 or (micro_batch or 0) < 0:
            raise ValueError("max_batch, max_chars, micro_batch and workers must be >= 1 and batch_window_ms >= 0")
        self.workers = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="polarkit-model")
        self.models: dict[str, Served] = {}
        self.batchers: dict[str, Batcher] = {}
        self.started = time.time()
        self.reloads = 0
        self.reload_lock: asyncio.Lock | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def specs(self) -> list[str]:
        return self.given_specs or champion_specs(self.uri)

    def load_all(self) -> None:
        """Load every spec (start-up); a ValueError names the spec that failed."""
        for spec in self.specs():
            try:
                s = load_served(spec, self.quantize, self.uri)
            except (ValueError, OSError) as e:
                raise ValueError(f"cannot serve {spec}: {e}") from None
            if s.task in self.models:
                raise ValueError(
                    f"two models for task {s.task!r}: {self.models[s.task].spec} and {spec} (serve one model per task)"
                )
            self.models[s.task] = s

    async def call(self, fn, *args):
        """Run `fn(*args)` in the model thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def predict(self, served: Served, inputs: list) -> list[dict]:
        """served.predictor.predict(inputs) in the model thread (length-sorted forward passes of `micro_batch`)."""
        if self.micro_batch:
            return await self.call(functools.partial(served.predictor.predict, inputs, batch_size=self.micro_batch))
        return await self.call(served.predictor.predict, inputs)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.reload_lock = asyncio.Lock()
        for task in self.models:
            self._batcher(task)

    def _batcher(self, task: str) -> Batcher:
        if task not in self.batchers:
            self.batchers[task] = b = Batcher(self, task)
            b.start()
        return self.batchers[task]

    async def stop(self) -> None:
        for b in self.batchers.values():
            if b.worker is not None:
                b.worker.cancel()
            for t in list(b.running):
                t.cancel()
        await asyncio.gather(*(b.worker for b in self.batchers.values() if b.worker), return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def reload(self, why: str = "request") -> dict:
        """Re-resolve the specs; load what changed beside what is serving, then swap. Errors keep the old model."""
        async with self.reload_lock:
            result = await asyncio.to_thread(self._resolve_changes)
            for task, s in result.pop("_new").items():
                old = self.models.get(task)
                self.models[task] = s  # requests queued from now on use s; a running batch keeps its own reference
                self._batcher(task)
                result["changed"].append(
                    {"task": task, "from": None if old is None else old.version, "to": s.version, "spec": s.spec}
                )
            self.reloads += 1
            log.info(
                "reload (%s): changed %s, unchanged %s, errors %s",
                why,
                result["changed"],
                result["unchanged"],
                result["errors"],
            )
            return result

    def _resolve_changes(self) -> dict:
        out: dict[str, Any] = {"changed": [], "unchanged": [], "errors": [], "_new": {}}
        try:
            specs = self.specs()
        except Exception as e:  # noqa: BLE001 - a registry that is down keeps every model serving
            out["errors"].append({"spec": None, "error": f"{type(e).__name__}: {e}"})
            return out
        for spec in specs:
            try:
                version, folder = resolve(spec, self.uri)
                task = predictors.read_card(folder)["task"]
                cur = self.models.get(task)
                if cur is not None and cur.spec != spec:
                    raise ValueError(f"task {task!r} is already served by {cur.spec}")
                if cur is not None and cur.version == version and cur.fingerprint == _fingerprint(folder):
                    out["unchanged"].append({"task": task, "version": version, "spec": spec})
                    continue
                out["_new"][task] = load_served(spec, self.quantize, self.uri)
            except Exception as e:  # noqa: BLE001
                log.warning("reload: %s not reloaded: %s: %s", spec, type(e).__name__, e)
                out["errors"].append({"spec": spec, "error": f"{type(e).__name__}: {e}"})
        return out

    def get(self, task: str) -> Served:
        """The served model of `task`; Refused(404) with a did-you-mean otherwise."""
        s = self.models.get(task)
        if s is not None:
            return s
        served = sorted(self.models)
        near = difflib.get_close_matches(task, served, n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise Refused(
            404,
            f"unknown task {task!r}: {hint}this server serves {', '.join(served) or 'nothing'} "
            "(POST /predict/<task>; GET /models lists them)",
        )


# ---- attention ----


def attention_parts(predictor) -> list[tuple[Any, Any, str, bool]]:
    """[(HF encoder, tokenizer, prefix, joint_pair)] to draw attention with, from the predictor's own
    `attention_parts()` (joint_pair False: a bi-encoder, whose pair is drawn one sentence at a time)."""
    parts = getattr(predictor, "attention_parts", None)
    if parts is None:
        raise Refused(501, f"{type(predictor).__name__} offers no attention_parts(): no attention view for it")
    try:
        return parts()
    except ValueError as e:
        raise Refused(501, str(e)) from None


def explain(served: Served, item) -> list[dict]:
    """Attention of one input (model thread): [{"title", "tokens", "attention" (L,H,T,T), "n_total"}]."""
    from polarkit.viz.attention import run_attention

    parts = attention_parts(served.predictor)
    texts = list(item) if isinstance(item, tuple) else [item]
    jobs = []
    for encoder, tok, prefix, joint in parts:
        if len(texts) == 2 and joint:
            jobs.append(("sentence 1 + sentence 2", encoder, tok, prefix + texts[0], texts[1]))
        else:
            jobs += [
                (f"sentence {i + 1}" if len(texts) == 2 else "input", encoder, tok, prefix + t, None)
                for i, t in enumerate(texts)
            ]
    out = []
    with served.explain_lock:  # run_attention switches the model to eager attention for the call
        for title, encoder, tok, a, b in jobs:
            # a private copy: run_attention tokenizes with other truncation/padding settings, and changing a
            # fast tokenizer's settings while a model thread uses it raises "Already borrowed"
            if id(tok) not in served.explain_tokenizers:
                served.explain_tokenizers[id(tok)] = copy.deepcopy(tok)
            tok = served.explain_tokenizers[id(tok)]
            # and a private copy of the encoder: run_attention switches it to eager attention for the call,
            # which must never reach the predictions other model threads run on the shared one
            if id(encoder) not in served.explain_tokenizers:
                served.explain_tokenizers[id(encoder)] = copy.deepcopy(encoder)
            encoder = served.explain_tokenizers[id(encoder)]
            tokens, attn, n_total, _ = run_attention(encoder, tok, a, b, max_tokens=EXPLAIN_TOKENS)
            out.append({"title": title, "tokens": tokens, "attention": attn, "n_total": n_total})
    return out


def render(views: list[dict], task: str) -> list[dict]:
    """PNG heatmaps (last layer, first heads: polarkit.viz.heatmap_grid) as data: URLs."""
    from polarkit import viz

    viz.hangul_font()
    out = []
    for v in views:
        n = len(v["tokens"])
        shown = f" (first {n} of {v['n_total']} tokens)" if v["n_total"] > n else ""
        fig = viz.heatmap_grid(v["attention"], v["tokens"], title=f"{task}: {v['title']}, last layer{shown}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=150, facecolor="white")
        out.append(
            {
                "title": v["title"],
                "tokens": list(v["tokens"]),
                "n_total": v["n_total"],
                "truncated": bool(shown),
                "png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
            }
        )
    return out


# ---- the app ----


def torch_threads() -> int | None:
    """torch's intra-op thread count (None when torch is not loaded yet)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False, default=str, allow_nan=False).encode("utf-8"),
        status_code=status,
        media_type="application/json",
    )


async def read_json_body(request: Request, what: str, limit: int) -> Any:
    """The request's JSON body, with 415 / 413 / 400 answers that say what was expected."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise Refused(
            415,
            f"send the body as JSON with the header Content-Type: application/json "
            f"(got {ctype or 'no Content-Type'}), e.g. {what}",
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Refused(
            413, f"the request body has {int(length):,} bytes; the limit is {limit:,}: send fewer or shorter inputs"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the request body is over {limit:,} bytes: send fewer or shorter inputs")
        chunks.append(chunk)
    return parse_body(b"".join(chunks), what)


def hangul_font_file() -> Path | None:
    """A Hangul TTF for the page: koreanize-matplotlib's NanumGothic, else a system one (fonts-nanum, ...)."""
    from polarkit.viz import fonts

    for path in fonts._packaged_fonts() + fonts._system_fonts():
        if path.suffix.lower() == ".ttf" and path.is_file() and fonts.has_hangul(path):
            return path
    return None


def web_font(path: Path) -> bytes:
    """`path` as a WOFF browsers accept: NanumGothic carries empty VTT source tables (TSI*), which Chromium's
    font sanitizer (OTS) rejects ("TSI3: zero-length table"); they only matter to the hinting editor, so
    they are dropped. fontTools comes with matplotlib. ~2.4 MB for NanumGothic, made once (~0.5 s)."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(path), lazy=True)
    for tag in [t for t in font.keys() if t.startswith("TSI")]:
        del font[tag]
    font.flavor = "woff"
    buf = io.BytesIO()
    font.save(buf)
    return buf.getvalue()


def registry_rows(uri: str | None) -> list[dict]:
    """registry.list_models() as JSON-ready rows."""
    from polarkit import registry

    if store_missing(uri):
        return []
    table = registry.list_models(uri)
    rows = []
    for r in table.to_dict(orient="records"):
        r["created"] = None if r.get("created") is None else str(r["created"])
        r["aliases"] = [a for a in str(r.get("aliases") or "").split(", ") if a]
        rows.append({k: _finite(v) for k, v in r.items()})
    return rows


def create_app(
    specs: list[str] | None = None,
    batch_window_ms: float = BATCH_WINDOW_MS,
    max_batch: int = MAX_BATCH,
    *,
    batching: bool = True,
    max_chars: int = MAX_CHARS,
    max_queue: int = MAX_QUEUE,
    quantize: bool = False,
    workers: int = WORKERS,
    threads: int | None = None,
    admin: bool = True,
    uri: str | None = None,
    host: str = "127.0.0.1",
    micro_batch: int | None = MICRO_BATCH,
) -> FastAPI:
    """The FastAPI app serving `specs` (default: every registered task's champion), models loaded now.

    batching: merge concurrent requests (off: each request is one model call); batch_window_ms: the
    longest a batch waits for requests already arriving; max_batch: inputs per request and per model
    call; micro_batch: inputs per forward pass inside a model call (length-sorted, so less padding; None:
    0/None: the predictor's default); max_chars: characters per text; workers: model calls in flight at once, each
    in a model thread; threads: torch intra-op threads (None: torch's default, or cores / workers when
    workers > 1); admin: /promote and /reload (off: 403); uri: the MLflow store (default:
    $MLFLOW_TRACKING_URI or outputs/mlflow.db); host: with a loopback host, other Host headers get 400."""
    if MISSING:
        raise ImportError(MISSING)
    if threads or workers > 1:  # several model threads: share the cores out instead of oversubscribing them
        import torch

        torch.set_num_threads(int(threads or max(1, len(os.sched_getaffinity(0)) // workers)))
    state = State(
        specs,
        batching=batching,
        batch_window_ms=batch_window_ms,
        max_batch=max_batch,
        max_chars=max_chars,
        max_queue=max_queue,
        quantize=quantize,
        workers=workers,
        admin=admin,
        uri=uri,
        micro_batch=micro_batch,
    )
    state.load_all()
    any_pair = any(s.pair for s in state.models.values())
    body_limit = max_batch * (2 if any_pair else 1) * (max_chars * 6 + 16) + 65536  # \uXXXX escapes: 6 bytes/char

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        hup = None
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(state.reload("SIGHUP")))
            hup = signal.SIGHUP
        try:
            yield
        finally:
            if hup is not None:
                asyncio.get_running_loop().remove_signal_handler(hup)
            await state.stop()

    # FastAPI >= 0.165 traces/meters every request through OpenTelemetry when a provider is configured: off here
    quiet = (
        {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
        if "telemetry" in inspect.signature(FastAPI.__init__).parameters
        else {}
    )
    app = FastAPI(title="polarkit serve", lifespan=lifespan, docs_url=None, redoc_url=None, **quiet)  # /docs: a CDN
    app.state.serve = state
    if host in LOOPBACK:  # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"])

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return _json({"detail": exc.message}, exc.status)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):  # anything unforeseen: a 500 that says what, not a hang
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json({"detail": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "tasks": {t: s.version for t, s in sorted(state.models.items())},
            "batching": state.batching,
            "batch_window_ms": state.batch_window_ms,
            "max_batch": state.max_batch,
            "micro_batch": state.micro_batch,
            "workers": state.workers,
            "torch_threads": torch_threads(),
            "queued": {t: b.queued_inputs for t, b in state.batchers.items()},
            "calls": {t: b.calls for t, b in state.batchers.items()},
            "uptime_s": round(time.time() - state.started, 1),
            "reloads": state.reloads,
        }

    predict_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {"inputs": {"type": "array", "maxItems": max_batch, "items": {}}},
                    }
                }
            },
        }
    }

    @app.post("/predict/{task}", openapi_extra=predict_doc)
    async def predict(task: str, request: Request):
        served = state.get(task)
        batcher = state.batchers[task]
        batcher.arriving += 1
        try:
            body = await read_json_body(request, example(served.pair), body_limit)
            inputs = check_inputs(body, served.pair, state.max_batch, state.max_chars)
        finally:
            batcher.arriving -= 1
        if state.batching:
            outputs, used, n = await batcher.submit(inputs)
        else:
            used = state.models[task]
            try:
                outputs = await state.predict(used, inputs)
            except Exception as e:  # noqa: BLE001
                raise model_error(task, used, e) from None
            n = len(inputs)
        return _json({"task": task, "version": used.version, "spec": used.spec, "outputs": outputs, "batch": n})

    @app.post("/explain/{task}", openapi_extra=predict_doc)
    async def explain_endpoint(task: str, request: Request):
        served = state.get(task)
        body = await read_json_body(request, example(served.pair), body_limit)
        item = check_inputs(body, served.pair, state.max_batch, state.max_chars, exactly_one=True)[0]
        try:
            views = await state.call(explain, served, item)
            images = await asyncio.to_thread(render, views, task)
        except Refused:
            raise
        except Exception as e:  # noqa: BLE001
            log.exception("explain %s failed", task)
            raise Refused(500, f"no attention view for this {task} input: {type(e).__name__}: {e}") from None
        return _json({"task": task, "version": served.version, "spec": served.spec, "views": images})

    @app.get("/models")
    async def models_endpoint():
        try:
            rows, error = await asyncio.to_thread(registry_rows, state.uri), None
        except Exception as e:  # noqa: BLE001 - no registry is fine: served folders still list
            rows, error = [], f"{type(e).__name__}: {e}"
        from polarkit import tracking

        return _json(
            {
                "served": [s.info() for _, s in sorted(state.models.items())],
                "registry": rows,
                "registry_error": error,
                "store": tracking.redact(state.uri or tracking.tracking_uri()),
                "admin": state.admin,
                "max_batch": state.max_batch,
                "max_chars": state.max_chars,
            }
        )

    def require_admin():
        if not state.admin:
            raise Refused(403, "this server is read-only (--read-only): /promote and /reload are off")

    @app.post("/reload")
    async def reload_endpoint():
        require_admin()
        result = await state.reload("POST /reload")
        return _json(result, 500 if result["errors"] and not result["changed"] and not result["unchanged"] else 200)

    @app.post("/promote")
    async def promote_endpoint(request: Request):
        require_admin()
        what = '{"task": "sentiment", "version": 3, "force": false}'
        body = await read_json_body(request, what, 65536)
        if not isinstance(body, dict) or not isinstance(body.get("task"), str):
            raise Refused(422, f"expected a JSON object with a 'task' string (optionally 'version', 'force'): {what}")
        extra = sorted(set(body) - {"task", "version", "force"})
        version, force = body.get("version"), body.get("force", False)
        if (
            extra
            or not (version is None or (isinstance(version, int) and not isinstance(version, bool)))
            or not isinstance(force, bool)
        ):
            raise Refused(
                422,
                f"expected {what} ('version' a number or absent: the candidate; 'force' true/false)"
                + (f"; unknown field(s) {extra}" if extra else ""),
            )
        from polarkit import registry

        try:
            result = await asyncio.to_thread(
                registry.promote, body["task"], version=version, force=force, uri=state.uri
            )
        except ValueError as e:
            raise Refused(409, str(e)) from None
        return _json(result)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def page():
        return FileResponse(PAGE / "index.html", media_type="text/html; charset=utf-8")

    @app.api_route("/static/{name}", methods=["GET", "HEAD"])
    async def static(name: str):
        files = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
        if name not in files:
            raise Refused(404, f"no static file {name!r}")
        return FileResponse(PAGE / name, media_type=files[name])

    font_file, font_cache, font_lock = hangul_font_file(), {}, asyncio.Lock()

    @app.api_route("/fonts/hangul.woff", methods=["GET", "HEAD"])
    async def hangul():
        if font_file is None:
            raise Refused(404, "no Hangul font here: pip install koreanize-matplotlib (or apt-get install fonts-nanum)")
        async with font_lock:
            if "woff" not in font_cache:
                font_cache["woff"] = await asyncio.to_thread(web_font, font_file)
        return Response(font_cache["woff"], media_type="font/woff", headers={"Cache-Control": "max-age=86400"})

    return app


# ---- command line ----


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "specs",
        nargs="*",
        metavar="SPEC",
        help="what to serve: TASK@ALIAS, TASK/VERSION, run or model folders (default: every champion)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-batching", dest="batching", action="store_false", help="one model call per request")
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=BATCH_WINDOW_MS,
        help=f"longest wait for requests already arriving (default {BATCH_WINDOW_MS:g})",
    )
    p.add_argument(
        "--max-batch", type=int, default=MAX_BATCH, help=f"inputs per request and per model call (default {MAX_BATCH})"
    )
    p.add_argument(
        "--micro-batch",
        type=int,
        default=MICRO_BATCH,
        help=f"inputs per forward pass inside a merged call (length-sorted: less padding; default "
        f"{MICRO_BATCH}; 0: the predictor's own)",
    )
    p.add_argument("--max-chars", type=int, default=MAX_CHARS, help=f"characters per text (default {MAX_CHARS})")
    p.add_argument(
        "--workers",
        type=int,
        default=WORKERS,
        help=f"model calls in flight at once, each in its own thread (default {WORKERS})",
    )
    p.add_argument("--threads", type=int, help="torch threads per model call (default: cores / workers)")
    p.add_argument("--quantize", action="store_true", help="int8 dynamic quantisation of the Linear layers (CPU)")
    p.add_argument("--read-only", dest="admin", action="store_false", help="turn /promote and /reload off")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--no-access-log", dest="access_log", action="store_false", help="no line per request")


def add_parser(sub) -> None:
    """`polarkit serve` on the CLI's subparsers."""
    p = sub.add_parser("serve", help="serve models over HTTP with a page (127.0.0.1:8000; needs the serve extra)")
    add_arguments(p)
    p.set_defaults(fn=cmd_serve)


def cmd_serve(args) -> int:
    if MISSING:
        raise ValueError(MISSING)  # the CLI prints `polarkit serve: the serve extra is not installed: ...`
    return main(
        host=args.host,
        port=args.port,
        specs=args.specs or None,
        batching=args.batching,
        batch_window_ms=args.batch_window_ms,
        max_batch=args.max_batch,
        max_chars=args.max_chars,
        micro_batch=args.micro_batch,
        workers=args.workers,
        threads=args.threads,
        quantize=args.quantize,
        admin=args.admin,
        log_level=args.log_level,
        access_log=args.access_log,
    )


def main(
    host: str = "127.0.0.1",
    port: int = 8000,
    specs: list[str] | None = None,
    *,
    log_level: str = "info",
    access_log: bool = True,
    **options,
) -> int:
    """Load the models, then serve them with uvicorn until Ctrl-C / SIGTERM (SIGHUP reloads)."""
    logging.basicConfig(level=getattr(logging, log_level.upper()), format="%(levelname)s: %(name)s: %(message)s")
    if host not in LOOPBACK:
        print(
            f"polarkit serve: binding {host}: anyone who can reach this machine can call it. Put a reverse proxy "
            "with TLS and authentication in front, and use --read-only there.",
            file=sys.stderr,
        )
    app = create_app(specs, host=host, **options)
    state: State = app.state.serve
    for s in state.models.values():
        where = f"v{s.version}" if s.version is not None else str(s.folder)
        print(f"polarkit serve: {s.task} <- {s.spec} ({where})")
    shown = f"[{host}]" if ":" in host else host
    print(
        f"polarkit serve: page http://{shown}:{port}/ ; API POST /predict/<task>, GET /models, GET /health"
        f" (batching {'on' if state.batching else 'off'})",
        flush=True,
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=access_log, workers=1, timeout_graceful_shutdown=10
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m polarkit.serve", description=__doc__.split("\n")[0])
    add_arguments(ap)
    a = ap.parse_args()
    a.cmd = "serve"
    try:
        sys.exit(cmd_serve(a))
    except ValueError as e:
        print(f"polarkit serve: {e}", file=sys.stderr)
        sys.exit(2)
