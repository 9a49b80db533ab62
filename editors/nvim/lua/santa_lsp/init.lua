--- santa-lsp for Neovim: local, offline, Copilot-style inline completions.
---
--- `require('santa_lsp').setup(opts)` is idempotent: each call merges `opts` over
--- `M.defaults`, rebuilds the one augroup ("santa_lsp"), the keymaps and the commands, and
--- pushes changed server options to running servers. See `:help santa_lsp`.

local M = {}

local api = vim.api
local NAME = 'santa_lsp'
local AUGROUP = 'santa_lsp'

--- Every option, with its default. Documented in `:help santa_lsp-defaults`.
M.defaults = {
  -- Server command. nil: `santa-lsp serve --stdio` when `santa-lsp` is on $PATH,
  -- else `python3 -m santa_lsp serve --stdio` (run so that the current directory's
  -- modules cannot shadow the standard library's).
  cmd = nil,
  -- Filetypes the server is started for.
  filetypes = {
    'python', 'lua', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
    'java', 'c', 'cpp', 'go', 'rust', 'sh', 'ruby', 'php',
  },
  -- Files that mark a project root; without one the server runs in single-file mode.
  root_markers = { '.git', 'pyproject.toml', 'setup.py', 'package.json', 'Cargo.toml', 'go.mod' },
  -- Server options, sent as initializationOptions (and workspace/didChangeConfiguration
  -- when setup() runs again). Keys are the server's camelCase names; anything left out
  -- keeps the server's default: enable, model ("bigcode/santacoder" | path | "bundled"),
  -- endpoint (an OpenAI-compatible server such as vLLM, "http://gpu-box:8000/v1"; model is
  -- then the served name; API key from $SANTA_API_KEY, else $OPENAI_API_KEY),
  -- revision, device, dtype, maxNewTokens, mode, fimOrder, contextBudget, suffixShare,
  -- tokenHealing, prefetch, temperature, topP, debounceMs, cacheSlots, threads,
  -- maxLatencyMs. See :help santa_lsp-init_options.
  init_options = {},
  -- Show suggestions as you type. :SantaToggle flips it at run time.
  enabled = true,
  -- Who draws the ghost text: "auto" (Neovim's vim.lsp.inline_completion on 0.12+,
  -- our own renderer before), "native", or "fallback" (our renderer, on any version).
  renderer = 'auto',
  -- Fallback renderer: wait this long after the last keystroke before asking the server.
  debounce_ms = 75,
  -- Fallback renderer: highlight group of the ghost text.
  hl_group = 'ComplHint',
  -- Insert-mode keymaps; set one to false to leave that key alone.
  keymaps = {
    accept = '<Tab>', -- accept the whole suggestion; types a normal <Tab> when there is none
    accept_word = '<M-Right>',
    accept_line = '<M-C-Right>',
    next = '<M-]>',
    prev = '<M-[>',
    dismiss = '<C-]>', -- also types <C-]> (abbreviation trigger) when there is no suggestion
  },
}

--- The merged options of the last setup() call.
M.config = nil

--- The server's last santa/status notification (plus "stopped" before any).
local status = { state = 'stopped' }
--- Whether suggestions are shown (:SantaToggle).
local enabled = true

-- `python3 -m santa_lsp`, without the current directory on sys.path.
local PYTHON_MAIN = 'import runpy, sys; del sys.path[0]; runpy.run_module("santa_lsp", run_name="__main__", alter_sys=True)'

local has = function(feature) return vim.fn.has(feature) == 1 end

--- Calls a vim.lsp.Client method: `client:name(...)` on 0.11+, `client.name(...)` on 0.10.
function M.client_call(client, name, ...)
  if has('nvim-0.11') then
    return client[name](client, ...)
  end
  return client[name](...)
end

--- The server command: the option, else `santa-lsp` on $PATH, else the python module.
---@return string[]
function M.server_cmd()
  local cfg = M.config or M.defaults
  if cfg.cmd then
    return type(cfg.cmd) == 'string' and { cfg.cmd } or cfg.cmd
  end
  if vim.fn.executable('santa-lsp') == 1 then
    return { 'santa-lsp', 'serve', '--stdio' }
  end
  -- `python3 -m` would put the current directory first on sys.path, where a project's own
  -- numbers.py or random.py shadows the standard library module torch imports.
  return { 'python3', '-c', PYTHON_MAIN, 'serve', '--stdio' }
end

