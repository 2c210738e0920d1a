from deepdeb.cli import main

raise SystemExit(main())
