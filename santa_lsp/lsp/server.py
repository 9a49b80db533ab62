"""The language server: pygls wiring and thin handlers.

Handlers fetch the document, convert positions, and hand the work to the scheduler (one
inference worker, newest request per document wins) and the completion service; a shown
suggestion's prefetch is a background job of the same worker. Options, loading, status and
position encodings live in the modules next to this one; every counter is in `self.stats`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import FeatureRequestError
from pygls.lsp.server import LanguageServer

from santa_lsp import __version__
from santa_lsp.config import Options
from santa_lsp.errors import SantaError
from santa_lsp.lsp import items, positions, process, settings, transport
from santa_lsp.lsp.client_log import ClientLogHandler
from santa_lsp.lsp.loading import load_in_background
from santa_lsp.lsp.protocol import SantaProtocol
from santa_lsp.lsp.scheduler import Job, Scheduler
from santa_lsp.lsp.status import DISABLED, ERROR, LOADING, READY, Feedback, ModelStatus, status_report
from santa_lsp.lsp.throttle import clip
from santa_lsp.stats import Stats
from santa_lsp.suggestion import Suggestion

if TYPE_CHECKING:  # torch is imported by the loading thread, so initialize is answered at once
    from santa_lsp.engine import LoadedModel
    from santa_lsp.service import CompletionService

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "santa/status"
STATUS_COMMAND = "santa.status"
RELOAD_COMMAND = "santa.reload"
# How long the server waits for the client to answer workspace/configuration.
CONFIGURATION_TIMEOUT_S = float(os.environ.get("SANTA_LSP_CONFIGURATION_TIMEOUT_S", "10"))
ERROR_POPUP_INTERVAL_S = 300.0  # at most one "internal error" pop-up per this many seconds
MESSAGE_CHARS = 500  # the longest text put in a message to the client (names can be megabytes)
# How long a request that arrives while the model loads waits for it (the newest per document).
LOAD_WAIT_S = float(os.environ.get("SANTA_LSP_LOAD_WAIT_S", "30"))


def doc_key(uri: str) -> str:
    """The one key of a document, whatever %-encoding its URI uses (pygls' workspace keys by
    `unquote(uri)` too; the scheduler and the service use the same key)."""
    return unquote(uri)


class SantaLanguageServer(LanguageServer):
    def __init__(self, options: Options | None = None) -> None:
        super().__init__("santa-lsp", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=SantaProtocol)
        # Layers: defaults (and `serve --model`) < initializationOptions < workspace settings.
        self.init_options = options or Options()
        self.options = self.init_options
        self.initialization_options: Any = None
        self.status = ModelStatus(requested_model=self.options.model)
        self.stats = Stats()  # the server's, its services' and its scheduler's counters
        self.feedback = Feedback()  # acceptance counts, local only
        self.service: CompletionService | None = None
        self.loaded_options: Options | None = None  # options the current (or loading) model was asked with
        self.scheduler = Scheduler(stats=self.stats)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.shutdown_requested = False
        self._load_generation = 0
        self._loading = False
        self._load_error = ""
        self._pulling: asyncio.Future[Any] | None = None  # the workspace/configuration request in flight
        self._pull_again = False
        self._last_error_popup = -ERROR_POPUP_INTERVAL_S
        # Requests waiting for the model to load, one per document (the newest): set to True
        # when the load ends, False when superseded (a newer request, an edit, shutdown).
        self._load_waiters: dict[str, asyncio.Future[bool]] = {}

    # -- plumbing: everything that talks to the client runs on the event loop ---------------
    def on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            on_this_loop = asyncio.get_running_loop() is loop
        except RuntimeError:  # a worker thread
            on_this_loop = False
        if on_this_loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def show(self, message: str, kind: types.MessageType) -> None:
        self.on_loop(self.window_show_message, types.ShowMessageParams(type=kind, message=clip(message, MESSAGE_CHARS)))

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls calls this for every failed notification handler and unreadable message, and
        by default pops up "Error in server" each time (100,000 pop-ups for 100,000 bad
        messages). Here: a rate-limited log line, and at most one pop-up every few minutes."""
        if source is FeatureRequestError:
            return  # the request's answer carries the error
        text = f"{type(error).__name__}: {error}"
        self.protocol.throttle("server-error", f"internal error: {text}", logging.ERROR)
        now = time.monotonic()
        if now - self._last_error_popup >= ERROR_POPUP_INTERVAL_S:
            self._last_error_popup = now
            self.show(f"santa-lsp: internal error ({clip(text, 200)}); see the log for details",
                      types.MessageType.Error)

    def set_status(self, state: str, message: str = "", **fields: Any) -> None:
        message = clip(message, MESSAGE_CHARS)
        self.status.state, self.status.message = state, message
        for name, value in fields.items():
            setattr(self.status, name, value)
        log.info("state %s%s", state, f": {message}" if message else "")
        self.on_loop(self.protocol.notify, STATUS_NOTIFICATION, self.status.notification())

    def report(self) -> dict[str, Any]:
        service = self.service
        cache_bytes = service.engine.cache_bytes() if service is not None else 0
        return status_report(self.status, self.stats, cache_bytes, self.scheduler.queued(), self.position_encoding(),
                             self.feedback)

    def position_encoding(self) -> str:
        kind = self.workspace.position_encoding  # a PositionEncodingKind or a plain string
        return str(getattr(kind, "value", kind) or positions.UTF16)

    # -- options and model lifecycle ---------------------------------------------------------
    def apply_settings(self, raw: Any, initialization: bool = False) -> None:
        """Take new settings (initializationOptions, or workspace settings replacing the last ones)."""
        opts, errors = settings.merge(self.init_options, raw)
        if initialization:
            self.init_options = opts
        if errors:
            log.warning("%s", "; ".join(errors))
            self.show(settings.error_message(errors), types.MessageType.Warning)
        self.options = opts
        if settings.needs_reload(self.loaded_options, opts) and (opts.enable or self.loaded_options is not None):
            self.load_model()
        elif not opts.enable and self.status.state != DISABLED:
            self.scheduler.cancel_all()
            self.release_waiters(False)
            self.set_status(DISABLED, "disabled by the 'enable' option")
        elif opts.enable and self.status.state == DISABLED:
            if self._loading:
                self.set_status(LOADING, f"loading {self.loaded_options.model}")
            else:
                self.set_status(READY if self.service is not None else ERROR, self._load_error)

    def load_model(self) -> None:
        """(Re)load the model named by the current options in the background."""
        self._load_generation += 1
        generation, opts = self._load_generation, self.options
        self.scheduler.cancel_all()
        self.service = None  # let the old weights go before the new ones arrive
        self.loaded_options = opts
        self._loading, self._load_error = True, ""
        self.set_status(LOADING, f"loading {opts.model}", requested_model=opts.model, model="", device="",
                        dtype="", load_seconds=None)
        asyncio.ensure_future(self._load(generation, opts))

    async def _load(self, generation: int, opts: Options) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[LoadedModel | None, SantaError | None]] = loop.create_future()
        token = f"santa-lsp/load/{generation}"
        progress_open = False

        def report(message: str, percentage: int | None) -> None:
            if progress_open:
                self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message,
                                                                                   percentage=percentage))

        load_in_background(
            opts,
            on_done=lambda loaded, err: loop.call_soon_threadsafe(_settle, done, (loaded, err)),
            on_progress=lambda message, pct: self.on_loop(report, message, pct),
            on_warning=lambda warning: self.show(f"santa-lsp: {warning}", types.MessageType.Warning),
        )
        if _client_supports_progress(self.client_capabilities):
            # Not wait_for: cancelling the request would break on the client's late answer.
            created = asyncio.ensure_future(self.work_done_progress.create_async(token))
            created.add_done_callback(lambda t: t.cancelled() or t.exception())  # a late refusal is no error
            await asyncio.wait({created, done}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            if created.done() and created.exception() is None and not done.done():
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                    title="santa-lsp", message=f"loading {opts.model}", percentage=0))
                progress_open = True
            elif created.done() and created.exception() is not None:  # refused: the model loads anyway
                log.debug("no progress reporting: %s", created.exception())
        loaded, error = await done
        if progress_open:
            end = "model ready" if error is None else "model failed to load"
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=end))
        if generation != self._load_generation:
            return  # a newer load superseded this one
        self._loading = False
        if error is not None:
            self._load_error = str(error)
            self.set_status(ERROR, str(error))
            self.show(f"santa-lsp: {error}", types.MessageType.Error)
            self.release_waiters(True)
            return
        from santa_lsp.service import CompletionService

        assert loaded is not None
        self.service = CompletionService(loaded.engine, opts, interactive=True, stats=self.stats)
        state = READY if self.options.enable else DISABLED
        self.set_status(state, loaded.warning, model=loaded.model, device=loaded.device, dtype=loaded.dtype,
                        load_seconds=loaded.load_s)
        log.info("model %s loaded on %s/%s in %.1fs", loaded.model, loaded.device, loaded.dtype, loaded.load_s)
        self.release_waiters(True)

    # -- requests that arrive while the model loads ------------------------------------------
    def release_waiters(self, loaded: bool, doc: str | None = None) -> None:
        """End the wait of the requests waiting for the model (of `doc` only, if given)."""
        for key in [k for k in self._load_waiters if doc is None or k == doc]:
            _settle(self._load_waiters.pop(key), loaded)

    async def wait_for_model(self, key: str) -> bool:
        """Wait (at most LOAD_WAIT_S) for the model loading now; True when the load ended while
        this was the newest request of its document. A newer request for the same document, an
        edit of it, or shutdown ends the wait with False."""
        self.release_waiters(False, key)  # newest wins
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._load_waiters[key] = mine
        try:
            return await asyncio.wait_for(mine, LOAD_WAIT_S)
        except asyncio.TimeoutError:
            log.info("no completion for %s: the model was still loading after %gs", key, LOAD_WAIT_S)
            return False
        finally:
            if self._load_waiters.get(key) is mine:
                del self._load_waiters[key]

    # -- completions ---------------------------------------------------------------------------
    async def suggest(self, uri: str, position: types.Position, selected: types.SelectedCompletionInfo | None = None,
                      invoked: bool = False) -> items.Placement | None:
        """The suggestion at `position` of document `uri`, or None (nothing to say, or cancelled).

        `selected` is the item selected in the client's completion menu: the suggestion then
        continues the text as if that item were accepted, and starts with it (LSP 3.18).
        `invoked`: the user asked explicitly, so no debounce.
        """
        t0 = time.perf_counter()
        self.stats.add("requests")
        key = doc_key(uri)
        self.feedback.moved_on(key)
        if (self.status.state == LOADING and self._loading and not self.shutdown_requested
                and key in self.workspace.text_documents):
            self.stats.add("waited_for_load")
            if not await self.wait_for_model(key):
                self.stats.add("skipped")
                return None
        service, opts = self.service, self.options
        doc = self.workspace.text_documents.get(key)
        if self.status.state != READY or service is None or doc is None:
            self.stats.add("skipped")
            return None
        text = doc.source  # a snapshot: the worker never sees later edits
        encoding = self.position_encoding()
        cursor = positions.offset_at(text, position.line, position.character, encoding)
        if cursor is None:
            log.info("no completion: %d:%d is not a valid %s position in %s", position.line, position.character,
                     encoding, uri)
            self.stats.add("skipped")
            return None
        target = items.target(text, cursor, selected, encoding)

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, BaseException | None]] = loop.create_future()

        def work(cancelled: Callable[[], bool]) -> Suggestion | None:
            return service.complete(target.text, target.text_cursor, doc=key, cancelled=cancelled, options=opts)

        def done(job: Job, result: Any, error: BaseException | None) -> None:
            if isinstance(result, Suggestion) and opts.prefetch and not job.cancelled():
                self.scheduler.submit(key, lambda cancelled: service.prefetch(
                    target.text, result, doc=key, cancelled=cancelled, options=opts), _prefetched, background=True)
            loop.call_soon_threadsafe(_settle, answer, (result, error))

        job = self.scheduler.submit(key, work, done, 0.0 if invoked else opts.debounce_ms / 1000)
        try:
            completion, error = await answer
        except asyncio.CancelledError:  # $/cancelRequest (or shutdown): stop the worker too
            job.cancel()
            self.stats.add("cancelled")
            raise
        if job.cancelled():
            self.stats.add("cancelled")
            return None
        if error is not None:
            self.stats.add("errors")
            if isinstance(error, SantaError):
                log.info("no completion at %d:%d in %s: %s", position.line, position.character, uri, error)
            else:
                log.error("completion failed at %d:%d in %s", position.line, position.character, uri,
                          exc_info=error)
            return None
        self.stats.add("completed")
        total_ms = (time.perf_counter() - t0) * 1e3
        self.stats.record_latency(total_ms)
        if completion is None or not completion.text:
            log.debug("completion %s %d:%d: empty, queued=%.1fms total=%.1fms", uri, position.line,
                      position.character, job.wait_ms, total_ms)
            return None
        self.stats.add("suggestions")
        log.debug("completion %s %d:%d: queued=%.1fms %s request=%.1fms", uri, position.line, position.character,
                  job.wait_ms, " ".join(f"{k}={v:.1f}ms" for k, v in completion.timings_ms.items()), total_ms)
        return target.suggestion(completion.text, completion.replace_len, encoding)


