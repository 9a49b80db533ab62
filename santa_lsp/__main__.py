from santa_lsp.cli import main

raise SystemExit(main())
