from kdns.cli import main

raise SystemExit(main())
