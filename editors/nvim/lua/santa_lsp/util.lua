--- Helpers shared by the plugin and both renderers. Requires no other santa_lsp module,
--- so that init.lua and the renderers can all use it without requiring each other.

local M = {}

local api = vim.api

--- The name of our LSP client (vim.lsp.config / get_clients).
M.NAME = 'santa_lsp'

--- Calls a vim.lsp.Client method: `client:name(...)` on 0.11+, `client.name(...)` on 0.10.
function M.client_call(client, name, ...)
  if vim.fn.has('nvim-0.11') == 1 then
    return client[name](client, ...)
  end
  return client[name](...)
end

--- Running santa_lsp clients, optionally only those attached to `bufnr`.
---@param bufnr? integer
---@return vim.lsp.Client[]
function M.clients(bufnr)
  return vim.lsp.get_clients({ name = M.NAME, bufnr = bufnr })
end

--- The cursor of the current window as 0-based row, byte col.
---@return integer, integer
function M.cursor()
  local row, col = unpack(api.nvim_win_get_cursor(0))
  return row - 1, col
end

--- The part of `text` that `kind` ("word" or "line") accepts.
---@param text string suggestion text from the cursor on
---@param kind "word"|"line"
---@return string
function M.partial(text, kind)
  if kind == 'line' then
    local first = text:match('^\n[^\n]*') or text:match('^[^\n]*')
    return first ~= '' and first or text
  end
  return text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text:match('^%s+') or text
end

--- Inserts `text` at the cursor (insert mode) and moves the cursor after it.
function M.insert_at_cursor(text)
  local row, col = M.cursor()
  local lines = vim.split(text, '\n', { plain = true })
  api.nvim_buf_set_text(0, row, col, row, col, lines)
  local last = #lines == 1 and col + #lines[1] or #lines[#lines]
  api.nvim_win_set_cursor(0, { row + #lines, last })
end

--- Runs an accepted item's command (the server counts acceptance, locally); `kind` "word" or
--- "line" tells it only part of the item was taken.
function M.report_accepted(client, command, kind, bufnr)
  if not client or type(command) ~= 'table' or type(command.command) ~= 'string' then
    return
  end
  local arguments = type(command.arguments) == 'table' and vim.deepcopy(command.arguments) or {}
  if kind and kind ~= 'all' then
    table.insert(arguments, kind)
  end
  M.client_call(client, 'request', 'workspace/executeCommand', { command = command.command, arguments = arguments },
    function() end, bufnr)
end

return M
