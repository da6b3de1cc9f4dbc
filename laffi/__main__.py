"""Usage:  python -m laffi <command> --help"""

from laffi.cli import main

raise SystemExit(main())
