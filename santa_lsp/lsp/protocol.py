"""pygls' language server protocol, hardened against what clients (and attackers) can send.

Everything a transport reads arrives here through `SantaProtocol.receive`, one framed message
at a time (`framing.py` does the framing that pygls' reader got wrong).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import Any
from urllib.parse import unquote

import cattrs
from cattrs.errors import ClassValidationError
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method

from santa_lsp.lsp import positions
from santa_lsp.lsp.framing import Broken, Message
from santa_lsp.lsp.throttle import Throttle, clip

log = logging.getLogger(__name__)

PARSE_ERROR, INVALID_REQUEST, SERVER_NOT_INITIALIZED = -32700, -32600, -32002


def valid_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _describe(data: Any) -> str:
    try:
        return clip(json.dumps(data, ensure_ascii=False, default=str), 160)
    except (TypeError, ValueError, RecursionError):
        return type(data).__name__


class SantaProtocol(LanguageServerProtocol):
    """pygls' protocol (2.1.1) with these repairs.

    - Only the top-level object of a message is turned into a message: pygls parses bodies with
      `json.loads(object_hook=structure_message)`, which also turns any request-shaped object
      nested in params into a message, answered under an id the client never used.
    - Every request is answered: a body that is not JSON (-32700, with its id when it can be
      read), a batch, a wrong or missing `jsonrpc`, a bad id (-32600), params that do not
      deserialize (-32602; pygls drops the request and the client waits forever), requests
      before `initialize` (-32002; pygls answered -32603 with a traceback), a second
      `initialize` and requests after `shutdown` (-32600; pygls accepted the first, creating a
      new workspace without the open documents, and ignored the second).
    - Internal errors (-32603) go out without pygls' traceback in `error.data` (the log has it).
    - Bad input is logged at a bounded rate (`Throttle`), never answered with a pop-up per message.
    - pygls applies incremental edits by `str.splitlines()` lines, which also break at form
      feeds, U+2028 and friends: one of those in a file shifts every later edit. Edits are
      applied here with LSP's own line breaks (\\n, \\r\\n, \\r) instead.
    - pygls files the future of every async or generator notification handler (didOpen,
      didChange, ...) in `_request_futures` under a random id and never removes it: one
      leaked future per keystroke (RSS grew 2 kB per edit in the storm). Finished ones go.
    """

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.throttle = Throttle(log)
        self.initialize_received = False
        self.shutdown_received = False

    # -- input ---------------------------------------------------------------------------------
    def report_input(self, kind: str, text: str) -> None:
        """What the framer skipped or repaired (rate-limited)."""
        self.throttle(f"framing-{kind}", f"input: {text}")

    def receive(self, item: Message | Broken) -> None:
        """Handle one framed message; nothing a client sends escapes from here."""
        try:
            self._receive(item)
        except Exception as err:  # a bug of ours: logged, the reader goes on
            self.throttle("internal", f"a message could not be handled: {type(err).__name__}: {err}", logging.ERROR)
            log.debug("handling failed", exc_info=True)

    def _send_error(self, msg_id: int | str | None, code: int, message: str) -> None:
        self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})

    def _reject(self, data: dict[str, Any], code: int, why: str, kind: str) -> None:
        """Answer a request (or an object that is not even that) with an error; drop the rest."""
        is_request = "method" in data and "id" in data
        if is_request or ("method" not in data and "id" not in data):
            self._send_error(data.get("id") if valid_id(data.get("id")) else None, code, why)
        self.throttle(kind, lambda: f"{why}: {_describe(data)}")

    def _receive(self, item: Message | Broken) -> None:
        if isinstance(item, Broken):
            self.throttle("parse", f"a message is not JSON ({item.error}); answered with a parse error")
            self._send_error(item.request_id, PARSE_ERROR, f"Parse error: {item.error}")
            return
        data = item.value
        if isinstance(data, list):  # a JSON-RPC batch: LSP has none
            ids = [m["id"] for m in data if isinstance(m, dict) and "method" in m and valid_id(m.get("id"))]
            for msg_id in ids or [None]:
                self._send_error(msg_id, INVALID_REQUEST, "batches are not supported: send each message on its own")
            self.throttle("batch", f"a batch of {len(data)} messages, answered with errors")
            return
        if not isinstance(data, dict):
            self._send_error(None, INVALID_REQUEST, "a message must be a JSON object")
            self.throttle("not-object", lambda: f"a message that is not an object: {_describe(data)}")
            return
        if data.get("jsonrpc") != "2.0":
            return self._reject(data, INVALID_REQUEST, 'jsonrpc must be "2.0"', "jsonrpc")
        method, has_id = data.get("method"), "id" in data
        if method is not None and not isinstance(method, str):
            return self._reject(data, INVALID_REQUEST, "method must be a string", "method")
        if has_id and not valid_id(data["id"]):
            return self._reject(data, INVALID_REQUEST, "id must be an integer or a string", "id")
        if method is None and not has_id:
            return self._reject(data, INVALID_REQUEST, "neither a request, a notification nor a response", "shape")
        is_request = method is not None and has_id

        # Lifecycle (LSP: initialize first, once; nothing but exit after shutdown).
        if method == types.INITIALIZE and is_request:
            if self.initialize_received:
                return self._reject(data, INVALID_REQUEST, "initialize was already received: the session goes on "
                                    "unchanged", "initialize-again")
        elif not self.initialize_received and method != types.EXIT:
            if is_request:
                return self._reject(data, SERVER_NOT_INITIALIZED, "the server is not initialized: send initialize "
                                    "first", "before-initialize")
            self.throttle("before-initialize", f"dropped {method or 'a response'} before initialize")
            return
        elif self.shutdown_received and method != types.EXIT:
            if is_request:
                return self._reject(data, INVALID_REQUEST, "the server is shutting down: only exit is accepted",
                                    "after-shutdown")
            self.throttle("after-shutdown", f"dropped {method or 'a response'} after shutdown")
            return

        try:
            message = self.structure_message(data)
        except JsonRpcException as err:  # requests were answered by structure_message
            self.throttle("params", f"{method or 'a response'}: {err.message}")
            return
        if is_request and not hasattr(message, "id"):  # a notification's method, sent with an id
            self._send_error(data["id"], INVALID_REQUEST, f"{method} is a notification: it takes no id")
        if method == types.INITIALIZE:
            self.initialize_received = True
        elif method == types.SHUTDOWN and is_request:
            self.shutdown_received = True
        self.handle_message(message)

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Turn one top-level message into lsprotocol's type; answer a request that does not fit.

        (pygls' own version logs a traceback per bad message and answers nothing.)"""
        if "jsonrpc" not in data:  # pygls' contract, for callers that use it as a json object_hook
            return data
        method, msg_id = data.get("method"), data.get("id")
        try:
            if "id" in data:
                if "error" in data:
                    return self._converter.structure(data, types.ResponseErrorMessage)
                if method is not None:
                    return self._converter.structure(data, self.get_message_type(method) or JsonRPCRequestMessage)
                response_type = self._result_types.pop(msg_id, None) or JsonRPCResponseMessage
                return self._converter.structure(data, response_type)
            return self._converter.structure(data, self.get_message_type(method) or JsonRPCNotification)
        except Exception as exc:
            if isinstance(exc, ClassValidationError):
                try:
                    why = "; ".join(cattrs.transform_error(exc))
                except Exception:
                    why = str(exc)
                err: JsonRpcException = JsonRpcInvalidParams(message=clip(f"Invalid params: {why}", 500))
            else:
                err = JsonRpcInternalError(message=clip(f"cannot read the message: {type(exc).__name__}: {exc}", 500))
            if method is not None and valid_id(msg_id):
                self._send_response(msg_id, None, err.to_response_error())
            elif method is None and (future := self._request_futures.pop(msg_id, None)) is not None:
                future.set_exception(err)  # a response we cannot read: whoever waits on it hears so
            raise err from exc

    # -- quieter pygls paths ---------------------------------------------------------------------
    def _handle_notification(self, method_name: str, params: Any) -> None:
        known = (method_name == types.CANCEL_REQUEST or method_name in self.fm.builtin_features
                 or method_name in self.fm.features)
        if not known:
            self.throttle("unknown-notification", f"ignored notification {method_name!r}: no such method",
                          logging.INFO)
            return
        super()._handle_notification(method_name, params)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if msg_id in self._request_futures:
            super()._handle_cancel_notification(msg_id)
        else:  # already answered: common, and no concern
            log.debug("$/cancelRequest for %r, which is not running", msg_id)

    def _handle_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        if msg_id not in self._request_futures:
            self.throttle("unknown-response", f"a response to {clip(repr(msg_id), 60)}, which was never asked "
                          "or timed out")
            return
        super()._handle_response(msg_id, result, error)

    def _send_handler_result(self, future: Any, *, msg_id: Any) -> None:
        # A handler's JsonRpcException (an unknown command...) is the answer, not a server fault:
        # pygls logs a traceback for each one.
        if not future.cancelled() and isinstance(exc := future.exception(), JsonRpcException):
            self._request_futures.pop(msg_id, None)
            self.throttle("request-error", f"request {clip(repr(msg_id), 60)}: {exc.message}", logging.INFO)
            self._send_response(msg_id, error=exc.to_response_error())
            return
        super()._send_handler_result(future, msg_id=msg_id)

    def _send_response(self, msg_id: Any, result: Any = None, error: types.ResponseError | None = None) -> None:
        if error is not None and error.code == JsonRpcInternalError.CODE and error.data is not None:
            # pygls puts the traceback in error.data: it goes to the log, not to the client.
            self.throttle("internal", f"request {clip(repr(msg_id), 60)} failed: {error.message}\n{error.data}",
                          logging.ERROR)
            error = types.ResponseError(code=error.code, message=clip(error.message, 500))
        super()._send_response(msg_id, result, error)

    def _check_handler_result(self, future: Any) -> None:
        super()._check_handler_result(future)
        for key in [k for k, f in self._request_futures.items() if f is future]:
            del self._request_futures[key]

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        uri = params.text_document.uri
        doc = self.workspace.text_documents.get(unquote(uri))
        if doc is None:
            log.warning("didChange for %s, which is not open", uri)
        else:
            encoding = self._server.position_encoding()  # type: ignore[attr-defined]
            text = doc.source
            for change in params.content_changes:
                if isinstance(change, types.TextDocumentContentChangePartial):
                    r = change.range
                    text = positions.apply_change(text, (r.start.line, r.start.character),
                                                  (r.end.line, r.end.character), change.text, encoding)
                else:
                    text = change.text
            self.workspace.put_text_document(types.TextDocumentItem(
                uri=uri, language_id=doc.language_id or "", version=params.text_document.version, text=text))
        if (user_handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield user_handler, (params,), None