def _prefetched(job: Job, result: Any, error: BaseException | None) -> None:
    if error is not None:  # a background nicety: logged, never shown
        log.warning("prefetch for %s failed", job.doc, exc_info=error)


def _settle(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _client_supports_progress(caps: types.ClientCapabilities) -> bool:
    return bool(caps.window and caps.window.work_done_progress)


def _client_has_inline_completion(caps: types.ClientCapabilities) -> bool:
    return bool(caps.text_document and caps.text_document.inline_completion is not None)


# -- handlers: adapters between LSP messages and the server's methods ---------------------------
def on_initialize(ls: SantaLanguageServer, params: types.InitializeParams) -> None:
    ls.loop = asyncio.get_running_loop()
    ls.initialization_options = params.initialization_options
    # Clients without inline completion still get the suggestion, as a completion item; the
    # others must not see it twice.
    fallback_registered = types.TEXT_DOCUMENT_COMPLETION in ls.protocol.fm.features
    if not _client_has_inline_completion(params.capabilities) and not fallback_registered:
        ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())(on_completion)
    process.watch_parent(params.process_id, lambda: _parent_gone(params.process_id))


def _parent_gone(pid: int | None) -> None:
    log.warning("client process %s exited; exiting", pid)
    process.exit_now(1)


def on_initialized(ls: SantaLanguageServer, params: types.InitializedParams) -> None:
    ls.apply_settings(ls.initialization_options, initialization=True)


