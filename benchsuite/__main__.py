from benchsuite.cli import main

raise SystemExit(main())
