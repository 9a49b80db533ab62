--- The two ways of drawing suggestions, behind one interface, and the choice between them.
---
--- setup() picks a renderer once, with `pick`, and every keymap, command and autocmd goes
--- through it; nothing else asks which renderer is active.

local M = {}

---@class santa_lsp.Renderer
---@field name "native"|"fallback" the value of the `renderer` option that selects it
---@field available fun(): boolean whether this Neovim can run it
---@field setup fun(group: integer, config: table) binds it to setup()'s augroup and options
---@field attach fun(bufnr: integer, client: vim.lsp.Client) starts suggestions in a buffer the client serves
---@field detach fun(bufnr: integer) stops them there (setup() switched renderers)
---@field enable fun(on: boolean) turns suggestions on/off in every attached buffer
---@field refresh fun(bufnr: integer) asks again at the cursor now (the model became ready)
---@field visible fun(bufnr: integer): boolean whether a suggestion is shown in `bufnr`
---@field accept fun(kind: "all"|"word"|"line"): boolean takes the shown suggestion or part of it; false when none is shown
---@field cycle fun(count: integer) shows the next (count > 0) or previous suggestion
---@field dismiss fun(): boolean hides the suggestion; false when none is shown

--- The renderer for the `renderer` option `want` ("auto", "native" or "fallback") on this Neovim.
---@param want string
---@return santa_lsp.Renderer
function M.pick(want)
  local native = require('santa_lsp.render.native')
  local fallback = require('santa_lsp.render.fallback')
  if want == 'fallback' or (want == 'auto' and not native.available()) then
    return fallback
  end
  if want == 'native' and not native.available() then
    vim.notify_once('santa_lsp: this Neovim has no vim.lsp.inline_completion; using the fallback renderer',
      vim.log.levels.WARN)
    return fallback
  end
  return native
end

return M
