from ecigdis_ws.cli import main

raise SystemExit(main())