--- The server command as a user would type it.
function M.server_cmd_string()
  local shown = {}
  for i, arg in ipairs(M.server_cmd()) do
    if arg == PYTHON_MAIN and shown[i - 1] == '-c' then
      shown[i - 1] = '-m santa_lsp'
    else
      table.insert(shown, arg)
    end
  end
  return table.concat(shown, ' ')
end

--- "native" or "fallback": who draws suggestions with the current options and Neovim.
function M.renderer()
  local want = (M.config or M.defaults).renderer
  local native = vim.lsp.inline_completion ~= nil
  if want == 'fallback' or (want == 'auto' and not native) then
    return 'fallback'
  end
  if want == 'native' and not native then
    vim.notify_once('santa_lsp: this Neovim has no vim.lsp.inline_completion; using the fallback renderer',
      vim.log.levels.WARN)
    return 'fallback'
  end
  return 'native'
end

--- Running santa_lsp clients, optionally only those attached to `bufnr`.
---@param bufnr? integer
---@return vim.lsp.Client[]
function M.clients(bufnr)
  return vim.lsp.get_clients({ name = NAME, bufnr = bufnr })
end

--- A copy of the server state: { state, model, device, dtype, message }.
function M.status()
  return vim.deepcopy(status)
end

--- A short string for a statusline, e.g. "santa: ready".
function M.statusline()
  if not M.enabled() then
    return 'santa: off'
  end
  return 'santa: ' .. (status.state or '?')
end

function M.enabled()
  return enabled
end

-- JSON needs {} (not []) for an empty table of options.
local function options_object()
  local opts = vim.deepcopy(M.config.init_options or {})
  return next(opts) == nil and vim.empty_dict() or opts
end

local function on_status(_, result, ctx)
  if type(result) ~= 'table' then
    return
  end
  local was_ready = status.state == 'ready'
  status = vim.tbl_extend('force', { client_id = ctx.client_id }, result)
  if result.state == 'error' and result.message then
    vim.notify('santa_lsp: ' .. result.message, vim.log.levels.ERROR)
  end
  api.nvim_exec_autocmds('User', { pattern = 'SantaStatus', modeline = false, data = M.status() })
  if result.state == 'ready' and not was_ready then
    vim.schedule(M.request_again)
  end
end

--- Asks for a suggestion at the cursor again, if insert mode is on in a buffer the server
--- serves (called when the model becomes ready: the server answers requests made while it
--- loaded, but a request the editor gave up on meanwhile would leave nothing shown).
function M.request_again()
  local bufnr = api.nvim_get_current_buf()
  if not enabled or #M.clients(bufnr) == 0 or not api.nvim_get_mode().mode:match('^i') then
    return
  end
  if M.renderer() == 'native' then
    -- The native completor asks on CursorMovedI; it has no public "request now".
    api.nvim_exec_autocmds('CursorMovedI', { buffer = bufnr, modeline = false })
  else
    require('santa_lsp.ghost').refresh(bufnr)
  end
end

--- Turns suggestions on for `bufnr` once our client attached to it.
local function on_attach(client, bufnr)
  if M.renderer() == 'native' then
    if enabled then
      vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    end
  else
    require('santa_lsp.ghost').attach(bufnr, client.id)
  end
end

local function on_exit()
  status = { state = 'stopped' }
end

local function client_config()
  return {
    name = NAME,
    cmd = M.server_cmd(),
    filetypes = M.config.filetypes,
    root_markers = M.config.root_markers,
    init_options = options_object(),
    settings = { santa = options_object() },
    handlers = { ['santa/status'] = on_status },
    on_attach = on_attach,
    on_exit = on_exit,
  }
end

-- Neovim 0.10 has no vim.lsp.config/enable: start the client from a FileType autocmd.
local function start_legacy(bufnr)
  if not vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) or vim.bo[bufnr].buftype ~= '' then
    return
  end
  local cfg = client_config()
  cfg.root_dir = vim.fs.root(bufnr, cfg.root_markers) or vim.fn.getcwd()
  cfg.root_markers, cfg.filetypes = nil, nil
  vim.lsp.start(cfg, { bufnr = bufnr })
end

local function start_server(group)
  if vim.lsp.config and vim.lsp.enable then
    vim.lsp.config[NAME] = client_config() -- assignment replaces any earlier config
    vim.lsp.enable(NAME)
    return
  end
  api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(ev) start_legacy(ev.buf) end,
    desc = 'santa_lsp: start the server',
  })
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(bufnr) then
      start_legacy(bufnr)
    end
  end
end

-- Suggestion actions, for both renderers ------------------------------------------------

local native_ns = api.nvim_create_namespace('nvim.lsp.inline_completion')

