--- santa-lsp for Neovim: local, offline, Copilot-style inline completions.
---
--- `require('santa_lsp').setup(opts)` is idempotent: each call merges `opts` over
--- `M.defaults`, rebuilds the one augroup ("santa_lsp"), the keymaps and the commands, and
--- pushes changed server options to running servers. See `:help santa_lsp`.

local render = require('santa_lsp.render')
local util = require('santa_lsp.util')

local M = {}

local api = vim.api
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
--- Who draws suggestions: picked by setup(); until then what the defaults pick.
local renderer = render.pick(M.defaults.renderer)

-- `python3 -m santa_lsp`, without the current directory on sys.path.
local PYTHON_MAIN = 'import runpy, sys; del sys.path[0]; runpy.run_module("santa_lsp", run_name="__main__", alter_sys=True)'

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

--- "native" or "fallback": who draws suggestions.
function M.renderer()
  return renderer.name
end

--- Running santa_lsp clients, optionally only those attached to `bufnr`.
M.clients = util.clients

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
  renderer.refresh(bufnr)
end

--- Turns suggestions on for `bufnr` once our client attached to it.
local function on_attach(client, bufnr)
  renderer.attach(bufnr, client)
end

local function on_exit()
  status = { state = 'stopped' }
end

local function client_config()
  return {
    name = util.NAME,
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
    vim.lsp.config[util.NAME] = client_config() -- assignment replaces any earlier config
    vim.lsp.enable(util.NAME)
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

-- Suggestion actions, whichever renderer draws them --------------------------------------

--- Whether a suggestion is shown in `bufnr` (default: current buffer).
function M.visible(bufnr)
  return renderer.visible(bufnr or api.nvim_get_current_buf())
end

--- Accepts the shown suggestion, all of it or its next word / line.
--- Safe in an `<expr>` mapping: the buffer changes on the next tick.
---@param kind? "all"|"word"|"line"
---@return boolean accepted false when there was no suggestion
function M.accept(kind)
  return renderer.accept(kind or 'all')
end

--- Shows the next (count > 0) or previous suggestion.
function M.cycle(count)
  renderer.cycle(count)
end

--- Hides the suggestion; returns false when there was none.
function M.dismiss()
  return renderer.dismiss()
end

--- Turns suggestions on or off everywhere (nil: toggle).
function M.enable(on)
  if on == nil then
    on = not enabled
  end
  enabled = on
  renderer.enable(on)
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
    util.client_call(client, 'request', 'workspace/executeCommand', params, handler)
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

  local replaced = renderer
  renderer = render.pick(M.config.renderer)
  renderer.setup(group, M.config)
  start_server(group)
  create_keymaps()
  create_commands()

  -- Re-attach to buffers the server already serves (setup() ran again).
  for _, client in ipairs(M.clients()) do
    if previous and not vim.deep_equal(previous.init_options, M.config.init_options) then
      client.settings = { santa = options_object() } -- what workspace/configuration answers
      util.client_call(client, 'notify', 'workspace/didChangeConfiguration', { settings = client.settings })
    end
    for bufnr in pairs(client.attached_buffers) do
      if replaced ~= renderer then
        replaced.detach(bufnr)
      end
      on_attach(client, bufnr)
    end
  end
  M.enable(M.config.enabled)
end

return M
