--- Native renderer: Neovim 0.12's vim.lsp.inline_completion asks the server and draws the
--- ghost text; this module turns it on for our buffers and adds what it lacks (accepting a
--- word or a line, reporting partial accepts, asking again on demand).

local util = require('santa_lsp.util')

---@type santa_lsp.Renderer
local M = { name = 'native' }

local api = vim.api
-- Neovim's own namespace: the only public sign that a suggestion is on screen.
local ns = api.nvim_create_namespace('nvim.lsp.inline_completion')
local enabled = true

function M.available()
  return vim.lsp.inline_completion ~= nil
end

function M.setup(_, _) end

function M.attach(bufnr, _)
  if enabled then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  end
end

function M.detach(bufnr)
  vim.lsp.inline_completion.enable(false, { bufnr = bufnr })
end

function M.enable(on)
  enabled = on
  for _, client in ipairs(util.clients()) do
    for bufnr in pairs(client.attached_buffers) do
      vim.lsp.inline_completion.enable(on, { bufnr = bufnr })
    end
  end
end

function M.refresh(bufnr)
  -- The native completor asks on CursorMovedI; it has no public "request now".
  api.nvim_exec_autocmds('CursorMovedI', { buffer = bufnr, modeline = false })
end

function M.visible(bufnr)
  return #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { limit = 1 }) > 0
end

-- Text of an item from the cursor on, or nil when it does not extend what is typed.
local function remainder(item)
  local text = type(item.insert_text) == 'string' and item.insert_text or item.insert_text.value
  if not item.range then
    return text
  end
  local row, col = util.cursor()
  local start = item.range.start
  if start.row > row or (start.row == row and start.col > col) then
    return nil
  end
  local typed = table.concat(api.nvim_buf_get_text(0, start.row, start.col, row, col, {}), '\n')
  return vim.startswith(text, typed) and text:sub(#typed + 1) or nil
end

function M.accept(kind)
  if not M.visible(api.nvim_get_current_buf()) then
    return false
  end
  if kind == 'all' then
    return vim.lsp.inline_completion.get()
  end
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      local rest = remainder(item)
      if rest and rest ~= '' then
        local text = util.partial(rest, kind)
        util.insert_at_cursor(text)
        -- get() runs the item's command only when it inserts the item itself.
        util.report_accepted(vim.lsp.get_client_by_id(item.client_id), item.command, text == rest and 'all' or kind)
      end
    end,
  })
end

function M.cycle(count)
  vim.lsp.inline_completion.select({ count = count })
end

function M.dismiss()
  if not M.visible(api.nvim_get_current_buf()) then
    return false
  end
  -- get() with a handler that inserts nothing is the public way to drop the item.
  return vim.lsp.inline_completion.get({ on_accept = function() end })
end

return M
