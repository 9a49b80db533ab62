"""pygls' language server protocol, with three repairs (see `SantaProtocol`)."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from santa_lsp.lsp import positions

log = logging.getLogger(__name__)


class SantaProtocol(LanguageServerProtocol):
    """pygls' protocol with three repairs.

    - pygls drops a request whose params do not deserialize without answering it, and the
      client waits forever; answer it with the error (InvalidParams) instead.
    - pygls applies incremental edits by `str.splitlines()` lines, which also break at form
      feeds, U+2028 and friends: one of those in a file shifts every later edit. Edits are
      applied here with LSP's own line breaks (\\n, \\r\\n, \\r) instead.
    - pygls files the future of every async or generator notification handler (didOpen,
      didChange, ...) in `_request_futures` under a random id and never removes it: one
      leaked future per keystroke (RSS grew 2 kB per edit in the storm). Finished ones go.
    """

    def _check_handler_result(self, future: Any) -> None:
        super()._check_handler_result(future)
        for key in [k for k, f in self._request_futures.items() if f is future]:
            del self._request_futures[key]

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as err:
            if "method" in data and isinstance(data.get("id"), (int, str)) and not isinstance(data["id"], bool):
                self._send_response(data["id"], None, err.to_response_error())
            raise

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
