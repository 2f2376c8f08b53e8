from labkit.interfaces.cli import main

raise SystemExit(main())