--- Whether a suggestion is shown in `bufnr` (default: current buffer).
function M.visible(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if M.renderer() == 'fallback' then
    return require('santa_lsp.ghost').visible(bufnr)
  end
  return #api.nvim_buf_get_extmarks(bufnr, native_ns, 0, -1, { limit = 1 }) > 0
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
  local row, col = unpack(api.nvim_win_get_cursor(0))
  local lines = vim.split(text, '\n', { plain = true })
  api.nvim_buf_set_text(0, row - 1, col, row - 1, col, lines)
  local last = #lines == 1 and col + #lines[1] or #lines[#lines]
  api.nvim_win_set_cursor(0, { row - 1 + #lines, last })
end

-- Text of a native item from the cursor on, or nil when it does not extend what is typed.
local function native_remainder(item)
  local text = type(item.insert_text) == 'string' and item.insert_text or item.insert_text.value
  if not item.range then
    return text
  end
  local row, col = unpack(api.nvim_win_get_cursor(0))
  local start = item.range.start
  if start.row > row - 1 or (start.row == row - 1 and start.col > col) then
    return nil
  end
  local typed = table.concat(api.nvim_buf_get_text(0, start.row, start.col, row - 1, col, {}), '\n')
  return vim.startswith(text, typed) and text:sub(#typed + 1) or nil
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

--- Accepts the shown suggestion, all of it or its next word / line.
--- Safe in an `<expr>` mapping: the buffer changes on the next tick.
---@param kind? "all"|"word"|"line"
---@return boolean accepted false when there was no suggestion
function M.accept(kind)
  kind = kind or 'all'
  if M.renderer() == 'fallback' then
    return require('santa_lsp.ghost').accept(kind)
  end
  if not M.visible() then
    return false
  end
  if kind == 'all' then
    return vim.lsp.inline_completion.get()
  end
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      local rest = native_remainder(item)
      if rest and rest ~= '' then
        local text = M.partial(rest, kind)
        M.insert_at_cursor(text)
        -- get() runs the item's command only when it inserts the item itself.
        M.report_accepted(vim.lsp.get_client_by_id(item.client_id), item.command, text == rest and 'all' or kind)
      end
    end,
  })
end

--- Shows the next (count > 0) or previous suggestion.
function M.cycle(count)
  if M.renderer() == 'fallback' then
    require('santa_lsp.ghost').cycle(count)
  else
    vim.lsp.inline_completion.select({ count = count })
  end
end

--- Hides the suggestion; returns false when there was none.
function M.dismiss()
  if M.renderer() == 'fallback' then
    return require('santa_lsp.ghost').dismiss()
  end
  if not M.visible() then
    return false
  end
  -- get() with a handler that inserts nothing is the public way to drop the item.
  return vim.lsp.inline_completion.get({ on_accept = function() end })
end

--- Turns suggestions on or off everywhere (nil: toggle).
function M.enable(on)
  if on == nil then
    on = not enabled
  end
  enabled = on
  if M.renderer() == 'native' then
    for _, client in ipairs(M.clients()) do
      for bufnr in pairs(client.attached_buffers) do
        vim.lsp.inline_completion.enable(on, { bufnr = bufnr })
      end
    end
  else
    require('santa_lsp.ghost').enable(on)
  end
end

-- Commands -------------------------------------------------------------------------------

local function exec(command, on_result)
  local clients = M.clients()
  if #clients == 0 then
    vim.notify('santa_lsp: the server is not running (open a ' .. table.concat(M.config.filetypes, '/')
      .. ' file, or see :checkhealth santa_lsp)', vim.log.levels.WARN)
    return
  end
  for _, client in ipairs(clients) do
    local params = { command = command, arguments = {} }
    local handler = function(err, result)
      if err then
        vim.notify(('santa_lsp: %s failed: %s'):format(command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
      elseif on_result then
        on_result(result)
      end
    end
    M.client_call(client, 'request', 'workspace/executeCommand', params, handler)
  end
end

--- Echoes `text` cut to the command line's width: a longer message asks "Press ENTER".
--- The whole state is in require('santa_lsp').status() and :checkhealth santa_lsp.
function M.echo_line(text)
  local room = math.max(10, vim.v.echospace)
  if vim.fn.strdisplaywidth(text) > room then
    text = vim.fn.strcharpart(text, 0, room - 2) .. '…'
  end
  api.nvim_echo({ { text } }, true, {})
end

local function format_status(s)
  s = s or status
  local parts = { 'santa_lsp: ' .. tostring(s.state or '?') }
  for _, key in ipairs({ 'model', 'device', 'dtype' }) do
    if s[key] ~= nil and s[key] ~= vim.NIL and s[key] ~= '' then
      table.insert(parts, ('%s=%s'):format(key, s[key]))
    end
  end
  local shown = type(s.acceptance) == 'table' and type(s.acceptance.total) == 'table' and s.acceptance.total
  if shown and (shown.shown or 0) > 0 then
    table.insert(parts, ('accepted %d/%d'):format(shown.accepted or 0, shown.shown))
  end
  if s.message and s.message ~= vim.NIL and s.message ~= '' then
    table.insert(parts, '- ' .. s.message)
  end
  table.insert(parts, ('(renderer: %s, suggestions %s)'):format(M.renderer(), enabled and 'on' or 'off'))
  return table.concat(parts, ' ')
end
M.format_status = format_status

local function create_commands()
  local cmds = {
    SantaStatus = {
      function()
        if #M.clients() == 0 then
          M.echo_line(format_status({ state = 'stopped' }))
          return
        end
        exec('santa.status', function(result)
          M.echo_line(format_status(type(result) == 'table' and vim.tbl_extend('force', status, result) or status))
        end)
      end,
      'Show the santa-lsp server state (model, device, dtype)',
    },
    SantaToggle = { function() M.enable() M.echo_line(format_status()) end, 'Turn inline suggestions on/off' },
    SantaEnable = { function() M.enable(true) end, 'Turn inline suggestions on' },
    SantaDisable = { function() M.enable(false) end, 'Turn inline suggestions off' },
    SantaReload = { function() exec('santa.reload') end, 'Reload the model with the current options' },
  }
  for name, spec in pairs(cmds) do
    api.nvim_create_user_command(name, spec[1], { desc = spec[2], force = true })
  end
end

-- Keymaps --------------------------------------------------------------------------------

local mapped = {} -- lhs we mapped, so that a later setup() can take them back

local function create_keymaps()
  for lhs in pairs(mapped) do
    pcall(vim.keymap.del, 'i', lhs)
  end
  mapped = {}
  local keys = M.config.keymaps or {}
  local function map(lhs, rhs, desc, expr)
    if lhs then
      vim.keymap.set('i', lhs, rhs, { desc = 'santa_lsp: ' .. desc, expr = expr, silent = true })
      mapped[lhs] = true
    end
  end
  -- expr mappings: when there is nothing to act on, the key does what it would without us.
  map(keys.accept, function() return M.accept('all') and '' or keys.accept end, 'accept suggestion', true)
  map(keys.dismiss, function() return M.dismiss() and '' or keys.dismiss end, 'dismiss suggestion', true)
  map(keys.accept_word, function() return M.accept('word') and '' or keys.accept_word end, 'accept next word', true)
  map(keys.accept_line, function() return M.accept('line') and '' or keys.accept_line end, 'accept next line', true)
  map(keys.next, function() M.cycle(1) end, 'next suggestion')
  map(keys.prev, function() M.cycle(-1) end, 'previous suggestion')
end

--- Configures the plugin and starts the server for the configured filetypes.
--- Safe to call again: later calls replace the options of earlier ones.
---@param opts? table see M.defaults
function M.setup(opts)
  if vim.fn.has('nvim-0.10') == 0 then
    vim.notify('santa_lsp needs Neovim 0.10 or newer', vim.log.levels.ERROR)
    return
  end
  local previous = M.config
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  -- Lists replace, not merge, so that a shorter filetype list really is shorter.
  for _, key in ipairs({ 'filetypes', 'root_markers', 'cmd' }) do
    if opts and opts[key] ~= nil then
      M.config[key] = vim.deepcopy(opts[key])
    end
  end
  if opts and opts.init_options then
    M.config.init_options = vim.deepcopy(opts.init_options)
  end

  local group = api.nvim_create_augroup(AUGROUP, { clear = true })
  api.nvim_set_hl(0, 'ComplHint', { link = 'Comment', default = true })
  api.nvim_set_hl(0, 'ComplHintMore', { link = 'Comment', default = true })

  start_server(group)
  create_keymaps()
  create_commands()
  require('santa_lsp.ghost').setup(group)

  -- Re-attach to buffers the server already serves (setup() ran again).
  for _, client in ipairs(M.clients()) do
    if previous and not vim.deep_equal(previous.init_options, M.config.init_options) then
      client.settings = { santa = options_object() } -- what workspace/configuration answers
      M.client_call(client, 'notify', 'workspace/didChangeConfiguration', { settings = client.settings })
    end
    for bufnr in pairs(client.attached_buffers) do
      on_attach(client, bufnr)
    end
  end
  M.enable(M.config.enabled)
end

return M
