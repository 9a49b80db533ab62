--- Fallback renderer: our own ghost text, for Neovim without vim.lsp.inline_completion
--- (0.10/0.11), or when `renderer = "fallback"`.
---
--- After each keystroke in insert mode (debounced) it sends textDocument/inlineCompletion
--- for the cursor, in the client's position encoding, cancels its own earlier request, drops
--- answers that arrive after the text or cursor moved on, and draws the first item as an
--- extmark: inline virt_text for the first line, virt_lines for the rest. Typing the
--- characters a suggestion predicts keeps the rest of it on screen without a new request.

local util = require('santa_lsp.util')

---@type santa_lsp.Renderer
local M = { name = 'fallback' }

local api = vim.api
local uv = vim.uv or vim.loop
local ns = api.nvim_create_namespace('santa_lsp')
local INVOKED, AUTOMATIC = 1, 2 -- lsp.InlineCompletionTriggerKind

---@class santa_lsp.GhostItem
---@field text string what to insert at the anchor
---@field suffix? string text right of the anchor that the item replaces (accept removes it)

---@class santa_lsp.GhostState
---@field client_id integer
---@field timer? uv.uv_timer_t
---@field key? string changedtick:row:col of the last change seen
---@field seq integer id of the newest request; answers to older ones are dropped
---@field pending? { client: vim.lsp.Client, id: integer }
---@field anchor? { [1]: integer, [2]: integer } 0-based row, byte col where items start
---@field after? string the line's text right of the anchor, which typing keeps right of the cursor
---@field items? santa_lsp.GhostItem[]
---@field index integer

---@type table<integer, santa_lsp.GhostState>
local state = {}
local group ---@type integer?
local config ---@type table? setup()'s options: debounce_ms, hl_group
local enabled = true

