"""The language server, an adapter around `santa_lsp.service`.

server.py     pygls wiring and thin handlers; `run()` is what `santa-lsp serve` calls
protocol.py   pygls' protocol with two repairs (unanswered bad requests, edit line breaks)
items.py      suggestions -> inline completion / completion items, completion-menu selection
positions.py  LSP positions <-> character offsets in UTF-8 / UTF-16 / UTF-32
scheduler.py  the single inference worker; newest request per document wins
settings.py   initializationOptions / didChangeConfiguration -> `config.Options`
loading.py    background model load with download progress
status.py     state, the stats report, acceptance, memory (santa.status, santa/status)
process.py    stdout kept for the protocol; exit with the client
client_log.py log records -> window/logMessage
"""