async def on_inline_completion(ls: SantaLanguageServer,
                               params: types.InlineCompletionParams) -> types.InlineCompletionList:
    context = params.context
    uri = params.text_document.uri
    suggestion = await ls.suggest(uri, params.position, context.selected_completion_info,
                                  context.trigger_kind == types.InlineCompletionTriggerKind.Invoked)
    item_id = None
    if suggestion is not None:
        item_id = ls.feedback.shown(doc_key(uri), _language(ls, uri))
    return items.inline_completion_list(suggestion, item_id)


def _language(ls: SantaLanguageServer, uri: str) -> str:
    """The document's languageId as the client named it, else a guess from its file name."""
    doc = ls.workspace.text_documents.get(doc_key(uri))
    language = getattr(doc, "language_id", None)
    if isinstance(language, str) and language:
        return language[:40]
    from santa_lsp.context import language_of

    return language_of(uri) or "unknown"


async def on_completion(ls: SantaLanguageServer, params: types.CompletionParams) -> types.CompletionList:
    invoked = params.context is not None and params.context.trigger_kind == types.CompletionTriggerKind.Invoked
    suggestion = await ls.suggest(params.text_document.uri, params.position, invoked=invoked)
    return items.completion_list(suggestion)


def on_did_change(ls: SantaLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    # An answer computed for the old text would be wrong now.
    log.debug("didChange %s v%d: its requests are cancelled", params.text_document.uri, params.text_document.version)
    key = doc_key(params.text_document.uri)
    ls.scheduler.cancel(key)
    ls.release_waiters(False, key)  # a request waiting for the model asked about the old text


def on_did_close(ls: SantaLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    key = doc_key(params.text_document.uri)
    ls.scheduler.cancel(key)
    ls.release_waiters(False, key)
    ls.feedback.moved_on(key)
    if ls.service is not None:
        ls.service.forget(key)


def on_did_change_configuration(ls: SantaLanguageServer, params: types.DidChangeConfigurationParams) -> None:
    # Synchronous, so that the messages after this one already see the new settings.
    caps = ls.client_capabilities
    if params.settings is None and caps.workspace is not None and caps.workspace.configuration:
        _pull_settings(ls)  # pull-model clients send no settings
    else:
        ls.apply_settings(params.settings)


def _pull_settings(ls: SantaLanguageServer) -> None:
    """Ask the client for the settings: one request at a time (more changes meanwhile ask once
    more when it is answered), each given CONFIGURATION_TIMEOUT_S. A client that never answers
    leaves nothing behind: pygls would keep each unanswered request's future (4.5 kB) for ever."""
    if ls._pulling is not None:
        ls._pull_again = True
        return
    ls._pull_again = False
    protocol = ls.protocol
    future = protocol.send_request(types.WORKSPACE_CONFIGURATION, types.ConfigurationParams(
        items=[types.ConfigurationItem(section=settings.SECTION)]))
    ls._pulling = asyncio.wrap_future(future)
    asyncio.ensure_future(_await_settings(ls, ls._pulling, future))


async def _await_settings(ls: SantaLanguageServer, pulling: asyncio.Future[Any], future: Any) -> None:
    try:
        result = await asyncio.wait_for(asyncio.shield(pulling), CONFIGURATION_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.warning("workspace/configuration: no answer within %gs; the settings stay as they are",
                    CONFIGURATION_TIMEOUT_S)
        result = None
        for key in [k for k, f in ls.protocol._request_futures.items() if f is future]:
            ls.protocol._request_futures.pop(key, None)
            ls.protocol._result_types.pop(key, None)
        future.cancel()
        pulling.cancel()
    except Exception as err:  # the client could not say: keep the settings we have
        log.warning("workspace/configuration failed: %s", clip(str(err)))
    else:
        ls.apply_settings(result[0] if isinstance(result, (list, tuple)) and result else None)
    finally:
        ls._pulling = None
    if ls._pull_again:
        _pull_settings(ls)


def on_shutdown(ls: SantaLanguageServer, *args: Any) -> None:
    ls.shutdown_requested = True
    ls.release_waiters(False)
    ls.scheduler.stop()


def on_exit(ls: SantaLanguageServer, *args: Any) -> None:
    process.exit_now(0 if ls.shutdown_requested else 1)


def cmd_status(ls: SantaLanguageServer, *args: Any) -> dict[str, Any]:
    report = ls.report()
    engine = ls.service.engine if ls.service is not None else None
    remote_status = getattr(engine, "status", None)
    if callable(remote_status):  # a RemoteEngine: the endpoint's health and counters
        try:
            report["remote"] = remote_status()
        except Exception as err:  # a report must never fail for its extras
            report["remote"] = {"error": clip(f"{type(err).__name__}: {err}", MESSAGE_CHARS)}
    return report


def cmd_accepted(ls: SantaLanguageServer, *args: Any) -> bool:
    """`santa.accepted <id> [word|line]`: the client inserted (part of) suggestion `id`."""
    item_id, kind = (list(args) + [None, "all"])[:2]
    if not ls.feedback.accepted(item_id, kind if kind is not None else "all"):
        log.debug("santa.accepted: unknown suggestion %r or kind %r", clip(repr(item_id), 60), clip(repr(kind), 60))
        return False
    return True


def cmd_reload(ls: SantaLanguageServer, *args: Any) -> dict[str, Any]:
    ls.load_model()
    return ls.report()


def create_server(options: Options | None = None) -> SantaLanguageServer:
    ls = SantaLanguageServer(options)
    ls.feature(types.INITIALIZE)(on_initialize)
    ls.feature(types.INITIALIZED)(on_initialized)
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(on_inline_completion)
    ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)(on_did_change)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(on_did_close)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(on_did_change_configuration)
    ls.feature(types.SHUTDOWN)(on_shutdown)
    ls.feature(types.EXIT)(on_exit)
    ls.command(STATUS_COMMAND)(cmd_status)
    ls.command(RELOAD_COMMAND)(cmd_reload)
    ls.command(items.ACCEPTED_COMMAND)(cmd_accepted)
    return ls


def run(tcp: bool = False, host: str = "127.0.0.1", port: int = 2087, options: Options | None = None) -> int:
    """Serve until the client exits, stdin closes or the client process dies, then exit the process
    (0 after a shutdown request, 1 otherwise)."""
    if not log.isEnabledFor(logging.DEBUG):  # before create_server: it logs every registration
        logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message at INFO
    ls = create_server(options)
    forward = ClientLogHandler(lambda kind, text: ls.on_loop(
        ls.window_log_message, types.LogMessageParams(type=kind, message=text)))
    logging.getLogger("santa_lsp").addHandler(forward)
    if tcp:
        if not process.is_loopback(host):
            log.warning("listening on %s: other machines can reach this server and read your code; "
                        "use --host 127.0.0.1 unless you mean it", host)
        try:
            transport.serve_tcp(ls, host, port)
        except OSError as err:  # port taken, address not ours: one line, not a traceback
            raise SantaError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    else:
        transport.serve_stdio(ls, sys.stdin.buffer, process.claim_stdout())
    logging.getLogger("santa_lsp").removeHandler(forward)
    ls.scheduler.stop()
    # Leave at once: interpreter shutdown takes seconds once torch is loaded, and would wait on
    # a generation or a download still running.
    process.exit_now(0 if ls.shutdown_requested else 1)