-- LSP position -> 0-based (row, byte col) in `bufnr`.
local function to_byte(bufnr, pos, encoding)
  local line = api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  if encoding == 'utf-8' then
    return pos.line, math.min(pos.character, #line)
  end
  local ok, col
  if vim.fn.has('nvim-0.11') == 1 then
    ok, col = pcall(vim.str_byteindex, line, encoding, pos.character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, pos.character, encoding == 'utf-16')
  end
  return pos.line, ok and col or #line
end

local function hide(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
end

local function cancel(s)
  if s.pending then
    pcall(util.client_call, s.pending.client, 'cancel_request', s.pending.id)
    s.pending = nil
  end
  s.seq = (s.seq or 0) + 1
end

--- Forgets the suggestion and any request in flight for `bufnr`.
local function clear(bufnr)
  local s = state[bufnr]
  if not s then
    return
  end
  if s.timer then
    s.timer:stop()
  end
  cancel(s)
  s.items, s.anchor = nil, nil
  hide(bufnr)
end

--- What is left of the current item once the text typed since the anchor is taken off;
--- nil when the typing went elsewhere.
local function remainder(bufnr, s)
  local item = s.items and s.items[s.index]
  if not item then
    return nil
  end
  local row, col = util.cursor()
  local arow, acol = s.anchor[1], s.anchor[2]
  if row < arow or (row == arow and col < acol) then
    return nil
  end
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  if line:sub(col + 1) ~= s.after then
    return nil -- the cursor moved within the text, or the text after it changed
  end
  local ok, typed = pcall(api.nvim_buf_get_text, bufnr, arow, acol, row, col, {})
  if not ok then
    return nil
  end
  typed = table.concat(typed, '\n')
  if not vim.startswith(item.text, typed) then
    return nil
  end
  return item.text:sub(#typed + 1)
end

local function render(bufnr, s, text)
  hide(bufnr)
  local hl = config.hl_group
  local lines = {}
  for line in vim.gsplit(text, '\n', { plain = true }) do
    table.insert(lines, { { line, hl } })
  end
  if #s.items > 1 then
    table.insert(lines[#lines], { (' (%d/%d)'):format(s.index, #s.items), 'ComplHintMore' })
  end
  local row, col = util.cursor()
  api.nvim_buf_set_extmark(bufnr, ns, row, col, {
    virt_text = lines[1],
    virt_text_pos = 'inline',
    virt_lines = #lines > 1 and { unpack(lines, 2) } or nil,
    hl_mode = 'combine',
  })
end

-- Server items -> ghost items relative to the cursor (row, col).
local function to_items(bufnr, result, encoding, row, col)
  local items = {}
  for _, item in ipairs(result and (result.items or result) or {}) do
    local text = type(item.insertText) == 'string' and item.insertText or (item.insertText or {}).value or ''
    local suffix
    if item.range then
      local srow, scol = to_byte(bufnr, item.range.start, encoding)
      local erow, ecol = to_byte(bufnr, item.range['end'], encoding)
      if srow == row and scol <= col then
        -- The range starts at or before the cursor: what is typed there must match.
        local typed = api.nvim_buf_get_text(bufnr, srow, scol, row, col, {})[1]
        text = vim.startswith(text, typed) and text:sub(#typed + 1) or ''
        if erow == row and ecol > col then
          suffix = api.nvim_buf_get_text(bufnr, row, col, row, ecol, {})[1]
        end
      else
        text = '' -- an edit away from the cursor: not ghost text
      end
    end
    if text ~= '' then
      table.insert(items, { text = text, suffix = suffix, command = item.command })
    end
  end
  return items
end

local function request(bufnr, key, kind)
  local s = state[bufnr]
  if not s or s.key ~= key or api.nvim_get_current_buf() ~= bufnr or not api.nvim_get_mode().mode:match('^i') then
    return
  end
  local client = vim.lsp.get_client_by_id(s.client_id)
  if not client then
    return
  end
  cancel(s)
  local seq = s.seq
  local row, col = util.cursor()
  local after = (api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''):sub(col + 1)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or AUTOMATIC }
  local encoding = client.offset_encoding
  local ok, id = util.client_call(client, 'request', 'textDocument/inlineCompletion', params, function(err, result)
    if s.seq ~= seq then
      return -- a newer request (or a clear) superseded this one
    end
    s.pending = nil
    if err or not enabled or s.key ~= key or api.nvim_get_current_buf() ~= bufnr
      or not api.nvim_get_mode().mode:match('^i') then
      return
    end
    local items = to_items(bufnr, result, encoding, row, col)
    if #items == 0 then
      return
    end
    s.items, s.index, s.anchor, s.after = items, 1, { row, col }, after
    render(bufnr, s, items[1].text)
  end, bufnr)
  if ok and id then
    s.pending = { client = client, id = id }
  end
end

--- Reacts to a keystroke or cursor move in insert mode.
local function on_change(bufnr)
  local s = state[bufnr]
  if not s or not enabled or api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local row, col = util.cursor()
  local key = ('%d:%d:%d'):format(api.nvim_buf_get_changedtick(bufnr), row, col)
  if s.key == key then
    return -- TextChangedI and CursorMovedI for the same keystroke
  end
  s.key = key
  if s.items then
    local rest = remainder(bufnr, s)
    if rest and rest ~= '' then
      if s.timer then
        s.timer:stop()
      end
      render(bufnr, s, rest) -- the user typed what we predicted
      return
    end
  end
  clear(bufnr)
  s.timer = s.timer or uv.new_timer()
  s.timer:start(config.debounce_ms, 0, vim.schedule_wrap(function()
    request(bufnr, key)
  end))
end

function M.available()
  return true
end

--- (Re)binds the renderer to the plugin's augroup and options; setup() cleared the old group.
function M.setup(augroup, opts)
  group, config = augroup, opts
end

--- Starts ghost text in `bufnr` for `client`. Safe to call again.
function M.attach(bufnr, client)
  if not group then
    return
  end
  local s = state[bufnr] or { seq = 0, index = 1 }
  s.client_id = client.id
  state[bufnr] = s
  api.nvim_clear_autocmds({ group = group, buffer = bufnr })
  api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function() on_change(bufnr) end,
    desc = 'santa_lsp: request ghost text',
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      clear(bufnr)
      s.key = nil
    end,
    desc = 'santa_lsp: hide ghost text',
  })
  api.nvim_create_autocmd({ 'LspDetach', 'BufUnload' }, {
    group = group,
    buffer = bufnr,
    callback = function(ev)
      if ev.event == 'LspDetach' and ev.data and ev.data.client_id ~= s.client_id then
        return
      end
      M.detach(bufnr)
    end,
    desc = 'santa_lsp: stop ghost text',
  })
end

function M.detach(bufnr)
  local s = state[bufnr]
  if not s then
    return
  end
  clear(bufnr)
  if s.timer and not s.timer:is_closing() then
    s.timer:close()
  end
  state[bufnr] = nil
  if group then
    pcall(api.nvim_clear_autocmds, { group = group, buffer = bufnr })
  end
end

--- Asks again at the cursor of `bufnr` (the model just became ready).
function M.refresh(bufnr)
  local s = state[bufnr]
  if not s or not enabled then
    return
  end
  local row, col = util.cursor()
  s.key = ('%d:%d:%d'):format(api.nvim_buf_get_changedtick(bufnr), row, col)
  request(bufnr, s.key)
end

function M.enable(on)
  enabled = on
  if not on then
    for bufnr in pairs(state) do
      clear(bufnr)
    end
  end
end

function M.visible(bufnr)
  local s = state[bufnr]
  return s ~= nil and s.items ~= nil and #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { limit = 1 }) > 0
end

--- Accepts all / the next word / the next line of the shown item (on the next tick).
function M.accept(kind)
  local bufnr = api.nvim_get_current_buf()
  local s = state[bufnr]
  if not M.visible(bufnr) then
    return false
  end
  local rest = remainder(bufnr, s)
  if not rest or rest == '' then
    return false
  end
  local item = s.items[s.index]
  local text = kind == 'all' and rest or util.partial(rest, kind)
  vim.schedule(function()
    if api.nvim_get_current_buf() ~= bufnr then
      return
    end
    if kind == 'all' or text == rest then
      clear(bufnr) -- all taken: the next change asks the server again
    end
    util.insert_at_cursor(text)
    util.report_accepted(vim.lsp.get_client_by_id(s.client_id), item.command, text == rest and 'all' or kind,
      bufnr)
    if text == rest and item.suffix and item.suffix ~= '' then
      local row, col = util.cursor()
      local after = api.nvim_buf_get_text(bufnr, row, col, row, col + #item.suffix, {})[1]
      if after == item.suffix then
        api.nvim_buf_set_text(bufnr, row, col, row, col + #item.suffix, { '' })
      end
    end
  end)
  return true
end

function M.cycle(count)
  local bufnr = api.nvim_get_current_buf()
  local s = state[bufnr]
  if not s then
    return
  end
  if not s.items then
    -- Nothing shown: ask now, without waiting for the debounce.
    s.key = ('%d:%d:%d'):format(api.nvim_buf_get_changedtick(bufnr), util.cursor())
    request(bufnr, s.key, INVOKED)
    return
  end
  s.index = (s.index - 1 + count) % #s.items + 1
  local rest = remainder(bufnr, s)
  if rest and rest ~= '' then
    render(bufnr, s, rest)
  end
end

function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  if not M.visible(bufnr) then
    return false
  end
  clear(bufnr)
  return true
end

--- For tests and :checkhealth: the ghost text shown in `bufnr`, or nil.
function M.shown_text(bufnr)
  local s = state[bufnr or api.nvim_get_current_buf()]
  if not s or not s.items then
    return nil
  end
  return remainder(bufnr or api.nvim_get_current_buf(), s)
end

return M
