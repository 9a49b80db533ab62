--- :checkhealth santa_lsp

local M = {}

local health = vim.health

-- The Python interpreter the server command runs (nil when the command is not Python).
local function python_of(cmd)
  local exe = vim.fs.basename(cmd[1])
  if exe:match('^python') then
    return cmd[1]
  end
  if exe == 'santa-lsp' then
    -- A console script: its shebang names the interpreter.
    local path = vim.fn.exepath(cmd[1])
    local first = path ~= '' and vim.fn.readfile(path, '', 1)[1] or ''
    return first:match('^#!%s*(%S*python%S*)')
  end
end

function M.check()
  local santa = require('santa_lsp')

  health.start('santa_lsp: Neovim')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.10') == 0 then
    health.error('Neovim ' .. version .. ' is too old', { 'santa_lsp needs Neovim 0.10 or newer' })
    return
  end
  if require('santa_lsp.render.native').available() then
    health.ok('Neovim ' .. version .. ': native vim.lsp.inline_completion available')
  else
    health.ok('Neovim ' .. version .. ': ghost text drawn by the santa_lsp fallback renderer')
  end
  if not santa.config then
    health.warn('setup() has not been called', { "Add require('santa_lsp').setup({}) to your config" })
  else
    health.info(('renderer: %s, suggestions %s, filetypes: %s'):format(
      santa.renderer(), santa.enabled() and 'on' or 'off', table.concat(santa.config.filetypes, ', ')))
  end

  health.start('santa_lsp: server')
  local cmd = santa.server_cmd()
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    health.error('server command not found: ' .. cmd[1], {
      'pip install -e . in a clone of santa-lsp (puts santa-lsp on $PATH)',
      "or set cmd = { '/path/to/python3', '-m', 'santa_lsp', 'serve', '--stdio' } in setup()",
    })
  else
    health.ok('server command: ' .. santa.server_cmd_string() .. ' (' .. exe .. ')')
  end
  local python = python_of(cmd)
  if python and vim.fn.executable(python) == 1 then
    local ok, res = pcall(function()
      local code = 'import sys; del sys.path[0]; import santa_lsp; print(santa_lsp.__version__)'
      return vim.system({ python, '-c', code }, { text = true })
        :wait(20000)
    end)
    if ok and res.code == 0 then
      health.ok(('python: %s imports santa_lsp %s'):format(python, vim.trim(res.stdout)))
    else
      health.error(python .. ' cannot import santa_lsp', {
        'Install it into that interpreter: ' .. python .. ' -m pip install -e /path/to/santa-lsp',
        ok and vim.trim(res.stderr or '') or tostring(res),
      })
    end
  elseif exe ~= '' then
    health.info('not a Python command; cannot check that santa_lsp is importable')
  end

  local clients = santa.clients()
  if #clients == 0 then
    health.info('server not running (it starts when you open a file of a configured filetype)')
    return
  end
  local s = santa.status()
  local line = santa.format_status(s)
  if s.state == 'ready' then
    health.ok(line)
  elseif s.state == 'error' then
    health.error(line, { ':SantaReload after fixing the options, or see :LspLog' })
  else
    health.info(line)
  end
  for _, client in ipairs(clients) do
    health.info(('client %d: position encoding %s, %d buffer(s), inline completion %s'):format(
      client.id, client.offset_encoding, vim.tbl_count(client.attached_buffers),
      client.server_capabilities.inlineCompletionProvider and 'supported' or 'NOT supported'))
  end
end

return M
